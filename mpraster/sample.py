"""Synthetic GeoTIFFs: the demo's deterministic sample, and the one writer behind it that the
tests and benchmarks write their own arrays with."""

from __future__ import annotations

import os
from typing import TypeVar

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

#: Where synthetic rasters sit unless told otherwise: UTM zone 18N, 30 m pixels.
DEFAULT_CRS = "EPSG:32618"
DEFAULT_TRANSFORM = from_origin(500000.0, 4200000.0, 30.0, 30.0)

PathT = TypeVar("PathT", bound="str | os.PathLike[str]")


def write_raster(
    path: PathT,
    data: np.ndarray,
    *,
    nodata: float | None = None,
    tile: int | None = None,
    crs: str | CRS = DEFAULT_CRS,
    transform: Affine = DEFAULT_TRANSFORM,
    **creation_options,
) -> PathT:
    """Write ``data`` (bands, rows, cols) as a georeferenced GeoTIFF.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; returned as given.
    data : numpy.ndarray
        The pixels, shaped (bands, rows, cols); the file takes its dtype.
    nodata : float, optional
        The nodata value of every band; none by default.
    tile : int, optional
        Tile the file in ``tile`` x ``tile`` blocks; striped (GDAL's default) otherwise.
    crs, transform
        The georeferencing (UTM zone 18N, 30 m pixels by default).
    **creation_options
        GDAL creation options (``compress="deflate"``, ``interleave="band"``, ...).
    """
    bands, rows, cols = data.shape
    profile = dict(
        driver="GTiff",
        dtype=data.dtype.name,
        count=bands,
        height=rows,
        width=cols,
        crs=crs,
        transform=transform,
        nodata=nodata,
        **creation_options,
    )
    if tile:
        profile.update(tiled=True, blockxsize=tile, blockysize=tile)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


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
    options = {"compress": compress} if compress else {}
    return os.fspath(write_raster(path, data, nodata=0, tile=tile, **options))
