"""The kernel registry: metadata, look-up of built-in, plugin and user kernels, parameters.

A kernel is a function from one array per input, each shaped (bands, rows, cols), to one
array of the same rows and cols. Its parameters are keyword-only arguments with a type
annotation and a default; they arrive from the command line as ``-p name=value`` strings
and are converted and checked here, before any work starts.
"""

from __future__ import annotations

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
    KernelParameterError,
)
from mpraster.validity import RULES, valid_pixels

ENTRY_POINT_GROUP = "mpraster.kernels"
_BUILTIN_MODULE = "mpraster.builtin_kernels"
_SPEC_ATTR = "__mpraster_kernel__"
_PARAM_TYPES = (int, float, bool, str)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its type, its default and a line of help."""

    name: str
    type: type
    default: Any

    def describe(self) -> str:
        return f"{self.name} ({self.type.__name__}, default {self.default!r})"


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
    def doc(self) -> str:
        """The first line of the function's docstring."""
        return (inspect.getdoc(self.func) or "").split("\n", 1)[0]

    def halo(self, params: Mapping[str, Any]) -> int:
        """Pixels the kernel needs on every side of a window, for these parameters."""
        halo = self.spec.halo
        return int(halo(params)) if callable(halo) else int(halo)

    def check_inputs(self, counts: Sequence[int], names: Sequence[str]) -> None:
        """Raise `KernelInputError` if the inputs' band counts do not suit the kernel."""
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
                raise KernelDtypeError(
                    f"kernel '{self.name}' does not take {dtype} input ({name}); it takes "
                    f"{', '.join(self.dtypes)}: convert first, e.g. rio convert --dtype float32"
                )

    def output_dtype(self, dtypes: Sequence[str], params: Mapping[str, Any]) -> np.dtype:
        """The output data type for inputs of ``dtypes``."""
        rule = self.spec.dtype
        if rule is None:
            return np.dtype(dtypes[0])
        return np.dtype(rule(dtypes, params) if callable(rule) else rule)

    def output_bands(self, counts: Sequence[int], params: Mapping[str, Any]) -> int:
        """The output band count for inputs with ``counts`` bands."""
        rule = self.spec.bands
        if rule is None:
            return counts[0]
        return int(rule(counts, params) if callable(rule) else rule)

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
        parsed = {name: param.default for name, param in self.params.items()}
        for name, value in raw.items():
            key = name.replace("-", "_")
            if key not in self.params:
                known = ", ".join(p.describe() for p in self.params.values()) or "none"
                raise KernelParameterError(
                    f"kernel '{self.name}' has no parameter '{name}'; its parameters: {known}"
                )
            parsed[key] = _convert(self.name, self.params[key], value)
        if self.spec.validate is not None:
            try:
                self.spec.validate(parsed)
            except KernelParameterError:
                raise
            except (TypeError, ValueError) as err:
                raise KernelParameterError(f"kernel '{self.name}': {err}") from err
        return parsed

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
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a function as an mpraster kernel; the function itself is returned unchanged.

    The function takes one (bands, rows, cols) array per input, positionally, and its
    parameters as keyword-only arguments annotated int, float, bool or str, with defaults.
    A keyword-only argument named ``ctx`` receives a `KernelContext` (nodata, transform).
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
    )

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, _SPEC_ATTR, spec)
        return func

    return decorate


def _convert(kernel_name: str, param: Param, value: Any) -> Any:
    """Convert one parameter value to its declared type."""
    if not isinstance(value, str):
        ok = isinstance(value, param.type) and not (
            param.type is not bool and isinstance(value, bool)
        )
        if param.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise KernelParameterError(
                f"parameter '{param.name}' of kernel '{kernel_name}' must be of type "
                f"{param.type.__name__}, got {value!r}"
            )
        return value
    try:
        if param.type is bool:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return param.type(value)
    except ValueError as err:
        raise KernelParameterError(
            f"parameter '{param.name}' of kernel '{kernel_name}' must be of type "
            f"{param.type.__name__}, got {value!r}"
        ) from err


def _params_of(func: Callable[..., Any], name: str) -> dict[str, Param]:
    """Read a kernel's parameters from its keyword-only arguments."""
    params = {}
    for arg in inspect.signature(func).parameters.values():
        if arg.kind is not inspect.Parameter.KEYWORD_ONLY or arg.name == "ctx":
            continue
        annotation = arg.annotation
        if isinstance(annotation, str):
            annotation = {t.__name__: t for t in _PARAM_TYPES}.get(annotation, annotation)
        if arg.default is inspect.Parameter.empty:
            raise KernelDefinitionError(
                f"kernel '{name}': parameter '{arg.name}' needs a default value"
            )
        if annotation is inspect.Parameter.empty:
            annotation = type(arg.default)
        if annotation not in _PARAM_TYPES:
            raise KernelDefinitionError(
                f"kernel '{name}': parameter '{arg.name}' must be annotated int, float, "
                f"bool or str, not {annotation!r}"
            )
        params[arg.name] = Param(arg.name, annotation, arg.default)
    return params


def describe(func: Callable[..., Any], ref: str, name: str | None = None) -> Kernel:
    """Build a `Kernel` from a function and the metadata its decorator recorded."""
    spec = getattr(func, _SPEC_ATTR, None) or KernelSpec()
    name = spec.name or name or getattr(func, "__name__", ref)
    signature = inspect.signature(func).parameters
    wants_context = "ctx" in signature and signature["ctx"].kind is inspect.Parameter.KEYWORD_ONLY
    return Kernel(
        name=name,
        ref=ref,
        func=func,
        spec=spec,
        params=_params_of(func, name),
        wants_context=wants_context,
    )


def builtin_kernels() -> dict[str, Kernel]:
    """The kernels that ship with mpraster, by name."""
    module = importlib.import_module(_BUILTIN_MODULE)
    found = {}
    for attr in module.__all__:
        func = getattr(module, attr)
        spec = getattr(func, _SPEC_ATTR)
        name = spec.name or attr
        found[name] = describe(func, ref=name)
        for alias in spec.aliases:
            found[alias] = found[name]
    return found


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
    return _attribute(module, attr, ref)


def _load_from_module(module_name: str, attr: str, ref: str) -> Callable[..., Any]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise KernelNotFoundError(
            f"cannot import module '{module_name}' for --kernel {ref}: {err}"
        ) from err
    return _attribute(module, attr, ref)


def _attribute(module: Any, attr: str, ref: str) -> Callable[..., Any]:
    func = module
    for part in attr.split("."):  # a qualified name: Class.method
        func = getattr(func, part, None)
    if not callable(func):
        raise KernelNotFoundError(f"--kernel {ref}: no function '{attr}' in {module.__name__}")
    return func


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


def load_kernel(ref: str) -> Kernel:
    """Find a kernel by built-in or plugin name, ``module:function`` or ``file.py:function``.

    Raises
    ------
    KernelNotFoundError
        If nothing matches, naming the kernels there are.
    """
    if ":" in ref:
        location, _, attr = ref.rpartition(":")
        if location.endswith(".py") or os.sep in location:
            func = _load_from_file(location, attr, ref)
        else:
            func = _load_from_module(location, attr, ref)
        return describe(func, ref=ref, name=attr)
    builtins = builtin_kernels()
    if ref in builtins:
        return builtins[ref]
    plugins = plugin_kernels()
    if ref in plugins:
        return describe(plugins[ref].load(), ref=ref, name=ref)
    known = ", ".join(sorted([*builtins, *plugins]))
    raise KernelNotFoundError(
        f"unknown kernel '{ref}'; known kernels: {known} "
        "(or give package.module:function or path/to/file.py:function)"
    )
