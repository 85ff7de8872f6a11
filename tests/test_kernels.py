import numpy as np
import pytest
from helpers import DTYPES, synthetic

from mpraster.builtin_kernels import reverse, reverse_py
from mpraster.errors import KernelDtypeError, KernelNotFoundError, KernelParameterError
from mpraster.kernels import load_kernel


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
        match=r"unknown kernel 'nope'; known kernels: focal-max, .*, reverse, reverse-py, slope",
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
