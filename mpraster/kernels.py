"""The kernel registry: metadata, look-up of built-in, plugin and user kernels, parameters.

A kernel is a function from one array per input, each shaped (bands, rows, cols), to one
array of the same rows and cols. Its arguments without a default are the input arrays; its
arguments with a default (positional or keyword-only) are its parameters, typed by their
annotation or their default. Parameters arrive from the command line as ``-p name=value``
strings and are converted and checked here, before any work starts.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpraster.errors import (
    KernelDefinitionError,
    KernelDtypeError,
    KernelInputError,
    KernelNotFoundError,
)
from mpraster.kernel_outputs import Output, check_outputs
from mpraster.kernel_params import (
    Param,
    arguments_of,
    closest,
    did_you_mean,
    name_key,
    parse_params,
)
from mpraster.validity import RULES, valid_pixels

ENTRY_POINT_GROUP = "mpraster.kernels"
_BUILTIN_MODULE = "mpraster.builtin_kernels"
_SPEC_ATTR = "__mpraster_kernel__"


@dataclass(frozen=True)
class KernelSpec:
    """What the `kernel` decorator records about a function (see `kernel`)."""

    name: str | None = None
    aliases: tuple[str, ...] = ()
    releases_gil: bool = False
    halo: int | Callable[[Mapping[str, Any]], int] = 0
    fill: str = "edge"
    inputs: str = "one raster"
    check_inputs: Callable[[Sequence[int]], None] | None = None
    dtypes: tuple[str, ...] | None = None
    dtype: str | Callable[..., Any] | None = None
    bands: int | Callable[..., int] | None = None
    nodata: float | Callable[..., float | None] | None = None
    validate: Callable[[dict[str, Any]], None] | None = None
    bands_from: str | Sequence[Any] | Callable[..., Sequence[Any]] | None = None
    band_meta: Any = None
    valid: str = "all"
    outputs: tuple[Output, ...] = ()


@dataclass(frozen=True)
class KernelContext:
    """What a kernel may know about the window it computes (its ``ctx`` argument).

    ``transform`` is the affine transform of ``read`` (the window grown by the halo), so
    ``transform.a`` and ``transform.e`` are the pixel's width and (negative) height.
    ``band_nodata`` has, per input, one nodata value (or None) per band; ``nodata`` one
    per input: the value its bands share, None if they have none or different ones.
    ``masks`` has, per input, its per-dataset mask over ``read`` ((rows, cols) uint8, 0
    where invalid: an internal or external mask, or an alpha band), or None. `valid`
    combines them.
    """

    window: Any
    read: Any
    transform: Any
    nodata: tuple[float | None, ...]
    halo: int
    band_nodata: tuple[tuple[float | None, ...], ...] = ()
    masks: tuple[np.ndarray | None, ...] = ()

    def valid(self, index: int, array: np.ndarray) -> np.ndarray:
        """Where each band of input ``index``'s ``array`` is valid: (bands, rows, cols)
        bool from its mask and its bands' nodata (NaN where NaN is the nodata value)."""
        nodata = self.band_nodata[index] if self.band_nodata else (self.nodata[index],)
        if len(nodata) != array.shape[0]:
            nodata = (nodata[0],) * array.shape[0]
        mask = self.masks[index] if self.masks else None
        return valid_pixels(array, nodata, mask)


@dataclass(frozen=True)
class Kernel:
    """A loaded kernel with everything a run needs to know about it.

    ``ref`` is how a worker process finds the kernel again: a built-in or plugin name,
    ``package.module:function`` or ``path/to/file.py:function``.
    """

    name: str
    ref: str
    func: Callable[..., Any]
    spec: KernelSpec
    params: Mapping[str, Param] = field(default_factory=dict)
    wants_context: bool = False
    # The names of the input-array arguments, or None when it takes any number (*arrays).
    arrays: tuple[str, ...] | None = None

    @property
    def releases_gil(self) -> bool:
        return self.spec.releases_gil

    @property
    def dtypes(self) -> tuple[str, ...] | None:
        return self.spec.dtypes

    @property
    def fill(self) -> str:
        return self.spec.fill

    @property
    def outputs(self) -> tuple[str, ...]:
        """The names of its outputs, when it declares several (else empty)."""
        return tuple(o.name for o in self.spec.outputs)

    def for_output(self, name: str) -> Kernel:
        """The kernel as a run of its output ``name`` alone sees it: that output's type,
        bands, nodata and band metadata, named ``KERNEL.OUTPUT`` in messages."""
        return self._output_views[name]

    @functools.cached_property
    def _output_views(self) -> dict[str, Kernel]:
        # Made once per kernel: workers ask for them on every window.
        views = {}
        for declared in self.spec.outputs:
            spec = dataclasses.replace(
                self.spec,
                dtype=declared.dtype,
                bands=declared.bands,
                nodata=declared.nodata,
                bands_from=declared.bands_from,
                band_meta=declared.band_meta,
                outputs=(),
            )
            views[declared.name] = dataclasses.replace(
                self, name=f"{self.name}.{declared.name}", spec=spec
            )
        return views

    @property
    def doc(self) -> str:
        """The first line of the function's docstring."""
        return (inspect.getdoc(self.func) or "").split("\n", 1)[0]

    def halo(self, params: Mapping[str, Any]) -> int:
        """Pixels the kernel needs on every side of a window, for these parameters.

        Raises
        ------
        KernelDefinitionError
            If the halo (or its rule's answer) is not a whole number of at least 0.
        """
        rule = self.spec.halo
        return self._whole("halo", rule, rule(params) if callable(rule) else rule, 0)

    def check_inputs(self, counts: Sequence[int], names: Sequence[str]) -> None:
        """Raise `KernelInputError` if the number of inputs or their band counts do not suit
        the kernel."""
        if self.arrays is not None and len(counts) != len(self.arrays):
            # Caught here, not as a TypeError on the first window (or, with a positional
            # parameter, as the second input silently taking the parameter's place).
            takes = f"{len(self.arrays)} input{'s' if len(self.arrays) != 1 else ''}"
            raise KernelInputError(
                f"kernel '{self.name}' takes {takes} ({', '.join(self.arrays) or 'none'}); "
                f"given {len(counts)}: {', '.join(names)}"
            )
        if self.spec.check_inputs is None:
            return
        try:
            self.spec.check_inputs(counts)
        except ValueError as err:
            given = ", ".join(
                f"{n} ({c} band{'s' if c != 1 else ''})" for n, c in zip(names, counts, strict=True)
            )
            raise KernelInputError(
                f"kernel '{self.name}' takes {self.spec.inputs}: {err}; given {given}"
            ) from err

    def check_dtypes(self, dtypes: Sequence[str], names: Sequence[str]) -> None:
        """Raise `KernelDtypeError` if an input's data type is not one this kernel takes."""
        if self.dtypes is None:
            return
        for dtype, name in zip(dtypes, names, strict=True):
            if str(dtype) not in self.dtypes:
                # Suggest a type the kernel takes (float32 when it can, it holds most data).
                target = "float32" if "float32" in self.dtypes else self.dtypes[0]
                raise KernelDtypeError(
                    f"kernel '{self.name}' does not take {dtype} input ({name}); it takes "
                    f"{', '.join(self.dtypes)}: convert first, e.g. rio convert --dtype {target}"
                )

    def output_dtype(self, dtypes: Sequence[str], params: Mapping[str, Any]) -> np.dtype:
        """The output data type for inputs of ``dtypes``.

        Raises
        ------
        KernelDefinitionError
            If the kernel's ``dtype`` (or its rule's answer) is not a data type.
        """
        rule = self.spec.dtype
        if rule is None:
            return np.dtype(dtypes[0])
        value = rule(dtypes, params) if callable(rule) else rule
        try:
            return np.dtype(value)
        except TypeError as err:
            source = "its dtype rule gives " if callable(rule) else "it declares dtype="
            raise KernelDefinitionError(
                f"kernel '{self.name}': {source}{value!r}, which is not a data type "
                "(e.g. 'float32', 'uint8')"
            ) from err

    def output_bands(self, counts: Sequence[int], params: Mapping[str, Any]) -> int:
        """The output band count for inputs with ``counts`` bands.

        Raises
        ------
        KernelDefinitionError
            If the kernel's ``bands`` (or its rule's answer) is not a whole number of at
            least 1.
        """
        rule = self.spec.bands
        if rule is None:
            return counts[0]
        return self._whole("bands", rule, rule(counts, params) if callable(rule) else rule, 1)

    def _whole(self, what: str, rule: Any, value: Any, least: int) -> int:
        """``value``, the kernel's ``what`` (or its rule's answer), as a whole number."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            source = f"its {what} rule gives " if callable(rule) else f"it declares {what}="
            raise KernelDefinitionError(
                f"kernel '{self.name}': {source}{value!r}, not a whole number of at least {least}"
            )
        return int(value)

    def output_nodata(
        self, nodata: Sequence[float | None], dtype: np.dtype, params: Mapping[str, Any]
    ) -> float | None:
        """The output's nodata value: the kernel's rule, else the first input's if it fits."""
        rule = self.spec.nodata
        if rule is None:
            return nodata[0] if representable(nodata[0], dtype) else None
        return rule(nodata, dtype, params) if callable(rule) else rule

    def parse_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Convert and check parameters; unset ones take their defaults.

        Values may be strings (from ``-p name=value``) or already typed (from the library).

        Raises
        ------
        KernelParameterError
            For an unknown name, a value of the wrong type, or one the kernel rejects.
        """
        return parse_params(self.name, self.params, self.arrays, self.spec.validate, raw)

    def call(
        self, arrays: Sequence[np.ndarray], params: Mapping[str, Any], ctx: KernelContext
    ) -> Any:
        """Run the kernel function on one window's arrays."""
        if self.wants_context:
            return self.func(*arrays, ctx=ctx, **params)
        return self.func(*arrays, **params)


def representable(value: float | None, dtype: np.dtype) -> bool:
    """Whether ``value`` can be stored exactly in ``dtype`` (NaN only in floats)."""
    if value is None:
        return False
    if np.issubdtype(dtype, np.floating):
        return bool(np.isnan(value)) or np.finfo(dtype).min <= value <= np.finfo(dtype).max
    if np.isnan(value):
        return False
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def kernel(
    name: str | None = None,
    *,
    aliases: Sequence[str] = (),
    releases_gil: bool = False,
    halo: int | Callable[[Mapping[str, Any]], int] = 0,
    fill: str = "edge",
    inputs: str = "one raster",
    check_inputs: Callable[[Sequence[int]], None] | None = None,
    dtypes: Sequence[str] | None = None,
    dtype: str | Callable[..., Any] | None = None,
    bands: int | Callable[..., int] | None = None,
    nodata: float | Callable[..., float | None] | None = None,
    validate: Callable[[dict[str, Any]], None] | None = None,
    bands_from: str | Sequence[Any] | Callable[..., Sequence[Any]] | None = None,
    band_meta: Any = None,
    valid: str = "all",
    outputs: Sequence[Output] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a function as an mpraster kernel; the function itself is returned unchanged.

    The function takes one (bands, rows, cols) array per input: its arguments without a
    default. Its arguments with a default (``scale=2.0``, positional or keyword-only) are
    its parameters, int, float, bool or str by their annotation or their default. An
    argument named ``ctx`` receives a `KernelContext` (nodata, transform).
    It returns (bands, rows, cols) — the read window's size (the halo is cropped off) or
    the window's own — or (rows, cols) for one band.

    Parameters
    ----------
    name : str, optional
        The name to list it under (default: the function's name); ``aliases`` too.
    releases_gil : bool
        Whether the function releases the GIL for most of its work; ``--mode auto`` runs
        GIL-holding kernels in processes.
    halo : int or callable
        Extra pixels needed on every side of a window, or ``f(params)`` giving them.
    fill : {"edge", "nodata"}
        What a read past the raster's edge holds: the edge pixels repeated outwards, or the
        input's nodata (NaN, or 0 for integers without nodata).
    inputs : str
        What the kernel takes, in words, for listings and errors.
    check_inputs : callable, optional
        ``f(band_counts)`` raising ``ValueError`` when the inputs do not suit the kernel.
    dtypes : sequence of str, optional
        The input data types it takes (default: any).
    dtype : str or callable, optional
        Output data type, or ``f(input_dtypes, params)``; default: the first input's.
    bands : int or callable, optional
        Output band count, or ``f(input_band_counts, params)``; default: the first input's.
    nodata : float or callable, optional
        Output nodata, or ``f(input_nodata, output_dtype, params)``; default: the first
        input's nodata where the output dtype can hold it.
    validate : callable, optional
        ``f(params)`` raising ``ValueError`` for a bad combination of parameter values.
    bands_from : {"same", "reverse"}, sequence or callable, optional
        The input band each output band is made from, whose metadata (colour, description,
        scale, offset, units, nodata) it takes: ``"same"`` (band i of the first input),
        ``"reverse"``, per output band a band of the first input, an ``(input, band)``
        pair (0-based) or None, or ``f(input_band_counts, params)`` giving that. Default:
        unknown (the output bands get no metadata).
    band_meta : sequence or callable, optional
        Per output band, `mpraster.metadata.BandMeta` fields to set over what
        ``bands_from`` brought (``{"description": "NDVI"}``) or None (keep it); or
        ``f(mapped, params)`` returning per band a BandMeta, a mapping or None.
    valid : {"all", "any", "kernel"}
        Where the output is valid when the inputs have masks: where all inputs are valid
        at the pixel (for a halo kernel: the centre pixel), where any is, or where the
        kernel says, returning ``(array, valid)`` (``valid``: bool, the array's rows, cols).
    outputs : sequence of `mpraster.Output`, optional
        Several outputs from one read, each with its own name, ``dtype``, ``bands``,
        ``nodata``, ``bands_from`` and ``band_meta`` (those given here are then unused).
        The kernel returns a mapping from output name to array (each as above; with
        ``valid="kernel"``, each an ``(array, valid)`` pair), or a tuple in this order.
        A run writes the ones it is asked for, each to its own file (``-o NAME=FILE``).
    """
    if fill not in ("edge", "nodata"):
        raise ValueError(f"fill must be 'edge' or 'nodata', got {fill!r}")
    if valid not in RULES:
        raise ValueError(f"valid must be one of {', '.join(RULES)}, got {valid!r}")
    spec = KernelSpec(
        name=name,
        aliases=tuple(aliases),
        releases_gil=releases_gil,
        halo=halo,
        fill=fill,
        inputs=inputs,
        check_inputs=check_inputs,
        dtypes=tuple(str(np.dtype(d)) for d in dtypes) if dtypes else None,
        dtype=dtype,
        bands=bands,
        nodata=nodata,
        validate=validate,
        bands_from=bands_from,
        band_meta=band_meta,
        valid=valid,
        outputs=check_outputs(outputs),
    )

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, _SPEC_ATTR, spec)
        return func

    return decorate


def describe(func: Callable[..., Any], ref: str, name: str | None = None) -> Kernel:
    """Build a `Kernel` from a function and the metadata its decorator recorded.

    Raises
    ------
    KernelDefinitionError
        If its arguments cannot be sorted into input arrays, parameters and ``ctx``.
    """
    spec = getattr(func, _SPEC_ATTR, None) or KernelSpec()
    name = spec.name or name or getattr(func, "__name__", ref)
    arguments = arguments_of(func, name)
    return Kernel(
        name=name,
        ref=ref,
        func=func,
        spec=spec,
        params=arguments.params,
        wants_context=arguments.wants_context,
        arrays=arguments.arrays,
    )


def builtin_kernels() -> dict[str, Kernel]:
    """The kernels that ship with mpraster, by name."""
    return {name: _builtin(name) for name in _builtin_functions()}


@functools.cache
def _builtin_functions() -> dict[str, tuple[str, Callable[..., Any]]]:
    """Every name of a built-in kernel (its own and its aliases): its own name and function."""
    module = importlib.import_module(_BUILTIN_MODULE)
    found = {}
    for attr in module.__all__:
        func = getattr(module, attr)
        spec = getattr(func, _SPEC_ATTR)
        name = spec.name or attr
        found[name] = (name, func)
        for alias in spec.aliases:
            found[alias] = (name, func)
    return found


@functools.cache
def _builtin(name: str) -> Kernel:
    # Described when first asked for, once per process: describing every kernel would be
    # much of a small run's planning, and a process worker looks its kernel up again.
    own, func = _builtin_functions()[name]
    return _builtin(own) if own != name else describe(func, ref=own)


def plugin_kernels() -> dict[str, Any]:
    """Kernels registered by other packages under the ``mpraster.kernels`` entry point."""
    import importlib.metadata  # only when a name is not built in: it is slow to import

    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_from_file(path: str, attr: str, ref: str) -> Callable[..., Any]:
    if not os.path.isfile(path):
        raise KernelNotFoundError(f"kernel file not found: {path} (in --kernel {ref})")
    module_name = "mpraster_user_kernel_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise KernelNotFoundError(f"cannot load kernel file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise KernelNotFoundError(
            f"importing kernel file {path} failed: {type(err).__name__}: {err}"
        ) from err
    return _attribute(module, attr, ref, where=path)


def _load_from_module(module_name: str, attr: str, ref: str) -> Callable[..., Any]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise KernelNotFoundError(
            f"cannot import module '{module_name}' for --kernel {ref}: {err}"
        ) from err
    except Exception as err:  # the module's own code failed: a user's bug, not ours
        raise KernelNotFoundError(
            f"importing module '{module_name}' for --kernel {ref} failed: "
            f"{type(err).__name__}: {err}"
        ) from err
    return _attribute(module, attr, ref)


def _attribute(module: Any, attr: str, ref: str, where: str | None = None) -> Callable[..., Any]:
    func = module
    for part in attr.split("."):  # a qualified name: Class.method
        func = getattr(func, part, None)
    if not callable(func):
        functions = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise KernelNotFoundError(
            f"--kernel {ref}: no function '{attr}' in {where or module.__name__}"
            f"{did_you_mean(closest(attr, functions))}"
        )
    return func


def _load_plugin(name: str, entry_point: Any) -> Kernel:
    try:
        func = entry_point.load()
    except Exception as err:  # another package's code failed to import
        raise KernelNotFoundError(
            f"plugin kernel '{name}' ({entry_point.value}) cannot be loaded: "
            f"{type(err).__name__}: {err}"
        ) from err
    return describe(func, ref=name, name=name)


def _same_name(ref: str, names: Sequence[str] | Mapping[str, Any]) -> str | None:
    """The name in ``names`` equal to ``ref`` but for ``_`` and ``-``, if any."""
    return next((n for n in names if name_key(n) == name_key(ref)), None)


def as_kernel(kernel: str | Kernel | Callable[..., Any]) -> Kernel:
    """The `Kernel` for what `mpraster.run` was given: a name or reference (see
    `load_kernel`), a `Kernel`, or a function (decorated with `kernel` or not).

    A function's ref is ``module:qualname``; process workers import it from there (a
    script's ``__main__`` included: workers re-run the script as their main module).

    Raises
    ------
    KernelNotFoundError
        If ``kernel`` is none of these, or a reference that finds nothing.
    """
    if isinstance(kernel, str):
        return load_kernel(kernel)
    if isinstance(kernel, Kernel):
        return kernel
    if callable(kernel):
        ref = f"{getattr(kernel, '__module__', None)}:{getattr(kernel, '__qualname__', None)}"
        return describe(kernel, ref=ref, name=getattr(kernel, "__name__", None))
    raise KernelNotFoundError(
        f"a kernel is a name, package.module:function, path/to/file.py:function or a "
        f"function; got {type(kernel).__name__}"
    )


def main_script() -> str | None:
    """The file of the main module, which process workers re-run; None in an interactive
    session (a notebook, ``python -`` or ``python -c``)."""
    path = getattr(sys.modules["__main__"], "__file__", None)
    return path if path and os.path.isfile(path) else None


def importable(ref: str) -> bool:
    """Whether another process can find the kernel ``ref``: not a lambda or a closure, nor
    a function of an interactive session's ``__main__``."""
    if ref.startswith("__main__:") and main_script() is None:
        return False
    return "<" not in ref


def check_importable(what: str, name: str, ref: str, mode: str) -> None:
    """Raise `KernelNotFoundError` if ``mode`` runs in other processes and they cannot
    import ``ref`` (see `importable`); ``what`` names it: "kernel" or "reduction"."""
    if mode != "threads" and not importable(ref):
        raise KernelNotFoundError(
            f"{what} '{name}' ({ref}) is a lambda, defined inside a function or in an "
            f"interactive session: --mode {mode} workers cannot import it; define it at the "
            "top level of a module or script, or use --mode threads"
        )


def load_kernel(ref: str) -> Kernel:
    """Find a kernel by built-in or plugin name, ``module:function`` or ``file.py:function``.

    In a name, ``_`` and ``-`` are the same (``focal_mean`` is ``focal-mean``).

    Raises
    ------
    KernelNotFoundError
        If nothing matches, naming the closest kernels and all there are.
    """
    if ":" in ref:
        location, _, attr = ref.rpartition(":")
        if location.endswith(".py") or os.sep in location:
            func = _load_from_file(location, attr, ref)
        else:
            func = _load_from_module(location, attr, ref)
        return describe(func, ref=ref, name=attr)
    builtins = _builtin_functions()
    if ref in builtins:
        return _builtin(ref)
    plugins = plugin_kernels()
    if ref in plugins:  # before a built-in equal but for _ and -: the exact name wins
        return _load_plugin(ref, plugins[ref])
    name = _same_name(ref, builtins)
    if name is not None:
        return _builtin(name)
    name = _same_name(ref, plugins)
    if name is not None:
        return _load_plugin(name, plugins[name])
    names = [*builtins, *plugins]
    raise KernelNotFoundError(
        f"unknown kernel '{ref}'{did_you_mean(closest(ref, names))}; known kernels: "
        f"{', '.join(sorted(names))} (or give package.module:function or "
        "path/to/file.py:function)"
    )
