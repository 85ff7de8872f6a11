"""Reductions: what a window contributes to a figure, and how two contributions combine.

A reduction runs through the same engine as a kernel (`mpraster.reduce`), but each window
gives a small *partial* instead of a tile: a worker computes ``update(start(), block)``
for its window, and the main process folds the partials in plan order with ``merge``,
then ``finish`` turns the last one into the result. Because the order of the merges is
the plan's, never the order in which workers finish, the result is the same to the last
bit whatever the mode, the I/O placement and ``-j``.

A user reduction is a `Reduction` subclass, or a function declared with `reduction`::

    import operator
    import mpraster

    @mpraster.reduction(start=0, merge=operator.add)
    def count_positive(partial, block):
        values, valid = block.values[0], block.valid[0]
        return partial + int(((values > 0) & valid).sum())

    mpraster.reduce("dem.tif", count_positive, jobs=2)
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from mpraster.errors import KernelDefinitionError, KernelNotFoundError


@dataclass(frozen=True)
class Block:
    """One window of every input, as a reduction sees it.

    ``values[i]`` is input ``i``'s (bands, rows, cols) array and ``valid[i]`` a boolean
    array of the same shape: False where the pixel is nodata, masked (GDAL's mask band:
    per-dataset mask, alpha) or NaN.
    """

    index: int
    window: Window
    values: tuple[np.ndarray, ...]
    valid: tuple[np.ndarray, ...]


class Reduction:
    """A block-wise reduction: ``start``, ``update`` with a `Block`, ``merge``, ``finish``.

    Subclasses must be picklable (defined at the top level of a module) to run in
    processes and MPI modes; their parameters are their attributes. ``update`` must not
    keep views of the block's arrays: with ``--io main`` they live in shared memory that
    is reused once the window is done.
    """

    name = "reduction"
    # Reductions are NumPy calls on whole arrays, which mostly release the GIL: threads.
    releases_gil = True

    def start(self) -> Any:
        """The partial of no pixel at all."""
        raise NotImplementedError

    def update(self, partial: Any, block: Block) -> Any:
        """``partial`` with the pixels of ``block`` added."""
        raise NotImplementedError

    def merge(self, first: Any, second: Any) -> Any:
        """The partial of ``first``'s pixels then ``second``'s (in plan order)."""
        raise NotImplementedError

    def finish(self, partial: Any) -> Any:
        """The result, from the partial of every window."""
        return partial


class FunctionReduction(Reduction):
    """A reduction declared with `reduction` on its ``update`` function.

    Pickled by reference (``module:name``), as a process worker imports a kernel.
    """

    def __init__(
        self,
        update: Callable[[Any, Block], Any],
        start: Any,
        merge: Callable[[Any, Any], Any],
        finish: Callable[[Any], Any] | None,
        releases_gil: bool,
    ) -> None:
        self._update = update
        self._start = start
        self._merge = merge
        self._finish = finish
        self.name = update.__name__
        self.releases_gil = releases_gil
        self.ref = f"{update.__module__}:{update.__qualname__}"

    def start(self) -> Any:
        return self._start() if callable(self._start) else copy.deepcopy(self._start)

    def update(self, partial: Any, block: Block) -> Any:
        return self._update(partial, block)

    def merge(self, first: Any, second: Any) -> Any:
        return self._merge(first, second)

    def finish(self, partial: Any) -> Any:
        return partial if self._finish is None else self._finish(partial)

    def __call__(self, partial: Any, block: Block) -> Any:
        return self._update(partial, block)

    def __reduce__(self) -> tuple[Callable[[str], Reduction], tuple[str]]:
        return load_reduction, (self.ref,)


def reduction(
    update: Callable[[Any, Block], Any] | None = None,
    *,
    start: Any = None,
    merge: Callable[[Any, Any], Any] | None = None,
    finish: Callable[[Any], Any] | None = None,
    releases_gil: bool = True,
) -> Any:
    """Declare ``update(partial, block) -> partial`` as a reduction.

    Parameters
    ----------
    start : value or callable
        The partial of no pixel: called if callable, else copied for every window.
    merge : callable
        ``merge(first, second) -> partial``, associative; called in plan order.
    finish : callable, optional
        ``finish(partial) -> result``; the last partial itself if not given.
    releases_gil : bool
        False sends ``--mode auto`` to processes (pure-Python loops).

    Raises
    ------
    KernelDefinitionError
        If ``merge`` is not given.
    """

    def declare(func: Callable[[Any, Block], Any]) -> FunctionReduction:
        if merge is None or not callable(merge):
            raise KernelDefinitionError(
                f"reduction '{func.__name__}' needs merge=: how two partials combine "
                "(e.g. operator.add)"
            )
        return FunctionReduction(func, start, merge, finish, releases_gil)

    return declare if update is None else declare(update)


def load_reduction(ref: str) -> Reduction:
    """Import a reduction by ``module:name`` (how process workers find a user's).

    Raises
    ------
    KernelNotFoundError
        If the module or the name is not there, or is not a reduction.
    """
    module_name, _, attr = ref.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise KernelNotFoundError(
            f"cannot import reduction '{ref}': {err}; define it at the top level of a module"
        ) from err
    if isinstance(found, type) and issubclass(found, Reduction):
        found = found()
    if not isinstance(found, Reduction):
        raise KernelNotFoundError(
            f"'{ref}' is not a reduction; declare it with @mpraster.reduction"
        )
    return found


class Together(Reduction):
    """Several reductions in one pass over the raster; partials and result are tuples."""

    def __init__(self, *parts: Reduction) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.releases_gil = all(p.releases_gil for p in parts)

    def start(self) -> tuple:
        return tuple(p.start() for p in self.parts)

    def update(self, partial: tuple, block: Block) -> tuple:
        return tuple(p.update(s, block) for p, s in zip(self.parts, partial, strict=True))

    def merge(self, first: tuple, second: tuple) -> tuple:
        return tuple(p.merge(a, b) for p, a, b in zip(self.parts, first, second, strict=True))

    def finish(self, partial: tuple) -> tuple:
        return tuple(p.finish(s) for p, s in zip(self.parts, partial, strict=True))
