"""Which pixels are valid: per input, as GDAL's mask flags say; for the output, by the
kernel's rule, carried the way the inputs carried it.

An input says which of its pixels are valid with a per-dataset mask (an internal mask,
a ``.msk`` file, or an alpha band: one validity per pixel for every band), or with a
nodata value per band (NaN too, where NaN is the nodata value), or not at all. The
kernel sees every input's nodata per band and its mask (`mpraster.kernels.KernelContext`).

The output carries validity one of four ways, decided once per job (`OutputValidity`):

* ``"none"``: nothing is invalid anywhere (no input has a mask or nodata);
* ``"nodata"``: one nodata value for all bands, which the kernel writes where its
  result is invalid (the inputs have nodata only, and the output's bands agree on it);
* ``"mask"``: a per-dataset mask, computed here for every window by the kernel's rule;
  wherever an input has a mask, or the output's bands would need different nodata
  values (a GeoTIFF holds one for all bands);
* ``"alpha"``: as ``"mask"``, but the output has an alpha band where GDAL reads it as
  the mask (band 2 of 2, band 4 of 4, 8 or 16 bits): it is set to 0 where invalid.

Only ``"mask"`` and ``"alpha"`` cost anything per window; an input without a mask costs
nothing, and its mask is never read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RULES = ("all", "any", "kernel")


@dataclass(frozen=True)
class OutputValidity:
    """How one job's output carries validity (see the module), and how it is computed.

    ``rule``: an output pixel is valid where ``"all"`` inputs are valid (for a halo
    kernel, at the centre pixel), where ``"any"`` is, or where the kernel says (it
    returns ``(array, valid)``). ``masks``: per input, whether it has a per-dataset mask.
    ``fold``: per input, the nodata value of each band (None: that band has none) that
    makes a pixel invalid in the output's mask. ``nodata``: the output's nodata value;
    with a mask, a pixel where any band holds it is invalid too.
    """

    carrier: str = "none"
    rule: str = "all"
    masks: tuple[bool, ...] = ()
    fold: tuple[tuple[float | None, ...], ...] = ()
    nodata: float | None = None
    alpha_band: int | None = None

    @property
    def per_dataset(self) -> bool:
        """Whether every window's result comes with the output's validity."""
        return self.carrier in ("mask", "alpha")

    @property
    def writes_mask(self) -> bool:
        return self.carrier == "mask"

    def describe(self) -> str:
        if self.carrier == "none":
            return "none (every pixel valid)"
        if self.carrier == "nodata":
            return f"nodata {self.nodata}"
        if self.carrier == "mask":
            how = "a per-dataset mask"
        else:
            how = f"alpha band {self.alpha_band + 1}"
        if self.rule == "kernel":
            return f"{how}, as the kernel says"
        return f"{how}: a pixel is valid where {self.rule} of the inputs are"


def is_nodata(values: np.ndarray, nodata: float) -> np.ndarray:
    """Where ``values`` equal ``nodata`` (NaN: where they are NaN)."""
    if isinstance(nodata, float) and math.isnan(nodata):
        return np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    return values == nodata


def valid_pixels(
    array: np.ndarray, nodata: Sequence[float | None], mask: np.ndarray | None
) -> np.ndarray:
    """Where each band of ``array`` (bands, rows, cols) is valid: its mask (nonzero is
    valid) and its band's nodata value (``nodata``: one per band, or None)."""
    valid = np.ones(array.shape, dtype=bool)
    if mask is not None:
        valid &= mask[np.newaxis] != 0
    for band, value in enumerate(nodata):
        if value is not None:
            valid[band] &= ~is_nodata(array[band], value)
    return valid


def window_validity(
    validity: OutputValidity,
    arrays: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    crop: tuple[int, int, int, int],
    out: np.ndarray,
    from_kernel: np.ndarray | None = None,
) -> np.ndarray | None:
    """The output validity of one window (uint8 rows x cols, 0 invalid, 255 valid) for a
    ``"mask"`` carrier; for ``"alpha"``, sets ``out``'s alpha band to 0 where invalid and
    returns None. ``crop`` is the window within the read window (`WindowTask.crop`)."""
    if from_kernel is not None:
        valid = from_kernel.astype(bool, copy=False)
    else:
        valid = _inputs_valid(validity, arrays, masks, crop, out.shape[1:])
    if validity.nodata is not None and validity.rule != "kernel":
        valid = valid & ~is_nodata(out, validity.nodata).any(axis=0)
    if validity.carrier == "alpha":
        out[validity.alpha_band][~valid] = 0
        return None
    return np.where(valid, np.uint8(255), np.uint8(0))


def _inputs_valid(
    validity: OutputValidity,
    arrays: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    crop: tuple[int, int, int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    r0, r1, c0, c1 = crop
    each = []
    for array, mask, fold in zip(arrays, masks, validity.fold, strict=True):
        if mask is None and all(v is None for v in fold):
            each.append(None)  # valid everywhere
            continue
        valid = None if mask is None else mask[r0:r1, c0:c1] != 0
        if any(v is not None for v in fold):
            bands = valid_pixels(array[:, r0:r1, c0:c1], fold, None).all(axis=0)
            valid = bands if valid is None else valid & bands
        each.append(valid)
    known = [v for v in each if v is not None]
    if not known or (validity.rule == "any" and len(known) < len(each)):
        return np.ones(shape, dtype=bool)
    combine = np.logical_and if validity.rule == "all" else np.logical_or
    return combine.reduce(known) if len(known) > 1 else known[0]


# An output band whose nodata value cannot be known: its source band is not declared
# (`mpraster.kernels.KernelSpec.bands_from`) and its input's bands differ.
UNKNOWN = "unknown"


def plan_validity(
    masks: Sequence[bool],
    band_nodata: Sequence[Sequence[float | None]],
    out_nodata: Sequence[float | str | None],
    rule: str,
    nodata_option: float | None,
    alpha: int | None,
    dtype: np.dtype,
) -> OutputValidity:
    """Decide how the output carries validity (see the module).

    ``masks`` and ``band_nodata``: per input, whether it has a per-dataset mask and its
    bands' nodata values. ``out_nodata``: per output band, the nodata value the kernel
    writes there (its rule applied to the band's source), or `UNKNOWN`. ``nodata_option``:
    ``--nodata``. ``alpha``: the output band marked alpha, if any.
    """
    known = all(v is not UNKNOWN for v in out_nodata)
    agreed = known and all(same_value(out_nodata[0], v) for v in out_nodata)
    single = out_nodata[0] if agreed else None
    if nodata_option is not None:
        single = nodata_option
    inputs_nodata = any(v is not None for values in band_nodata for v in values)
    # A GeoTIFF has one nodata value for all bands: bands that need different ones (or
    # inputs whose nodata the output type cannot hold) say which pixels are invalid with
    # a mask instead.
    lost = inputs_nodata and single is None
    if any(masks) or not agreed or lost or rule == "kernel":
        carrier = "alpha" if alpha_reads_as_mask(alpha, len(out_nodata), dtype) else "mask"
        return OutputValidity(
            carrier,
            rule,
            tuple(masks),
            tuple(tuple(values) for values in band_nodata),
            single,
            alpha if carrier == "alpha" else None,
        )
    carrier = "nodata" if single is not None else "none"
    return OutputValidity(carrier, rule, tuple(masks), nodata=single)


def band_nodata(
    band_nodata: Sequence[Sequence[float | None]],
    sources: Sequence[tuple[int, int] | None],
    rule: Callable[[list[float | None]], float | None] | None,
    fixed: float | None = None,
) -> list[float | str | None]:
    """Per output band, the nodata value a kernel writes there: ``fixed`` if the kernel
    declares one value, else its ``rule`` applied to the nodata of each input as the band
    sees it: its source band's, or the input's when all its bands share one; `UNKNOWN`
    when neither is known."""
    values: list[float | str | None] = []
    for source in sources:
        if fixed is not None:
            values.append(fixed)
            continue
        view = [
            nodata[source[1]]
            if source is not None and source[0] == index
            else nodata[0]
            if all(same_value(nodata[0], v) for v in nodata)
            else UNKNOWN
            for index, nodata in enumerate(band_nodata)
        ]
        known = all(v is not UNKNOWN for v in view)
        values.append(rule(view) if known else UNKNOWN)
    return values


def same_value(a: float | None, b: float | None) -> bool:
    """Whether two nodata values are the same (NaN is NaN)."""
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def alpha_reads_as_mask(alpha: int | None, bands: int, dtype: np.dtype) -> bool:
    """Whether GDAL takes the output's alpha band as its mask: band 2 of 2 or band 4 of
    4, 8 or 16 bits (other layouts are only labelled alpha)."""
    return (
        alpha is not None
        and np.dtype(dtype).name in ("uint8", "uint16")
        and (bands, alpha) in ((2, 1), (4, 3))
    )
