import re
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from helpers import DTYPES, synthetic
from rasterio.windows import Window

import mpraster
from mpraster.builtin_kernels import reverse, reverse_py
from mpraster.errors import (
    KernelDefinitionError,
    KernelDtypeError,
    KernelInputError,
    KernelNotFoundError,
    KernelParameterError,
    WindowFailed,
)
from mpraster.kernels import KernelContext, as_kernel, load_kernel
from mpraster.windows import WindowTask
from mpraster.worker import apply_kernel


@pytest.mark.parametrize("dtype", [*DTYPES, "int8", "int64", "uint64"])
@pytest.mark.parametrize("cost", [0, 3])
def test_reverse_is_exact_band_reversal(dtype, cost):
    data = synthetic((3, 17, 23), dtype)
    expected = data[::-1]
    for func in (reverse, reverse_py):
        out = func(data, cost=cost)
        assert out.dtype == data.dtype
        # Compare bytes, so -0.0, inf and NaN payloads count too.
        assert out.tobytes() == np.ascontiguousarray(expected).tobytes()


def test_reverse_takes_non_contiguous_input():
    data = synthetic((4, 20, 30), "uint16")[:, ::2, 1:]
    assert np.array_equal(reverse(data, cost=1), data[::-1])


def test_registry_metadata():
    k = load_kernel("reverse")
    assert k.releases_gil and k.halo({}) == 0
    assert set(DTYPES) <= set(k.dtypes)
    assert k.params["cost"].default == 2000 and k.params["cost"].type is int
    assert not load_kernel("reverse-py").releases_gil


def test_parse_params():
    k = load_kernel("reverse")
    assert k.parse_params({}) == {"cost": 2000}
    assert k.parse_params({"cost": "500"}) == {"cost": 500}
    with pytest.raises(
        KernelParameterError, match=r"no parameter 'cots'.*cost \(int, default 2000\)"
    ):
        k.parse_params({"cots": "1"})
    with pytest.raises(KernelParameterError, match="must be of type int, got 'abc'"):
        k.parse_params({"cost": "abc"})
    with pytest.raises(KernelParameterError, match="cost must be zero or more"):
        k.parse_params({"cost": "-1"})
    with pytest.raises(KernelParameterError, match="must be of type int"):
        k.parse_params({"cost": 2.5})


def test_unknown_kernel_lists_known_ones():
    with pytest.raises(
        KernelNotFoundError,
        match=r"unknown kernel 'nope'; known kernels: aspect, focal-max, .*, slope, terrain",
    ):
        load_kernel("nope")


def test_user_kernel_by_module_and_file(tmp_path):
    k = load_kernel("kernels_for_tests:wrong_shape")
    assert k.name == "wrong_shape" and not k.releases_gil
    path = tmp_path / "mykernels.py"
    path.write_text(
        "import mpraster\n"
        "@mpraster.kernel(releases_gil=True, dtype='float32', bands=1)\n"
        "def total(src, *, scale: float = 1.0):\n"
        "    '''Sum of bands.'''\n"
        "    return (src.sum(axis=0) * scale).astype('float32')\n"
    )
    k = load_kernel(f"{path}:total")
    assert k.releases_gil and k.output_bands([3], {}) == 1
    assert k.parse_params({"scale": "2"}) == {"scale": 2.0}
    assert k.doc == "Sum of bands."
    with pytest.raises(KernelNotFoundError, match="no function 'missing'"):
        load_kernel(f"{path}:missing")
    with pytest.raises(KernelNotFoundError, match="kernel file not found"):
        load_kernel(f"{tmp_path}/absent.py:f")
    with pytest.raises(KernelNotFoundError, match="cannot import module"):
        load_kernel("no_such_module_xyz:f")


def test_dtype_check_names_file():
    k = load_kernel("reverse")
    with pytest.raises(KernelDtypeError, match=r"does not take complex64 input \(a\.tif\)"):
        k.check_dtypes(["complex64"], ["a.tif"])


# ---------------------------------------------------------------- kernels as people write them


def scale(a, factor=2.0):
    """A plain function: ``factor`` is a parameter because it has a default."""
    return (a * factor).astype(a.dtype)


def test_positional_argument_with_a_default_is_a_parameter():
    k = as_kernel(scale)
    assert k.arrays == ("a",)
    assert list(k.params) == ["factor"] and k.params["factor"].type is float
    assert k.parse_params({"factor": "3"}) == {"factor": 3.0}
    assert k.parse_params({}) == {"factor": 2.0}


def test_parameter_types_come_from_the_annotation_or_the_default(tmp_path):
    path = tmp_path / "typed.py"
    path.write_text(
        "from __future__ import annotations\n"
        "def f(a, b, size: int = 3, scale: float = 1, on=True, label='x', *, ctx=None):\n"
        "    return a\n"
    )
    k = load_kernel(f"{path}:f")
    assert k.arrays == ("a", "b") and k.wants_context
    types = {name: p.type for name, p in k.params.items()}
    assert types == {"size": int, "scale": float, "on": bool, "label": str}
    assert k.parse_params({"size": "5", "scale": "2", "on": "no", "label": "y"}) == {
        "size": 5,
        "scale": 2.0,
        "on": False,
        "label": "y",
    }
    with pytest.raises(KernelParameterError, match=r"must be of type bool \(true or false\)"):
        k.parse_params({"on": "maybe"})


def test_a_positional_ctx_gets_the_context():
    def shift(src, ctx=None):
        return src + ctx.halo

    k = as_kernel(shift)
    assert k.wants_context and k.arrays == ("src",) and not k.params
    ctx = KernelContext(window=None, read=None, transform=None, nodata=(None,), halo=2)
    assert k.call([np.zeros((1, 2, 2))], {}, ctx).max() == 2


@pytest.mark.parametrize(
    "source,fragment",
    [
        (
            "def f(a, b=None):\n    return a\n",
            "parameter 'b' has the default None: a parameter is an int, float, bool or str "
            "with a default of that type (input arrays take no default)",
        ),
        (
            "import numpy as np\ndef f(a, b: np.ndarray = None):\n    return a\n",
            "parameter 'b' must be annotated int, float, bool or str, not ndarray "
            "(input arrays take no default)",
        ),
        ("def f(a, *, size: int):\n    return a\n", "parameter 'size' needs a default value"),
        ("def f(a, size=3, /):\n    return a\n", "parameter 'size' is positional-only"),
        ("def f(a, size=3, *rest):\n    return a\n", "'size' comes before *rest"),
        ("def f(ctx, a):\n    return a\n", "ctx comes before the input array 'a'"),
    ],
)
def test_kernel_definitions_that_cannot_work(tmp_path, source, fragment):
    path = tmp_path / "defs.py"
    path.write_text(source)
    with pytest.raises(KernelDefinitionError, match=re.escape(fragment)):
        load_kernel(f"{path}:f")


def test_function_without_a_signature_is_refused():
    with pytest.raises(KernelDefinitionError, match="cannot read its arguments"):
        as_kernel(min)  # a builtin with no signature Python can read


def test_unknown_parameter_hints():
    k = as_kernel(scale)
    with pytest.raises(
        KernelParameterError,
        match=r"no parameter 'factr' \(did you mean 'factor'\?\); its parameters: factor "
        r"\(float, default 2.0\)",
    ):
        k.parse_params({"factr": "3"})
    with pytest.raises(KernelParameterError, match=r"'a' is an input array .*give it a default"):
        k.parse_params({"a": "3"})
    with pytest.raises(KernelParameterError, match="did you mean 'z_factor'"):
        load_kernel("hillshade").parse_params({"z-factr": "2"})


def test_number_of_inputs_checked_against_the_arrays():
    k = as_kernel(scale)
    k.check_inputs([3], ["a.tif"])
    with pytest.raises(KernelInputError, match=r"takes 1 input \(a\); given 2: a.tif, b.tif"):
        k.check_inputs([3, 1], ["a.tif", "b.tif"])
    load_kernel("ndvi").check_inputs([1, 1], ["a.tif", "b.tif"])  # *arrays: any number


@pytest.mark.parametrize(
    "given,name",
    [
        ("focal_mean", "focal-mean"),
        ("reverse_py", "reverse-py"),
        ("normalized_difference", "normalized-difference"),
        ("focal-mean", "focal-mean"),
    ],
)
def test_underscore_and_hyphen_are_the_same_in_kernel_names(given, name):
    assert load_kernel(given).name == name


@pytest.mark.parametrize(
    "given,suggested",
    [
        ("revers", "(did you mean 'reverse' or 'reverse-py'?)"),
        ("hilshade", "(did you mean 'hillshade'?)"),
        ("focal_mea", "(did you mean 'focal-mean', 'focal-max' or 'focal-min'?)"),
        ("mean", "(did you mean 'focal-mean'?)"),
    ],
)
def test_unknown_kernel_names_the_closest(given, suggested):
    with pytest.raises(KernelNotFoundError, match=re.escape(f"'{given}' {suggested}")):
        load_kernel(given)


def test_plugin_names_match_with_underscore_or_hyphen(monkeypatch):
    plugins = {
        "my_filter": EntryPoint("my_filter", "kernels_for_tests:wrong_shape", "mpraster.kernels"),
        "broken-one": EntryPoint("broken-one", "no_such_module_xyz:f", "mpraster.kernels"),
        # A plugin spelled like a built-in but for _ and -: its exact name still finds it.
        "focal_mean": EntryPoint("focal_mean", "kernels_for_tests:hang", "mpraster.kernels"),
    }
    monkeypatch.setattr("mpraster.kernels.plugin_kernels", lambda: plugins)
    found = load_kernel("my-filter")
    assert found.ref == "my_filter"  # how workers find it again
    assert load_kernel("focal_mean").func.__name__ == "hang"
    assert load_kernel("focal-mean").name == "focal-mean"
    with pytest.raises(KernelNotFoundError, match="did you mean 'my_filter'"):
        load_kernel("my_filtr")
    with pytest.raises(KernelNotFoundError, match=r"kernel 'broken-one' .* cannot be loaded"):
        load_kernel("broken_one")


def test_module_import_failures_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "buggy_kernels.py").write_text("raise NameError('oops')\n")
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(KernelNotFoundError, match=r"importing module 'buggy_kernels' .*NameError"):
        load_kernel("buggy_kernels:f")
    with pytest.raises(KernelNotFoundError, match=r"no function 'wrong_shap' .*'wrong_shape'"):
        load_kernel("kernels_for_tests:wrong_shap")


@pytest.mark.parametrize(
    "declared,fragment",
    [
        ({"dtype": "flaot32"}, "it declares dtype='flaot32', which is not a data type"),
        ({"dtype": lambda d, p: "nope"}, "its dtype rule gives 'nope', which is not a data type"),
        ({"bands": 0}, "it declares bands=0, not a whole number of at least 1"),
        ({"bands": lambda c, p: 1.5}, "its bands rule gives 1.5, not a whole number"),
        ({"halo": -1}, "it declares halo=-1, not a whole number of at least 0"),
    ],
)
def test_bad_declarations_are_definition_errors(declared, fragment):
    k = as_kernel(mpraster.kernel(**declared)(scale))
    with pytest.raises(KernelDefinitionError, match=re.escape(fragment)):
        k.halo({})
        k.output_dtype(["uint8"], {})
        k.output_bands([3], {})


def test_dtype_hint_names_a_type_the_kernel_takes():
    k = as_kernel(mpraster.kernel(dtypes=["uint8", "uint16"])(scale))
    with pytest.raises(KernelDtypeError, match="rio convert --dtype uint8"):
        k.check_dtypes(["float64"], ["a.tif"])


# ---------------------------------------------------------------- what a kernel returns


def _task(halo=0):
    window = Window(0, 0, 16, 16)
    read = Window(-halo, -halo, 16 + 2 * halo, 16 + 2 * halo)
    return WindowTask(0, window, read, window)


def _apply(func, out_dtype="uint8", bands=3, halo=0):
    """The kernel's checked and cropped result on one window (its validity left aside)."""
    ctx = KernelContext(window=None, read=None, transform=None, nodata=(None,), halo=halo)
    size = 16 + 2 * halo
    arrays = [np.zeros((3, size, size), dtype="uint8")]
    task = _task(halo)
    out, _ = apply_kernel(as_kernel(func), {}, task, arrays, np.dtype(out_dtype), bands, ctx)
    return out


@mpraster.kernel(dtype="float32", bands=1)
def declares_float32(src):
    return src[:1].astype("float64")


@mpraster.kernel(bands=1)
def declares_one_band(src):
    return src


@mpraster.kernel(dtype=lambda dtypes, params: "int16")
def dtype_rule(src):
    return src


def plain_float64(src):
    return src.astype("float64")


def no_return(src):
    pass


@pytest.mark.parametrize(
    "func,out_dtype,bands,fragments,absent",
    [
        (
            declares_float32,
            "float32",
            1,
            ["returned float64 (1, 16, 16)", "it declares dtype='float32', so return float32"],
            "unless the kernel declares",
        ),
        (
            declares_one_band,
            "uint8",
            1,
            ["returned uint8 (3, 16, 16)", "it declares bands=1, so return 1 band"],
            "unless the kernel declares",
        ),
        (
            dtype_rule,
            "int16",
            3,
            ["its dtype rule gives 'int16' for these inputs, so return int16"],
            "unless the kernel declares",
        ),
        (
            plain_float64,
            "uint8",
            3,
            ["expected uint8", "declare @mpraster.kernel(dtype='float64'), or return uint8"],
            "it declares",
        ),
        (no_return, "uint8", 3, ["returned None (does it return its result?)"], "unless"),
    ],
)
def test_a_wrong_result_is_told_what_it_declared(func, out_dtype, bands, fragments, absent):
    with pytest.raises(WindowFailed) as caught:
        _apply(func, out_dtype, bands)
    message = str(caught.value)
    assert "on window 0" in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert absent not in message


def test_a_wrong_size_names_both_sizes_a_kernel_may_return():
    with pytest.raises(WindowFailed, match=re.escape("rows and cols (18, 18) (the read window")):
        _apply(lambda src: src[:, 1:], halo=1)
    assert _apply(lambda src: src[:, 1:-1, 1:-1], halo=1).shape == (3, 16, 16)
    assert _apply(lambda src: src, halo=1).shape == (3, 16, 16)  # cropped for it
