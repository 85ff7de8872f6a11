"""Which pixels count: windows read with their validity (nodata, GDAL masks, NaN).

A reduction must not count what GDAL says is not data. The window reader of `run` already
reads each input's mask where GDAL's mask flags say there is one (a per-dataset mask, an
alpha band, per-band masks) and knows each band's nodata; here the two are turned into one
validity array per input, and NaN is never valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpraster import _summary
from mpraster.inputs import InputInfo, InputSpec, WindowReader, split_arrays
from mpraster.validity import valid_pixels
from mpraster.windows import WindowTask


def validity(
    data: np.ndarray, nodata: Sequence[float | None], mask: np.ndarray | None
) -> np.ndarray:
    """Where each band of ``data`` (bands, rows, cols) is valid: ``mask`` (nonzero is
    valid; one for every band), each band's ``nodata`` (one per band, or None), never NaN.

    `mpraster.validity.valid_pixels` and a NaN test, in one compiled pass per band.
    """
    if not _summary.compiled(data.dtype):
        valid = valid_pixels(data, nodata, mask)
        return valid & ~np.isnan(data) if data.dtype.kind in "fc" else valid
    valid = np.empty(data.shape, dtype=bool)
    valid[...] = True if mask is None else (mask != 0)
    for band, value in enumerate(nodata):
        _summary.mark_invalid(
            np.ascontiguousarray(data[band]).reshape(-1),
            valid[band].reshape(-1).view(np.uint8),
            value is not None,
            0.0 if value is None else value,
        )
    return valid


class BlockReader:
    """Reads windows of every input as ``[values0, valid0, values1, valid1, ...]``.

    Flat, so that the arrays travel to process workers in one shared-memory slot like a
    kernel's inputs. Windows have no halo: every pixel read is inside the raster.
    """

    def __init__(self, specs: Sequence[InputSpec], infos: Sequence[InputInfo]) -> None:
        self.reader = WindowReader(specs, infos, "nodata")
        self.infos = list(infos)

    def read(self, task: WindowTask) -> list[np.ndarray]:
        """Read ``task.read`` of every input and its validity.

        Raises
        ------
        RasterReadError
            If GDAL fails to read the data or the mask, naming the file and window.
        """
        arrays, masks = split_arrays(self.reader.read(task), self.infos)
        out: list[np.ndarray] = []
        for data, info, mask in zip(arrays, self.infos, masks, strict=True):
            out += [data, validity(data, info.band_nodata, mask)]
        return out

    def close(self) -> None:
        self.reader.close()
