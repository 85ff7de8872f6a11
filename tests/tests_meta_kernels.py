"""Kernels for tests/test_inputs_meta.py: validity rules, band mappings, band metadata."""

import numpy as np

import mpraster


@mpraster.kernel(releases_gil=True, dtype="float32", nodata=float("nan"), bands_from="same")
def nan_where_invalid(src, *, ctx):
    """One nodata value (NaN) for every band, whatever each input band's was."""
    out = src.astype("float32")
    out[~ctx.valid(0, src)] = np.nan
    return out


@mpraster.kernel(releases_gil=True, inputs="two rasters of one band")
def both(a, b):
    """Valid where both inputs are (the default rule)."""
    return np.maximum(a, b)


@mpraster.kernel(releases_gil=True, inputs="two rasters of one band", valid="any")
def either(a, b):
    """Valid where either input is."""
    return np.maximum(a, b)


@mpraster.kernel(releases_gil=True, valid="kernel")
def valid_above_100(src):
    """Valid where the value is above 100, as the kernel says."""
    return src, src[0] > 100


@mpraster.kernel(releases_gil=True, bands=1, dtype="uint8")
def count_valid(src, *, ctx):
    """How many bands are valid at each pixel (from ctx: masks and per-band nodata)."""
    return ctx.valid(0, src).sum(axis=0).astype("uint8")


@mpraster.kernel(releases_gil=True, bands=2)
def two_new_bands(src):
    """Two bands that come from no band in particular."""
    return np.stack([src.max(axis=0), src.min(axis=0)])


@mpraster.kernel(
    releases_gil=True,
    bands=2,
    bands_from=[(0, 2), None],
    band_meta=[None, {"description": "ratio"}],
)
def declared_bands(src):
    """Band 1 is input band 3; band 2 is new, and declared."""
    return np.stack([src[2], src[0] // 2 + src[1] // 2])


@mpraster.kernel(releases_gil=True, bands_from=[5])
def bad_mapping(src):
    """A mapping to a band that is not there."""
    return src
