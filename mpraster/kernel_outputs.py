"""Kernels with several outputs: their declaration, and a result split into its outputs.

A kernel that makes several products from one read (slope, aspect and hillshade of a DEM;
a classification and its confidence) declares each with an `Output`: a name and, as a
single-output kernel declares them, the output's type, bands, nodata and band metadata.
It returns a mapping from output name to array (or a tuple in declared order). A run
writes any of them, each to its own file: each file is the one a run asking for that
output alone writes, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Output:
    """One output of a kernel with several (see `mpraster.kernel`'s ``outputs``).

    Parameters
    ----------
    name : str
        How the command line (``-o NAME=FILE``) and the result mapping name it.
    dtype, bands, nodata, bands_from, band_meta
        As the `mpraster.kernel` arguments of the same names, for this output.
    doc : str
        What it is, in a line, for ``mpraster kernels NAME``.
    """

    name: str
    dtype: str | Callable[..., Any] | None = None
    bands: int | Callable[..., int] | None = None
    nodata: float | Callable[..., float | None] | None = None
    bands_from: str | Sequence[Any] | Callable[..., Sequence[Any]] | None = None
    band_meta: Any = None
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"an output's name is letters, digits, '_' and '-', starting with a letter; "
                f"got {self.name!r}"
            )


def check_outputs(outputs: Sequence[Output]) -> tuple[Output, ...]:
    """``outputs`` as a kernel declares them: `Output`s with different names.

    Raises
    ------
    ValueError
        If one is not an `Output` or two share a name.
    """
    outputs = tuple(outputs)
    for output in outputs:
        if not isinstance(output, Output):
            raise ValueError(f"outputs are mpraster.Output(...) declarations, got {output!r}")
    names = [o.name for o in outputs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two outputs are named {', '.join(twice)}")
    return outputs


def split_result(result: Any, declared: Sequence[str], wanted: Sequence[str]) -> list[Any] | str:
    """The parts of a several-output kernel's ``result`` that a run writes (``wanted``),
    in that order; or what is wrong with it, in words.

    ``result`` is a mapping by output name (every declared output, or at least the wanted
    ones), or a sequence with one item per declared output, in declared order.
    """
    if isinstance(result, Mapping):
        missing = [name for name in wanted if name not in result]
        unknown = [name for name in result if name not in declared]
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"no {', '.join(map(repr, missing))}")
            if unknown:
                problems.append(f"unknown {', '.join(map(repr, unknown))}")
            return (
                f"a mapping with {' and '.join(problems)}; it declares outputs "
                f"{', '.join(declared)}"
            )
        return [result[name] for name in wanted]
    if isinstance(result, (tuple, list)) and len(result) == len(declared):
        by_name = dict(zip(declared, result, strict=True))
        return [by_name[name] for name in wanted]
    got = f"{len(result)} items" if isinstance(result, (tuple, list)) else type(result).__name__
    return (
        f"{got}; a kernel with outputs {', '.join(declared)} returns a mapping from "
        f"output name to array, or a tuple of {len(declared)} arrays in that order"
    )
