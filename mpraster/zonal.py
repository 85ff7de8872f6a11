"""Zonal statistics: per zone of an integer zones raster, each band's figures, as a reduction.

A window's zones are numbered once (``np.unique``) and every figure is one vectorised call
over all of them (``np.bincount`` for counts, sums and squared deviations, ``reduceat`` on
the values sorted by zone for min and max): no pass per zone, so thousands of zones cost
what a few do. A partial is a table with a row per zone seen, merged by zone id with
Chan's update: it grows with the number of zones, never with the raster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mpraster.reductions import Block, Reduction


@dataclass
class ZoneTable:
    """One band's figures per zone id (sorted); ``m2``: sums of squared deviations."""

    ids: np.ndarray
    count: np.ndarray
    total: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, ids: np.ndarray | None = None) -> ZoneTable:
        ids = np.zeros(0, np.int64) if ids is None else ids
        n = ids.size
        return cls(
            ids,
            np.zeros(n, np.int64),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.full(n, np.inf),
            np.full(n, -np.inf),
        )

    def figures(self) -> list[dict]:
        """One dict a zone: zone, count, sum, mean, min, max, std (None for an empty zone)."""
        rows = []
        for k, zone in enumerate(self.ids.tolist()):
            n = int(self.count[k])
            row = {"zone": zone, "count": n, "sum": float(self.total[k])}
            if n:
                row.update(
                    mean=float(self.mean[k]),
                    min=float(self.min[k]),
                    max=float(self.max[k]),
                    std=float(np.sqrt(self.m2[k] / n)),
                )
            else:
                row.update(mean=None, min=None, max=None, std=None)
            rows.append(row)
        return rows


def window_table(ids: np.ndarray, zone_of: np.ndarray, x: np.ndarray) -> ZoneTable:
    """The table of values ``x`` (float64) in zones ``ids[zone_of]``."""
    size = ids.size
    count = np.bincount(zone_of, minlength=size)
    total = np.bincount(zone_of, weights=x, minlength=size)
    mean = np.divide(total, count, out=np.zeros(size), where=count > 0)
    m2 = np.bincount(zone_of, weights=np.square(x - mean[zone_of]), minlength=size)
    table = ZoneTable(ids, count, total, mean, m2, np.full(size, np.inf), np.full(size, -np.inf))
    if x.size:
        order = np.argsort(zone_of, kind="stable")
        sorted_x = x[order]
        present = np.flatnonzero(count)
        starts = np.searchsorted(zone_of[order], present)
        table.min[present] = np.minimum.reduceat(sorted_x, starts)
        table.max[present] = np.maximum.reduceat(sorted_x, starts)
    return table


def merge_tables(a: ZoneTable, b: ZoneTable) -> ZoneTable:
    """``a``'s zones and ``b``'s together, each merged by Chan's update where in both."""
    ids = np.union1d(a.ids, b.ids)
    out = ZoneTable.empty(ids)
    for part in (a, b):
        at = np.searchsorted(ids, part.ids)
        na, nb = out.count[at], part.count
        n = na + nb
        safe = np.maximum(n, 1)
        delta = part.mean - out.mean[at]
        mean = np.where(na == 0, part.mean, out.mean[at] + delta * (nb / safe))
        m2 = np.where(
            (na == 0) | (nb == 0),
            out.m2[at] + part.m2,
            out.m2[at] + part.m2 + delta * delta * (na * nb / safe),
        )
        out.mean[at] = np.where(nb == 0, out.mean[at], mean)
        out.m2[at] = m2
        out.count[at] = n
        out.total[at] += part.total
        out.min[at] = np.minimum(out.min[at], part.min)
        out.max[at] = np.maximum(out.max[at], part.max)
    return out


class ZonalSummary(Reduction):
    """Per zone of input ``zones`` (band 1), each band of the other inputs: a `ZoneTable`.

    The result is ``[[ZoneTable]]`` by input (the zones input's entry is empty) and band.
    A zone is a zone id at a valid pixel of the zones raster; it has count 0 where none of
    a band's pixels in it are valid.
    """

    name = "zonal"

    def __init__(self, zones: int, bands: Sequence[int]) -> None:
        self.zones = zones
        self.bands = tuple(0 if i == zones else n for i, n in enumerate(bands))

    def start(self) -> list[list[ZoneTable]]:
        return [[ZoneTable.empty() for _ in range(n)] for n in self.bands]

    def update(self, partial: list[list[ZoneTable]], block: Block) -> list[list[ZoneTable]]:
        # Infinities are valid values: their zones' mean and std are inf or NaN, as NumPy's.
        with np.errstate(invalid="ignore", over="ignore"):
            return self._update(partial, block)

    def _update(self, partial: list[list[ZoneTable]], block: Block) -> list[list[ZoneTable]]:
        zone_valid = block.valid[self.zones][0]
        ids, zone_of = np.unique(block.values[self.zones][0][zone_valid], return_inverse=True)
        ids = ids.astype(np.int64)
        tables = []
        for i, n in enumerate(self.bands):
            tables.append([])
            for b in range(n):
                valid = block.valid[i][b][zone_valid]
                x = block.values[i][b][zone_valid][valid].astype(np.float64)
                tables[-1].append(window_table(ids, zone_of.ravel()[valid], x))
        return self.merge(partial, tables)

    def merge(self, first: list[list[ZoneTable]], second: list[list[ZoneTable]]) -> list:
        with np.errstate(invalid="ignore", over="ignore"):
            return self._merge(first, second)

    def _merge(self, first: list[list[ZoneTable]], second: list[list[ZoneTable]]) -> list:
        return [
            [merge_tables(a, b) for a, b in zip(fa, fb, strict=True)]
            for fa, fb in zip(first, second, strict=True)
        ]
