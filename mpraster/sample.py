"""A deterministic synthetic multi-band GeoTIFF for the demo, the README and benchmarks."""

from __future__ import annotations

import os

import numpy as np
import rasterio
from rasterio.transform import from_origin


def write_sample(
    path: str | os.PathLike,
    size: int = 600,
    bands: int = 3,
    dtype: str = "uint8",
    compress: str | None = None,
    tile: int | None = None,
) -> str:
    """Write a ``bands`` x ``size`` x ``size`` raster of smooth patterns plus noise.

    The same arguments always give the same pixels (fixed seed), in UTM zone 18N with
    30 m pixels, nodata 0. ``tile`` writes a tiled file; otherwise it is striped, as most
    rasters from the field are.
    """
    rng = np.random.default_rng(20261124)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / size
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else 1.0
    data = np.empty((bands, size, size), dtype=dtype)
    for band in range(bands):
        wave = 0.5 + 0.25 * np.sin(2 * np.pi * (band + 1) * rows) * np.cos(3 * np.pi * cols)
        noise = rng.normal(0.0, 0.05, size=(size, size))
        values = np.clip(wave + 0.2 * cols + noise, 0.0, 1.0) * top
        data[band] = np.maximum(values, 1).astype(dtype) if top != 1.0 else values
    profile = {
        "driver": "GTiff",
        "dtype": dtype,
        "count": bands,
        "height": size,
        "width": size,
        "crs": "EPSG:32618",
        "transform": from_origin(500000.0, 4200000.0, 30.0, 30.0),
        "nodata": 0,
    }
    if compress:
        profile["compress"] = compress
    if tile:
        profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return os.fspath(path)
