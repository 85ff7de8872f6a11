"""A kernel function's arguments: which are input arrays, which are parameters, and ``ctx``.

Arguments without a default are the input arrays (one per input, positionally); arguments
with a default, positional or keyword-only, are parameters, typed by their annotation or
their default (int, float, bool or str); ``ctx`` receives the window's context. Parameter
values arrive as ``-p name=value`` strings or typed values and are converted here.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mpraster.errors import KernelDefinitionError, KernelParameterError

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
class Arguments:
    """A kernel function's arguments, sorted: see `arguments_of`."""

    arrays: tuple[str, ...] | None
    params: dict[str, Param]
    wants_context: bool


def arguments_of(func: Callable[..., Any], name: str) -> Arguments:
    """Sort a kernel's arguments into input arrays (positional, no default; any number for
    ``*arrays``), parameters (with a default, positional or keyword-only) and ``ctx``.

    Raises
    ------
    KernelDefinitionError
        For an argument that is neither, or one that a second input would bind to.
    """
    arrays: list[str] = []
    any_number = False
    params: dict[str, Param] = {}
    context = None
    for arg in _signature(func, name).parameters.values():
        if arg.kind is arg.VAR_KEYWORD:
            continue
        if arg.kind is arg.VAR_POSITIONAL:
            any_number = True
            if params:
                # f(a, scale=1.0, *rest) called with two inputs binds the second to scale.
                raise KernelDefinitionError(
                    f"kernel '{name}': parameter '{next(iter(params))}' comes before "
                    f"*{arg.name}, where a second input would take its place; move it after "
                    f"*{arg.name}"
                )
        elif arg.name == "ctx" and arg.kind is not arg.POSITIONAL_ONLY:
            context = arg
        elif arg.default is arg.empty and arg.kind is not arg.KEYWORD_ONLY:
            if context is not None:
                raise KernelDefinitionError(
                    f"kernel '{name}': ctx comes before the input array '{arg.name}'; put "
                    "ctx after the input arrays"
                )
            arrays.append(arg.name)
        else:
            params[arg.name] = _param(arg, name)
    return Arguments(None if any_number else tuple(arrays), params, context is not None)


def _signature(func: Callable[..., Any], name: str) -> inspect.Signature:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError) as err:  # a C function or ufunc may have none
        raise KernelDefinitionError(
            f"kernel '{name}': cannot read its arguments ({err}); wrap it in a Python function"
        ) from err


def _param(arg: inspect.Parameter, kernel_name: str) -> Param:
    """The `Param` of an argument with a default, typed by its annotation or default."""
    start = f"kernel '{kernel_name}': parameter '{arg.name}'"
    if arg.default is arg.empty:
        raise KernelDefinitionError(f"{start} needs a default value")
    if arg.kind is arg.POSITIONAL_ONLY:
        raise KernelDefinitionError(
            f"{start} is positional-only (before '/'), so -p cannot set it; move it after '/'"
        )
    annotation = arg.annotation
    if isinstance(annotation, str):  # from __future__ import annotations
        annotation = {t.__name__: t for t in _PARAM_TYPES}.get(annotation, annotation)
    # Input arrays never have a default: say so to whoever gave one (src=None).
    hint = "" if arg.kind is arg.KEYWORD_ONLY else " (input arrays take no default)"
    if annotation is arg.empty:
        if type(arg.default) not in _PARAM_TYPES:
            raise KernelDefinitionError(
                f"{start} has the default {arg.default!r}: a parameter is an int, float, "
                f"bool or str with a default of that type{hint}"
            )
        annotation = type(arg.default)
    if annotation not in _PARAM_TYPES:
        raise KernelDefinitionError(
            f"{start} must be annotated int, float, bool or str, not "
            f"{getattr(annotation, '__name__', annotation)}{hint}"
        )
    return Param(arg.name, annotation, arg.default)


def parse_params(
    kernel_name: str,
    params: Mapping[str, Param],
    arrays: Sequence[str] | None,
    validate: Callable[[dict[str, Any]], None] | None,
    raw: Mapping[str, Any],
) -> dict[str, Any]:
    """Convert and check ``raw`` values of ``params``; unset ones take their defaults.

    Raises
    ------
    KernelParameterError
        For an unknown name, a value of the wrong type, or one ``validate`` rejects.
    """
    parsed = {name: param.default for name, param in params.items()}
    for name, value in raw.items():
        key = name.replace("-", "_")
        if key not in params:
            raise KernelParameterError(_unknown_param(kernel_name, params, arrays, name))
        parsed[key] = convert(kernel_name, params[key], value)
    if validate is not None:
        try:
            validate(parsed)
        except KernelParameterError:
            raise
        except (TypeError, ValueError) as err:
            raise KernelParameterError(f"kernel '{kernel_name}': {err}") from err
    return parsed


def _unknown_param(
    kernel_name: str, params: Mapping[str, Param], arrays: Sequence[str] | None, name: str
) -> str:
    """The message for ``-p name=...`` where the kernel has no such parameter."""
    start = f"kernel '{kernel_name}' has no parameter '{name}'"
    key = name.replace("-", "_")
    if key in (arrays or ()):
        return (
            f"{start}: '{key}' is an input array (an argument without a default); give it "
            f"a default ({key}: float = 1.0) to make it a parameter"
        )
    known = ", ".join(p.describe() for p in params.values()) or "none"
    return f"{start}{did_you_mean(closest(key, params))}; its parameters: {known}"


def convert(kernel_name: str, param: Param, value: Any) -> Any:
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
        spelled = " (true or false)" if param.type is bool else ""
        raise KernelParameterError(
            f"parameter '{param.name}' of kernel '{kernel_name}' must be of type "
            f"{param.type.__name__}{spelled}, got {value!r}"
        ) from err


def name_key(name: str) -> str:
    """A kernel or parameter name with ``_`` and ``-`` made the same (``focal_mean`` is
    ``focal-mean``, as ``z-factor`` is ``z_factor``)."""
    return name.replace("_", "-")


def closest(name: str, names: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Up to three of ``names`` closest to ``name``: the most alike by `difflib`, then those
    that contain it (``mean`` finds ``focal-mean``)."""
    keys = {name_key(n): n for n in sorted(names)}
    key = name_key(name)
    # 0.7, not difflib's 0.6: at 0.6 any four letters sharing three ("nope") find "slope".
    alike = difflib.get_close_matches(key, keys, n=3, cutoff=0.7)
    containing = [k for k in keys if len(key) >= 3 and key in k and k not in alike]
    return [keys[k] for k in [*alike, *containing][:3]]


def did_you_mean(close: Sequence[str]) -> str:
    """`` (did you mean 'a' or 'b'?)``, or nothing when there is no close name."""
    if not close:
        return ""
    quoted = [f"'{n}'" for n in close]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {listed}?)"
