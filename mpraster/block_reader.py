"""Which pixels count: windows read with their validity (nodata, GDAL masks, NaN).

A reduction must not count what GDAL says is not data. The window reader of `run` already
reads each input's mask where GDAL's mask flags say there is one (a per-dataset mask, an
alpha band, per-band masks) and knows each band's nodata; here the two are turned into one
validity array per input, and NaN is never valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpraster.inputs import InputInfo, InputSpec, WindowReader, split_arrays
from mpraster.validity import valid_pixels
from mpraster.windows import WindowTask


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
            valid = valid_pixels(data, info.band_nodata, mask)
            if np.issubdtype(data.dtype, np.floating):
                valid &= ~np.isnan(data)
            out += [data, valid]
        return out

    def close(self) -> None:
        self.reader.close()
