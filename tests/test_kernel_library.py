"""The built-in kernels against NumPy references computed on the whole raster, edges
included, in every mode; multiple inputs, band selection, halos, nodata, user kernels."""

import sys

import numpy as np
import pytest
import rasterio
from helpers import DTYPES, MATRIX, SHARED_DATA, digest, run_cli, run_command, synthetic
from rasterio.transform import from_origin

import mpraster
from mpraster import builtin_kernels
from mpraster.errors import InputMismatchError, KernelInputError, KernelParameterError
from mpraster.kernels import KernelContext
from mpraster.sample import write_raster


def read(path, band=None):
    with rasterio.open(path) as ds:
        return (ds.read(band) if band else ds.read()), ds.profile


def dem_array(rows=45, cols=37, seed=3):
    """A smooth synthetic DEM (metres) with a few nodata holes."""
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    rng = np.random.default_rng(seed)
    z = 300 + 40 * np.sin(r / 7.0) * np.cos(c / 5.0) + 2.0 * r + rng.normal(0, 0.5, (rows, cols))
    z = z.astype(np.float32)
    z[10, 12] = z[30, 3] = z[0, 0] = -9999.0
    return z


@pytest.fixture
def dem(tmp_path):
    """dem_array with pixels 30 m wide and 25 m high (slope and hillshade see the two)."""
    transform = from_origin(500000.0, 4200000.0, 30.0, 25.0)
    return write_raster(
        tmp_path / "dem.tif", dem_array()[np.newaxis], nodata=-9999.0, transform=transform
    )


# ---------------------------------------------------------------- references


def missing(a, nodata):
    return np.isnan(a) | ((a == nodata) if nodata is not None else False)


def focal_reference(band, size, nodata, op):
    half = size // 2
    padded = np.pad(band.astype(np.float64), half, mode="edge")
    valid_pad = ~missing(padded, nodata)
    rows, cols = band.shape
    total = np.zeros((rows, cols))
    count = np.zeros((rows, cols), dtype=np.int64)
    best = None
    for di in range(size):
        for dj in range(size):
            v = padded[di : di + rows, dj : dj + cols]
            ok = valid_pad[di : di + rows, dj : dj + cols]
            total = total + np.where(ok, v, 0.0)
            count += ok
            if op != "mean":
                cand = np.where(ok, v, np.nan)
                best = cand if best is None else (np.fmax if op == "max" else np.fmin)(best, cand)
    centre_missing = missing(band.astype(np.float64), nodata)
    if op == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / count
        return np.where(centre_missing, np.nan if nodata is None else nodata, out)
    return np.where(centre_missing, nodata if nodata is not None else 0, best)


def horn(band, transform, z, nodata):
    """Horn's gradients (gdaldem's formula) with edge-replicated neighbours."""
    p = np.pad(band.astype(np.float64), 1, mode="edge")
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, e, f = p[1:-1, :-2], p[1:-1, 1:-1], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    x = ((a + d + d + g) - (c + f + f + i)) * (z / (8.0 * transform.a))
    y = ((g + h + h + i) - (a + b + b + c)) * (z / (8.0 * transform.e))
    bad = np.zeros(band.shape, bool)
    for n in (a, b, c, d, e, f, g, h, i):
        bad |= missing(n, nodata)
    return x, y, bad


# ---------------------------------------------------------------- halo kernels, every mode


@pytest.mark.parametrize("mode,io,jobs", MATRIX)
def test_focal_mean_every_mode_matches_whole_raster_reference(tmp_path, dem, mode, io, jobs):
    out = tmp_path / "o.tif"
    mpraster.run(
        dem, out, "focal-mean", mode=mode, io=io, jobs=jobs, params={"size": "5"}, block_size=16
    )
    got, profile = read(out, 1)
    band, _ = read(dem, 1)
    expected = focal_reference(band, 5, -9999.0, "mean").astype(np.float32)
    assert profile["dtype"] == "float32" and profile["nodata"] == -9999.0
    assert np.array_equal(got, expected)
    reference = tmp_path / "ref.tif"
    if not reference.exists():
        mpraster.run(
            dem, reference, "focal-mean", mode="threads", jobs=1, params={"size": 5}, block_size=16
        )
    assert digest(out) == digest(reference)


@pytest.mark.parametrize("op", ["max", "min", "mean"])
@pytest.mark.parametrize("size", [3, 31])
def test_focal_sizes_larger_than_the_window(tmp_path, op, size):
    """size 31 has a halo of 15 around 16-pixel windows: most of the neighbourhood is read
    from other windows, and at the corners past the raster's edge."""
    data = (np.arange(40 * 33, dtype=np.int16).reshape(1, 40, 33) * 7) % 251
    data[0, 5, 5] = -1
    src = write_raster(tmp_path / "i.tif", data.astype(np.int16), nodata=-1)
    out = tmp_path / "o.tif"
    mpraster.run(src, out, f"focal-{op}", jobs=2, params={"size": size}, block_size=16)
    got, profile = read(out, 1)
    expected = focal_reference(data[0], size, -1, op)
    if op == "mean":
        assert profile["dtype"] == "float32"
        expected = expected.astype(np.float32)
    else:
        assert profile["dtype"] == "int16" and profile["nodata"] == -1
        expected = expected.astype(np.int16)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("size", ["4", "1", "33"])
def test_focal_size_checked_before_work(tmp_path, dem, size):
    with pytest.raises(KernelParameterError, match="size must be odd, from 3 to 31"):
        mpraster.run(dem, tmp_path / "o.tif", "focal-mean", params={"size": size})


@pytest.mark.parametrize("mode,io", [("threads", "main"), ("processes", "workers")])
def test_slope_matches_horn(tmp_path, dem, mode, io):
    out = tmp_path / "o.tif"
    mpraster.run(
        dem, out, "slope", mode=mode, io=io, jobs=2, params={"z-factor": "1.5"}, block_size=16
    )
    got, profile = read(out, 1)
    band, src_profile = read(dem, 1)
    x, y, bad = horn(band, src_profile["transform"], 1.5, -9999.0)
    expected = np.degrees(np.arctan(np.sqrt(x * x + y * y))).astype(np.float32)
    expected[bad] = -9999.0
    assert profile["nodata"] == -9999.0 and profile["dtype"] == "float32"
    assert np.array_equal(got == -9999.0, bad)
    np.testing.assert_allclose(got[~bad], expected[~bad], rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("azimuth,altitude", [(315.0, 45.0), (90.0, 20.0)])
def test_hillshade_matches_gdaldem_formula(tmp_path, dem, azimuth, altitude):
    out = tmp_path / "o.tif"
    mpraster.run(
        dem,
        out,
        "hillshade",
        jobs=2,
        block_size=16,
        params={"azimuth": azimuth, "altitude": altitude, "z_factor": 2.0},
    )
    got, profile = read(out, 1)
    band, src_profile = read(dem, 1)
    x, y, bad = horn(band, src_profile["transform"], 2.0, -9999.0)
    az, alt = np.radians(azimuth), np.radians(altitude)
    cang = (np.sin(alt) - np.cos(alt) * (y * np.cos(az) - x * np.sin(az))) / np.sqrt(
        1 + x * x + y * y
    )
    shade = np.where(cang <= 0, 1.0, 1.0 + 254.0 * cang)
    expected = np.rint(shade.astype(np.float32)).astype(np.uint8)
    expected[bad] = 0
    assert profile["dtype"] == "uint8" and profile["nodata"] == 0
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # float rounding at .5 only
    assert np.array_equal(got == 0, bad)


def test_terrain_needs_one_band(tmp_path, make_raster):
    src = make_raster((2, 20, 20), "float32")
    with pytest.raises(KernelInputError, match=r"takes one DEM band.*given .* \(2 bands\)"):
        mpraster.run(src, tmp_path / "o.tif", "slope")
    mpraster.run(f"{src}:2", tmp_path / "o.tif", "slope", block_size=16)


# ---------------------------------------------------------------- pixelwise


def ndvi_reference(a, b, nodata_a, nodata_b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    bad = missing(a, nodata_a) | missing(b, nodata_b) | (a + b == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((a - b) / (a + b)).astype(np.float32)
    out[bad] = np.nan
    return out


def test_ndvi_two_inputs_and_band_selection_agree(tmp_path):
    rng = np.random.default_rng(1)
    nir = rng.integers(0, 3000, (1, 50, 41), dtype=np.uint16)
    red = rng.integers(0, 3000, (1, 50, 41), dtype=np.uint16)
    nir[0, 3, 4] = red[0, 3, 4] = 0  # a + b == 0
    nir[0, 7, 7] = 65535  # nodata
    a = write_raster(tmp_path / "nir.tif", nir, nodata=65535)
    b = write_raster(tmp_path / "red.tif", red, nodata=65535)
    stack = write_raster(tmp_path / "stack.tif", np.concatenate([red, nir, red]), nodata=65535)
    expected = ndvi_reference(nir[0], red[0], 65535, 65535)
    outs = {
        "two inputs": ([a, b], {}),
        "PATH:BANDS": ([f"{stack}:2,1"], {}),
        "--bidx": ([stack], {"bidx": "2,1"}),
    }
    digests = set()
    for name, (inputs, extra) in outs.items():
        out = tmp_path / f"{name.replace(' ', '_').replace(':', '')}.tif"
        mpraster.run(inputs, out, "ndvi", jobs=2, block_size=16, **extra)
        got, profile = read(out, 1)
        assert profile["dtype"] == "float32" and np.isnan(profile["nodata"]), name
        assert np.array_equal(got, expected, equal_nan=True), name
        digests.add(digest(out))
    assert len(digests) == 1


def test_ndvi_refuses_three_bands_before_work(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((3, 20, 20), "uint8")
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "ndvi")
    assert proc.returncode == 14
    assert (
        "kernel 'normalized-difference' takes two bands" in proc.stderr
        and "(3 bands)" in proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1


def test_mismatched_grids_name_the_difference(tmp_path, make_raster, mpraster_cmd, cli_env):
    a = make_raster((1, 20, 20), "uint8")
    b = make_raster((1, 20, 21), "uint8")
    with pytest.raises(InputMismatchError, match="size 20x21 != 20x20"):
        mpraster.run([a, b], tmp_path / "o.tif", "ndvi")
    proc = run_cli(mpraster_cmd, cli_env, a, b, tmp_path / "o.tif", "-k", "ndvi")
    assert proc.returncode == 13 and "do not share a grid: size 20x21 != 20x20" in proc.stderr


def test_band_out_of_range(tmp_path, make_raster):
    src = make_raster((2, 20, 20), "uint8")
    with pytest.raises(mpraster.MprasterError, match="has 2 bands, no band 3"):
        mpraster.run(f"{src}:3", tmp_path / "o.tif", "reverse")


@pytest.mark.parametrize(
    "dtype,scale,offset", [("uint8", 0.1, -5.0), ("float32", 1e-4, 0.0), ("int16", -3.0, 7.0)]
)
def test_rescale_clips_to_the_target_type(tmp_path, dtype, scale, offset, mpraster_cmd, cli_env):
    data = np.linspace(-2000, 60000, 30 * 20).reshape(1, 30, 20).astype(np.float64)
    data[0, 0, 0] = -9999.0
    src = write_raster(tmp_path / "i.tif", data, nodata=-9999.0)
    out = tmp_path / "o.tif"
    args = [src, out, "-k", "rescale", "-p", f"scale={scale}", "-p", f"offset={offset}"]
    proc = run_cli(mpraster_cmd, cli_env, *args, "--dtype", dtype, "--block-size", "16", "-q")
    assert proc.returncode == 0, proc.stderr
    got, profile = read(out, 1)
    target = np.dtype(dtype)
    values = data[0] * scale + offset
    if target.kind in "iu":
        info = np.iinfo(target)
        expected = np.clip(np.rint(values), info.min, info.max).astype(target)
        nodata = info.min  # -9999 does not fit uint8; int16 holds it
        nodata = -9999 if dtype == "int16" else info.min
    else:
        expected = values.astype(target)
        nodata = -9999.0
    expected[0, 0] = nodata
    assert profile["dtype"] == dtype and profile["nodata"] == nodata
    assert np.array_equal(got, expected)


def test_dtype_option_is_for_kernels_with_a_dtype(tmp_path, make_raster):
    with pytest.raises(mpraster.MprasterError, match="--dtype is for kernels with a dtype"):
        mpraster.run(make_raster(), tmp_path / "o.tif", "reverse", dtype="float32")


def test_nodata_option_sets_the_output_nodata(tmp_path, make_raster):
    out = tmp_path / "o.tif"
    mpraster.run(make_raster((1, 20, 20), "uint8"), out, "reverse", nodata=255, params={"cost": 0})
    assert read(out)[1]["nodata"] == 255
    with pytest.raises(mpraster.MprasterError, match="does not fit the output type uint8"):
        mpraster.run(make_raster((1, 20, 20), "uint8"), tmp_path / "p.tif", "reverse", nodata=-1)


# ---------------------------------------------------------------- user kernels


USER_KERNELS = '''
import numpy as np
import mpraster


@mpraster.kernel(halo=1, fill="nodata", releases_gil=True)
def raw_read(src, *, ctx):
    """Return the read window as is: shows what the halo holds past the edge."""
    return src.copy()


@mpraster.kernel(halo=2, dtype="float64", bands=1)
def pixel_size(src, *, scale: float = 1.0, ctx):
    """Pixel width from the window's transform, where the centre is not nodata."""
    nodata = ctx.nodata[0]
    out = np.full(src.shape[1:], ctx.transform.a * scale)
    out[src[0] == nodata] = -1.0
    return out


@mpraster.kernel()
def wrong_dtype(src):
    return src.astype("float64")
'''


@pytest.fixture
def user_kernels(tmp_path):
    path = tmp_path / "user_kernels.py"
    path.write_text(USER_KERNELS)
    return path


def test_user_kernel_halo_nodata_fill(tmp_path, user_kernels):
    data = np.arange(1, 20 * 18 + 1, dtype=np.int32).reshape(1, 20, 18)
    src = write_raster(tmp_path / "i.tif", data, nodata=-5)
    out = tmp_path / "o.tif"
    mpraster.run(src, out, f"{user_kernels}:raw_read", mode="processes", jobs=2, block_size=16)
    assert np.array_equal(read(out)[0], data)  # cropped back: the fill never shows


def test_user_kernel_gets_context_and_typed_params(tmp_path, user_kernels, mpraster_cmd, cli_env):
    data = np.ones((1, 20, 18), dtype=np.uint8)
    data[0, 2, 3] = 0
    src = write_raster(tmp_path / "i.tif", data, nodata=0)
    out = tmp_path / "o.tif"
    kernel = f"{user_kernels}:pixel_size"
    args = [src, out, "-k", kernel, "-p", "scale=2", "--block-size", "16", "-q", "--mode", "auto"]
    proc = run_cli(mpraster_cmd, cli_env, *args)
    assert proc.returncode == 0, proc.stderr
    got = read(out, 1)[0]
    expected = np.full((20, 18), 60.0)
    expected[2, 3] = -1.0
    assert np.array_equal(got, expected)
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "p.tif", "-k", kernel, "-p", "scale=big")
    assert (
        proc.returncode == 7
        and "parameter 'scale' of kernel 'pixel_size' must be of type float" in proc.stderr
    )


def test_user_kernel_wrong_dtype_names_the_window(tmp_path, user_kernels, make_raster):
    with pytest.raises(
        mpraster.MprasterError, match=r"returned float64 \(3, 16, 16\) on window 0 .*expected uint8"
    ):
        mpraster.run(
            make_raster(), tmp_path / "o.tif", f"{user_kernels}:wrong_dtype", jobs=1, block_size=16
        )


PLAIN_KERNELS = """
import mpraster


def scale(a, factor=2.0):
    return a * factor


@mpraster.kernel(dtype="float32")
def declared(a):
    return a.astype("float64")
"""


@pytest.fixture
def plain_kernels(tmp_path):
    path = tmp_path / "plain_kernels.py"
    path.write_text(PLAIN_KERNELS)
    return path


def test_plain_function_with_a_positional_parameter(tmp_path, plain_kernels, mpraster_cmd, cli_env):
    """`def scale(a, factor=2.0)` as people write it: -p factor=3 sets it, in the workers
    too (a plain function holds the GIL: --mode auto runs it in processes)."""
    data = np.arange(2 * 20 * 18, dtype=np.float32).reshape(2, 20, 18)
    src = write_raster(tmp_path / "i.tif", data)
    out = tmp_path / "o.tif"
    proc = run_cli(mpraster_cmd, cli_env, src, out, "-k", f"{plain_kernels}:scale", "-p",
                   "factor=3", "--block-size", "16", "-j", "2", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read(out)[0], data * np.float32(3))
    mpraster.run(
        src, tmp_path / "lib.tif", f"{plain_kernels}:scale", params={"factor": 0.5}, jobs=1,
        mode="threads",
    )  # fmt: skip
    assert np.array_equal(read(tmp_path / "lib.tif")[0], data * np.float32(0.5))


def test_declared_dtype_error_says_what_was_declared(
    tmp_path, plain_kernels, make_raster, mpraster_cmd, cli_env
):
    kernel = f"{plain_kernels}:declared"
    proc = run_cli(mpraster_cmd, cli_env, make_raster(), tmp_path / "o.tif", "-k", kernel,
                   "--block-size", "16", "--mode", "threads")  # fmt: skip
    assert proc.returncode == 11, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert "kernel 'declared' returned float64 (3, 16, 16) on window 0" in error
    assert "it declares dtype='float32', so return float32" in error
    # Not the hint for a kernel that declared nothing.
    assert "unless the kernel declares" not in error and "Traceback" not in proc.stderr


def test_kernel_names_with_underscores_from_the_library(tmp_path, make_raster):
    src = make_raster((1, 20, 20), "float32")
    mpraster.run(src, tmp_path / "a.tif", "focal_mean", jobs=1, params={"size": 3})
    mpraster.run(src, tmp_path / "b.tif", "focal-mean", jobs=1, params={"size": 3})
    assert read(tmp_path / "a.tif")[0].tobytes() == read(tmp_path / "b.tif")[0].tobytes()
    with pytest.raises(mpraster.MprasterError, match=r"'hilshade' \(did you mean 'hillshade'\?\)"):
        mpraster.run(src, tmp_path / "c.tif", "hilshade")


def test_plugin_kernel_from_an_entry_point(tmp_path, mpraster_cmd, cli_env, make_raster):
    """A package registering a kernel under the mpraster.kernels entry-point group."""
    site = tmp_path / "site"
    (site / "mpr_plugin").mkdir(parents=True)
    (site / "mpr_plugin" / "__init__.py").write_text(
        "import mpraster\n\n@mpraster.kernel(releases_gil=True)\n"
        "def double(src):\n    '''Twice the input.'''\n    return src * 2\n"
    )
    info = site / "mpr_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mpr-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mpraster.kernels]\ndouble = mpr_plugin:double\n")
    env = dict(cli_env, PYTHONPATH=f"{site}:{cli_env['PYTHONPATH']}")
    listing = run_command([*mpraster_cmd, "kernels"], env=env)
    assert "double: one raster; halo 0; releases the GIL; no parameters [plugin]" in listing.stdout
    src = make_raster((1, 20, 20), "uint8")
    out = tmp_path / "o.tif"
    proc = run_cli(mpraster_cmd, env, src, out, "-k", "double", "-q")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read(out)[0], read(src)[0] * 2)


# ---------------------------------------------------------------- real rasters


def test_real_rasters(tmp_path):
    if not SHARED_DATA.exists():
        pytest.skip(f"real rasters not present ({SHARED_DATA}); generated rasters cover this")
    rgb = SHARED_DATA / "RGB.byte.tif"
    out = tmp_path / "ndvi.tif"
    mpraster.run(f"{rgb}:3,1", out, "ndvi", jobs=2, block_size=256)
    data, _ = read(rgb)
    assert np.array_equal(read(out, 1)[0], ndvi_reference(data[2], data[0], 0, 0), equal_nan=True)
    floats = SHARED_DATA / "float_raster_with_nodata.tif"
    band, profile = read(floats, 1)
    out = tmp_path / "mean.tif"
    mpraster.run(floats, out, "focal-mean", jobs=2, params={"size": 3}, block_size=16)
    expected = focal_reference(band, 3, profile["nodata"], "mean").astype(np.float32)
    assert np.array_equal(read(out, 1)[0], expected, equal_nan=True)
    nan = SHARED_DATA / "float_nan.tif"
    out = tmp_path / "nan.tif"
    mpraster.run(nan, out, "focal-max", jobs=1, params={"size": 3}, block_size=16)
    band, profile = read(nan, 1)
    assert np.array_equal(
        read(out, 1)[0],
        focal_reference(band, 3, profile["nodata"], "max").astype(np.float32),
        equal_nan=True,
    )


@pytest.mark.parametrize("dtype", [*DTYPES, "int8", "int64", "uint64"])
@pytest.mark.parametrize("op", ["max", "min"])
def test_focal_extremes_exact_in_every_dtype(dtype, op):
    """Extremes of the type, nodata, NaN and -inf stay exact: missing pixels never win, and
    a valid pixel equal to the type's lowest (highest) value still counts."""
    data = synthetic((2, 19, 23), dtype, seed=3)
    nodata = data[0, 7, 7].item()
    data[1, 2, 2] = nodata
    if data.dtype.kind == "f":
        data[0, 10, 4] = np.nan
        data[1, 5, 9] = -np.inf
    half = 2
    grown = np.pad(data, ((0, 0), (half, half), (half, half)), mode="edge")
    ctx = KernelContext(None, None, from_origin(0, 0, 1, 1), (nodata,), half)
    kernel = builtin_kernels.focal_max if op == "max" else builtin_kernels.focal_min
    got = kernel(grown, size=5, ctx=ctx)
    pick = np.fmax if op == "max" else np.fmin
    for b in range(data.shape[0]):
        for i in range(data.shape[1]):
            for j in range(data.shape[2]):
                centre = data[b, i, j]
                if centre == nodata or np.isnan(float(centre)):
                    assert got[b, i, j] == nodata
                    continue
                hood = grown[b, i : i + 5, j : j + 5].ravel()
                valid = hood[(hood != nodata) & ~np.isnan(hood.astype(np.float64))]
                assert got[b, i, j] == pick.reduce(valid), (b, i, j)


def test_library_takes_the_function_itself(tmp_path, cli_env):
    """mpraster.run(..., brighten) from a script: threads use the function as it is,
    process workers import it from the script, which they re-run as their main module."""
    src = write_raster(tmp_path / "in.tif", synthetic((2, 40, 30), "uint8"))
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "import mpraster\n\n"
        "@mpraster.kernel(releases_gil=False)\n"
        "def brighten(src, *, by: int = 10):\n"
        "    return (src.astype('int32') + by).clip(0, 255).astype(src.dtype)\n\n"
        "if __name__ == '__main__':\n"
        "    for mode in ('threads', 'processes', 'auto'):\n"
        "        stats = mpraster.run(sys.argv[1], f'{sys.argv[2]}-{mode}.tif', brighten,\n"
        "                             mode=mode, jobs=2, block_size=16, params={'by': 5})\n"
        "        print(mode, stats.mode, stats.io)\n"
    )
    proc = run_command([sys.executable, script], src, tmp_path / "o", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "auto processes workers"
    with rasterio.open(src) as ds:
        expected = (ds.read().astype(np.int32) + 5).clip(0, 255).astype(np.uint8)
    outputs = [
        (tmp_path / f"o-{mode}.tif").read_bytes() for mode in ("threads", "processes", "auto")
    ]
    assert outputs[0] == outputs[1] == outputs[2]
    with rasterio.open(tmp_path / "o-threads.tif") as ds:
        assert np.array_equal(ds.read(), expected)


def test_closure_kernel_runs_in_threads_and_is_refused_for_processes(tmp_path):
    src = write_raster(tmp_path / "in.tif", synthetic((1, 20, 20), "int16"))
    offset = 3

    def shifted(band):
        return band + np.int16(offset)

    stats = mpraster.run(src, tmp_path / "t.tif", shifted, mode="threads", block_size=16)
    assert stats.windows == 4
    with rasterio.open(src) as a, rasterio.open(tmp_path / "t.tif") as b:
        assert np.array_equal(b.read(), a.read() + np.int16(3))
    with pytest.raises(mpraster.MprasterError, match="defined inside a function"):
        mpraster.run(src, tmp_path / "p.tif", shifted, mode="processes")
    assert not (tmp_path / "p.tif").exists()


def test_kernel_of_an_interactive_session_is_refused_for_processes(tmp_path, cli_env):
    src = write_raster(tmp_path / "in.tif", synthetic((1, 20, 20), "uint8"))
    code = (
        "import mpraster\n"
        "def f(src):\n"
        "    return src.copy()\n"
        f"mpraster.run({str(src)!r}, {str(tmp_path / 'o.tif')!r}, f, mode='processes')\n"
    )
    proc = run_command([sys.executable, "-c", code], env=cli_env)
    assert proc.returncode != 0
    assert (
        "(__main__:f) is a lambda, defined inside a function or in an interactive session"
        in (proc.stderr.strip().splitlines()[-1])
    )
