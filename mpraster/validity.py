"""Which pixels count: windows read with their validity (nodata, GDAL masks, NaN).

A reduction must not count what GDAL says is not data. GDAL's mask flags say, per band,
where validity comes from: nothing (all valid), the nodata value, or a mask band (a
per-dataset mask or an alpha band). Only the last needs GDAL to read a mask; the nodata
test is done here, with exact equality, and NaN is never valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError

from mpraster.errors import RasterReadError
from mpraster.gdal_errors import one_line
from mpraster.inputs import InputInfo, InputSpec, WindowReader
from mpraster.windows import WindowTask, describe_window


def _needs_mask_band(flags: Sequence[Sequence[MaskFlags]]) -> bool:
    return any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags)


class BlockReader:
    """Reads windows of every input as ``[values0, valid0, values1, valid1, ...]``.

    Flat, so that the arrays travel to process workers in one shared-memory slot like a
    kernel's inputs. Windows have no halo: every pixel read is inside the raster.
    """

    def __init__(self, specs: Sequence[InputSpec], infos: Sequence[InputInfo]) -> None:
        self.reader = WindowReader(specs, infos, "nodata")
        self.infos = list(infos)
        self.mask_band = [
            _needs_mask_band([src.mask_flag_enums[b - 1] for b in info.bands])
            for src, info in zip(self.reader.datasets, self.infos, strict=True)
        ]

    def read(self, task: WindowTask) -> list[np.ndarray]:
        """Read ``task.read`` of every input and its validity.

        Raises
        ------
        RasterReadError
            If GDAL fails to read the data or the mask, naming the file and window.
        """
        arrays = self.reader.read(task)
        out: list[np.ndarray] = []
        for data, info, src, mask_band in zip(
            arrays, self.infos, self.reader.datasets, self.mask_band, strict=True
        ):
            out += [data, self._valid(data, info, src, mask_band, task)]
        return out

    def _valid(self, data, info: InputInfo, src, mask_band: bool, task: WindowTask) -> np.ndarray:
        if mask_band:
            try:
                valid = src.read_masks(list(info.bands), window=task.read) != 0
            except RasterioError as err:
                raise RasterReadError(
                    f"reading the mask of {src.name} failed at window "
                    f"{describe_window(task)}: {one_line(err)}"
                ) from err
        else:
            valid = np.ones(data.shape, dtype=bool)
        if info.nodata is not None and not np.isnan(info.nodata):
            valid &= data != info.nodata
        if np.issubdtype(data.dtype, np.floating):
            valid &= ~np.isnan(data)
        return valid

    def close(self) -> None:
        self.reader.close()
