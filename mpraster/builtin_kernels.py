"""The kernels that ship with mpraster: public wrappers over the compiled loops in ``ext/``.

Each wrapper checks and prepares its inputs (shape, contiguity, output array) so that the
compiled loop never sees a bad shape, as numcodecs does around its Cython kernels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mpraster import _focal, _pixelwise, _reverse, _terrain
from mpraster.kernel_outputs import Output
from mpraster.kernels import KernelContext, kernel, representable

__all__ = [
    "aspect",
    "focal_max",
    "focal_mean",
    "focal_min",
    "hillshade",
    "normalized_difference",
    "rescale",
    "reverse",
    "reverse_py",
    "slope",
    "terrain",
]

#: Every data type the compiled band-reversal loop is specialised for.
REVERSE_DTYPES = (
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
)


def _check_cost(params: dict) -> None:
    if params["cost"] < 0:
        raise ValueError(f"cost must be zero or more, got {params['cost']}")


@kernel(
    "reverse",
    releases_gil=True,
    dtypes=REVERSE_DTYPES,
    validate=_check_cost,
    bands_from="reverse",
)
def reverse(src: np.ndarray, *, cost: int = 2000) -> np.ndarray:
    """Reverse the band order, spending `cost` float additions per element (compiled, nogil).

    out[b] = src[bands - 1 - b]. With ``cost=2000`` this is the CPU-bound job of rasterio's
    concurrency example (``rasterio._example.compute``); ``cost=0`` is a pure band reversal,
    an I/O-bound job.
    """
    if src.ndim != 3:
        raise ValueError(f"reverse takes a (bands, rows, cols) array, got shape {src.shape}")
    src = np.ascontiguousarray(src)
    out = np.empty(src.shape, dtype=src.dtype)
    _reverse.reverse_bands(src, out, cost)
    return out


@kernel("reverse-py", releases_gil=False, validate=_check_cost, bands_from="reverse")
def reverse_py(src: np.ndarray, *, cost: int = 2000) -> np.ndarray:
    """Reverse the band order in NumPy, holding the GIL between array operations.

    The same result as ``reverse``; the busy work is ``cost`` whole-array additions. It is
    the GIL-holding kernel that ``--mode auto`` runs in processes with worker I/O.
    """
    if src.ndim != 3:
        raise ValueError(f"reverse-py takes a (bands, rows, cols) array, got shape {src.shape}")
    work = np.zeros(src.shape, dtype=np.float64)
    for _ in range(cost):
        work += 1.0
    return src[::-1].copy()


# ---------------------------------------------------------------- helpers


def _nodata_args(value: float | None) -> tuple[bool, float]:
    """(has_nodata, nodata) for the compiled loops, which treat NaN as missing anyway."""
    return (value is not None and not np.isnan(value)), (0.0 if value is None else float(value))


def _band_nodata(ctx: KernelContext, index: int, band: int) -> float | None:
    """The nodata value of ``band`` of input ``index`` (each band may have its own)."""
    if ctx.band_nodata and band < len(ctx.band_nodata[index]):
        return ctx.band_nodata[index][band]
    return ctx.nodata[index]


_NO_MASK = np.ones((1, 1), dtype=np.uint8)


def _mask_args(ctx: KernelContext, index: int) -> tuple[np.ndarray, bool]:
    """(mask, has_mask) of input ``index`` for the compiled loops: its mask (0 where
    invalid), or a placeholder they never read."""
    mask = ctx.masks[index] if ctx.masks else None
    if mask is None:
        return _NO_MASK, False
    return np.ascontiguousarray(mask, dtype=np.uint8), True


def _masked_out(ctx: KernelContext, index: int) -> np.ndarray | None:
    """Where input ``index``'s mask says invalid (bool), or None without a mask."""
    mask = ctx.masks[index] if ctx.masks else None
    return None if mask is None else mask == 0


def _float_out(dtypes, params) -> str:
    return "float64" if str(dtypes[0]) == "float64" else "float32"


def _same_or_nan(nodata, dtype, params) -> float:
    """The input's nodata where the output type holds it, else NaN."""
    value = nodata[0]
    return value if representable(value, dtype) else float("nan")


# ---------------------------------------------------------------- normalized difference


def _two_bands(counts) -> None:
    if list(counts) not in ([2], [1, 1]):
        raise ValueError("expected one input of 2 bands (A.tif:4,3) or two of 1 band each")


@kernel(
    "normalized-difference",
    aliases=("ndvi",),
    releases_gil=True,
    inputs="two bands: one input of 2 bands or two inputs of 1 band (a then b)",
    check_inputs=_two_bands,
    dtype="float32",
    bands=1,
    nodata=float("nan"),
    dtypes=REVERSE_DTYPES,
    band_meta=[{"description": "normalized difference"}],
)
def normalized_difference(*arrays: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """(a - b) / (a + b) of two bands (NDVI: a = NIR, b = red); float32, NaN where missing.

    NaN (the output's nodata) where a or b is nodata or NaN, or a + b = 0.
    """
    if len(arrays) == 1:
        a, b = arrays[0][0], arrays[0][1]
        nodata_a, nodata_b = _band_nodata(ctx, 0, 0), _band_nodata(ctx, 0, 1)
        masked = [_masked_out(ctx, 0)]
    else:
        (a,), (b,) = arrays
        nodata_a, nodata_b = _band_nodata(ctx, 0, 0), _band_nodata(ctx, 1, 0)
        masked = [_masked_out(ctx, 0), _masked_out(ctx, 1)]
    if a.dtype != b.dtype:
        common = np.promote_types(a.dtype, b.dtype)
        a, b = a.astype(common), b.astype(common)
    out = np.empty(a.shape, dtype=np.float32)
    _pixelwise.normalized_difference(
        np.ascontiguousarray(a),
        np.ascontiguousarray(b),
        out,
        *_nodata_args(nodata_a),
        *_nodata_args(nodata_b),
    )
    for where in masked:
        if where is not None:
            out[where] = np.nan
    return out


# ---------------------------------------------------------------- focal statistics


def _check_size(params: dict) -> None:
    size = params["size"]
    if size < 3 or size > 31 or size % 2 == 0:
        raise ValueError(f"size must be odd, from 3 to 31, got {size}")


def _focal_halo(params) -> int:
    return params["size"] // 2


def _raster_origin(ctx: KernelContext) -> tuple[int, int]:
    """The raster (row, col) of the array's first pixel: the read window's offsets,
    negative past the top or left edge; (0, 0) when called without a window.

    The focal loops cut their lines into blocks aligned to these coordinates, so that a
    pixel's result does not depend on the window it is computed in.
    """
    read = ctx.read
    if read is None:
        return 0, 0
    return int(read.row_off), int(read.col_off)


def _focal_extreme(src: np.ndarray, size: int, ctx: KernelContext, maximum: bool) -> np.ndarray:
    half = size // 2
    src = np.ascontiguousarray(src)
    out = np.empty((src.shape[0], src.shape[1] - 2 * half, src.shape[2] - 2 * half), src.dtype)
    ring = np.empty((size, src.shape[2]), src.dtype)
    lines = np.empty((4, src.shape[2]), src.dtype)
    if src.dtype.kind == "f":
        identity = -np.inf if maximum else np.inf
    else:
        identity = np.iinfo(src.dtype).min if maximum else np.iinfo(src.dtype).max
    identity = np.array(identity).astype(src.dtype)[()]
    mask, has_mask = _mask_args(ctx, 0)
    row0, col0 = _raster_origin(ctx)
    # Band by band: each band has its own nodata value.
    for band in range(src.shape[0]):
        value = _band_nodata(ctx, 0, band)
        fill = np.array(0 if value is None else value).astype(src.dtype)[()]
        _focal.focal_extreme(
            src[band : band + 1],
            out[band : band + 1],
            ring,
            lines,
            size,
            row0,
            col0,
            *_nodata_args(value),
            fill,
            identity,
            maximum,
            mask,
            has_mask,
        )
    return out


_FOCAL = dict(
    releases_gil=True,
    halo=_focal_halo,
    validate=_check_size,
    dtypes=REVERSE_DTYPES,
    bands_from="same",
)


@kernel("focal-mean", dtype=_float_out, nodata=_same_or_nan, **_FOCAL)
def focal_mean(src: np.ndarray, *, size: int = 3, ctx: KernelContext) -> np.ndarray:
    """Mean of each size x size neighbourhood, over its valid pixels (nodata-aware).

    out = sum(valid) / count(valid), summed in float64 down the columns, then along the
    row, in an order fixed by raster coordinates (the same bits in every window); nodata
    where the centre pixel is nodata. Past the raster's edge the edge pixels repeat.
    float32 out (float64 for float64 input).
    """
    half = size // 2
    src = np.ascontiguousarray(src)
    shape = (src.shape[0], src.shape[1] - 2 * half, src.shape[2] - 2 * half)
    out = np.empty(shape, dtype=_float_out([src.dtype], {}))
    sums = np.empty((size, src.shape[2]))
    counts = np.empty((size, src.shape[2]))
    lines = np.empty((10, src.shape[2]))
    mask, has_mask = _mask_args(ctx, 0)
    row0, col0 = _raster_origin(ctx)
    # Band by band: each band has its own nodata value.
    for band in range(src.shape[0]):
        value = _band_nodata(ctx, 0, band)
        fill = _same_or_nan([value], np.dtype(np.float32), {})
        _focal.focal_mean(
            src[band : band + 1],
            out[band : band + 1],
            sums,
            counts,
            lines,
            size,
            row0,
            col0,
            *_nodata_args(value),
            fill,
            mask,
            has_mask,
        )
    return out


@kernel("focal-max", **_FOCAL)
def focal_max(src: np.ndarray, *, size: int = 3, ctx: KernelContext) -> np.ndarray:
    """Maximum of each size x size neighbourhood over its valid pixels (nodata-aware).

    Nodata where the centre pixel is nodata; the input's dtype out.
    """
    return _focal_extreme(src, size, ctx, maximum=True)


@kernel("focal-min", **_FOCAL)
def focal_min(src: np.ndarray, *, size: int = 3, ctx: KernelContext) -> np.ndarray:
    """Minimum of each size x size neighbourhood over its valid pixels (nodata-aware).

    Nodata where the centre pixel is nodata; the input's dtype out.
    """
    return _focal_extreme(src, size, ctx, maximum=False)


# ---------------------------------------------------------------- terrain


def _one_band(counts) -> None:
    if list(counts) != [1]:
        raise ValueError("expected one DEM band (pick one with DEM.tif:1 or --bidx 1)")


def _check_light(params: dict) -> None:
    if not 0 <= params["altitude"] <= 90:
        raise ValueError(f"altitude must be from 0 to 90 degrees, got {params['altitude']}")
    if params["z_factor"] <= 0:
        raise ValueError(f"z-factor must be positive, got {params['z_factor']}")


def _check_z(params: dict) -> None:
    if params["z_factor"] <= 0:
        raise ValueError(f"z-factor must be positive, got {params['z_factor']}")


def _dem(src: np.ndarray, ctx: KernelContext) -> np.ndarray:
    """The DEM band as float64, NaN (missing) where the input's mask says invalid."""
    dem = np.array(src[0], dtype=np.float64, order="C")
    masked = _masked_out(ctx, 0)
    if masked is not None:
        dem[masked] = np.nan
    return dem


_TERRAIN = dict(
    releases_gil=True,
    halo=1,
    inputs="one DEM band",
    check_inputs=_one_band,
    bands=1,
    dtypes=REVERSE_DTYPES,
)
_SLOPE_META = [{"description": "slope", "units": "degrees"}]
_ASPECT_META = [{"description": "aspect", "units": "degrees"}]
_SHADE_META = [{"description": "hillshade"}]


@kernel(
    "slope",
    dtype="float32",
    nodata=-9999.0,
    validate=_check_z,
    band_meta=_SLOPE_META,
    **_TERRAIN,
)
def slope(dem: np.ndarray, *, z_factor: float = 1.0, ctx: KernelContext) -> np.ndarray:
    """Slope in degrees by Horn's method, as gdaldem slope computes it.

    With a b c / d e f / g h i the 3 x 3 neighbourhood: dz/dx = ((c + 2f + i) - (a + 2d +
    g)) / (8 * pixel width), dz/dy likewise down the columns; slope = atan(z * sqrt(dx^2 +
    dy^2)). -9999 where any neighbour is nodata. At the raster's edge the edge pixels repeat
    (gdaldem leaves edges nodata, or extrapolates with -compute_edges).
    """
    out = np.empty((dem.shape[1] - 2, dem.shape[2] - 2), dtype=np.float32)
    has_nodata, nodata = _nodata_args(_band_nodata(ctx, 0, 0))
    t = ctx.transform
    _terrain.slope(_dem(dem, ctx), out, t.a, t.e, z_factor, has_nodata, nodata, -9999.0)
    return out


@kernel(
    "hillshade",
    dtype="uint8",
    nodata=0,
    validate=_check_light,
    band_meta=_SHADE_META,
    **_TERRAIN,
)
def hillshade(
    dem: np.ndarray,
    *,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z_factor: float = 1.0,
    ctx: KernelContext,
) -> np.ndarray:
    """Shaded relief 1..255 by Horn's method, as gdaldem hillshade computes it; 0 = nodata.

    x, y = Horn's gradients times z; cang = (sin(alt) - cos(alt) * (y cos(az) - x sin(az)))
    / sqrt(1 + x^2 + y^2); out = 1 + 254 * cang rounded (1 where cang <= 0). Azimuth is
    clockwise from north, altitude above the horizon, both in degrees.
    """
    shade = np.empty((dem.shape[1] - 2, dem.shape[2] - 2), dtype=np.float32)
    has_nodata, nodata = _nodata_args(_band_nodata(ctx, 0, 0))
    t = ctx.transform
    _terrain.hillshade(
        _dem(dem, ctx), shade, t.a, t.e, z_factor, azimuth, altitude, has_nodata, nodata, 0.0
    )
    return np.rint(shade).astype(np.uint8)


@kernel(
    "aspect",
    dtype="float32",
    nodata=-9999.0,
    band_meta=_ASPECT_META,
    **_TERRAIN,
)
def aspect(dem: np.ndarray, *, zero_for_flat: bool = False, ctx: KernelContext) -> np.ndarray:
    """Aspect in degrees clockwise from north by Horn's method, as gdaldem aspect computes it.

    dx = (c + 2f + i) - (a + 2d + g), dy = (g + 2h + i) - (a + 2b + c); aspect =
    90 - atan2(dy, -dx) in degrees, taken into [0, 360). Flat pixels (dx = dy = 0) are
    -9999 (nodata), or 0 with zero_for_flat (gdaldem -zero_for_flat); -9999 where any
    neighbour is nodata. At the raster's edge the edge pixels repeat.
    """
    out = np.empty((dem.shape[1] - 2, dem.shape[2] - 2), dtype=np.float32)
    has_nodata, nodata = _nodata_args(_band_nodata(ctx, 0, 0))
    flat = 0.0 if zero_for_flat else -9999.0
    _terrain.aspect(_dem(dem, ctx), out, has_nodata, nodata, -9999.0, flat)
    return out


@kernel(
    "terrain",
    validate=_check_light,
    outputs=[
        Output(
            "slope",
            "float32",
            nodata=-9999.0,
            band_meta=_SLOPE_META,
            doc="slope in degrees, as the slope kernel (float32, nodata -9999)",
        ),
        Output(
            "aspect",
            "float32",
            nodata=-9999.0,
            band_meta=_ASPECT_META,
            doc="aspect in degrees clockwise from north, as the aspect kernel (float32, "
            "nodata -9999: flat pixels too, unless zero_for_flat)",
        ),
        Output(
            "hillshade",
            "uint8",
            nodata=0,
            band_meta=_SHADE_META,
            doc="shaded relief 1..255, as the hillshade kernel (uint8, nodata 0)",
        ),
    ],
    **_TERRAIN,
)
def terrain(
    dem: np.ndarray,
    *,
    z_factor: float = 1.0,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    zero_for_flat: bool = False,
    ctx: KernelContext,
) -> dict[str, np.ndarray]:
    """Slope, aspect and hillshade of a DEM from one read (Horn's method, as gdaldem).

    Write any of them with -o slope=FILE -o aspect=FILE -o hillshade=FILE; each file is
    byte for byte the one the slope, aspect or hillshade kernel writes with the same
    parameters (z_factor scales slope and hillshade; azimuth and altitude light the
    hillshade; zero_for_flat gives flat pixels an aspect of 0 instead of nodata).
    """
    shape = (dem.shape[1] - 2, dem.shape[2] - 2)
    slope_out = np.empty(shape, dtype=np.float32)
    aspect_out = np.empty(shape, dtype=np.float32)
    shade = np.empty(shape, dtype=np.float32)
    has_nodata, nodata = _nodata_args(_band_nodata(ctx, 0, 0))
    t = ctx.transform
    _terrain.terrain(
        _dem(dem, ctx), slope_out, aspect_out, shade, t.a, t.e, z_factor, azimuth, altitude,
        has_nodata, nodata, -9999.0, -9999.0, 0.0 if zero_for_flat else -9999.0, 0.0,
    )  # fmt: skip
    return {"slope": slope_out, "aspect": aspect_out, "hillshade": np.rint(shade).astype(np.uint8)}


# ---------------------------------------------------------------- rescale


def _rescale_dtype(dtypes, params) -> str:
    return params["dtype"] or str(dtypes[0])


def _check_dtype(params: dict) -> None:
    if params["dtype"]:
        try:
            dtype = np.dtype(params["dtype"])
        except TypeError as err:
            raise ValueError(f"unknown dtype '{params['dtype']}'") from err
        if dtype.kind not in "iuf":
            raise ValueError(f"dtype must be an integer or float type, got {dtype}")


def _rescale_nodata(nodata, dtype, params):
    """The input's nodata where the target type holds it, else NaN or the type's minimum."""
    value = nodata[0]
    if value is None or representable(value, dtype):
        return value
    return float("nan") if dtype.kind == "f" else int(np.iinfo(dtype).min)


def _rescaled_meta(mapped, params) -> list:
    """A band's scale, offset and units do not describe it once it is rescaled."""
    return [m and dataclasses.replace(m, scale=1.0, offset=0.0, units=None) for m in mapped]


@kernel(
    "rescale",
    releases_gil=True,
    dtype=_rescale_dtype,
    nodata=_rescale_nodata,
    validate=_check_dtype,
    dtypes=REVERSE_DTYPES,
    bands_from="same",
    band_meta=_rescaled_meta,
)
def rescale(
    src: np.ndarray,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    dtype: str = "",
    ctx: KernelContext,
) -> np.ndarray:
    """Linear rescaling: out = clip(src * scale + offset) to the range of `dtype`.

    ``dtype`` (or ``--dtype``) is the output type, default the input's; integer outputs
    round half to even. Nodata pixels stay nodata (the output's nodata value).
    """
    target = np.dtype(dtype or src.dtype)
    if np.issubdtype(target, np.floating):
        low, high = float(np.finfo(target).min), float(np.finfo(target).max)
    else:
        low, high = float(np.iinfo(target).min), float(np.iinfo(target).max)
    src = np.ascontiguousarray(src)
    out = np.empty(src.shape, dtype=np.float64)
    masked = _masked_out(ctx, 0)
    # Band by band: each band has its own nodata value.
    for band in range(src.shape[0]):
        value = _band_nodata(ctx, 0, band)
        fill = _rescale_nodata([value], target, {})
        fill = 0.0 if fill is None else float(fill)
        _pixelwise.rescale_to_double(
            src[band : band + 1],
            out[band : band + 1],
            scale,
            offset,
            low,
            high,
            target.kind in "iu",
            *_nodata_args(value),
            fill,
        )
        if masked is not None:
            out[band][masked] = fill
    return out.astype(target)
