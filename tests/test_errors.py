"""Bad input: one line naming the problem and the fix, a distinct exit code, no traceback,
no hang, and nothing left behind (the target untouched, no partial file)."""

import os
import sys

import numpy as np
import pytest
from helpers import assert_one_line_error, row_coded, run_cli, run_command

import mpraster
from mpraster import errors
from mpraster.sample import write_raster

EXIT_CODES = {
    cls.exit_code
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.MprasterError)
    and cls is not errors.MprasterError
    and isinstance(cls.exit_code, int)
}


def test_exit_codes_are_distinct():
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.MprasterError) and "exit_code" in vars(c)
    ]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)) and 0 not in codes


def leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial"))


@pytest.fixture
def src(make_raster):
    return make_raster((3, 40, 40), "uint8")


def test_missing_input(tmp_path, mpraster_cmd, cli_env):
    proc = run_cli(
        mpraster_cmd, cli_env, tmp_path / "nope.tif", tmp_path / "o.tif", "-k", "reverse"
    )
    assert_one_line_error(proc, 3, "input not found", "nope.tif")
    assert not (tmp_path / "o.tif").exists()


def test_not_a_raster(tmp_path, mpraster_cmd, cli_env):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a raster\n")
    proc = run_cli(mpraster_cmd, cli_env, bad, tmp_path / "o.tif", "-k", "reverse")
    assert_one_line_error(proc, 4, "cannot open", "notes.tif", "as a raster")


def truncate_copy(source, dest, keep):
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    return dest


@pytest.mark.parametrize("mode,io", [("threads", "main"), ("processes", "workers")])
def test_truncated_geotiff_generated(tmp_path, mpraster_cmd, cli_env, make_raster, mode, io):
    full = make_raster((3, 64, 64), "uint8", name="full.tif")
    cut = truncate_copy(full, tmp_path / "cut.tif", 0.6)
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        cut,
        tmp_path / "o.tif",
        "-k",
        "reverse",
        "--mode",
        mode,
        "--io",
        io,
        "-j",
        "2",
        "--block-size",
        "16",
        "-p",
        "cost=0",
    )
    assert_one_line_error(proc, 5, "reading", "cut.tif", "failed at window", "truncated or corrupt")
    assert not (tmp_path / "o.tif").exists() and not leftovers(tmp_path)


def test_truncated_real_geotiff(tmp_path, mpraster_cmd, cli_env, rgb_byte):
    cut = truncate_copy(rgb_byte, tmp_path / "RGB.cut.tif", 0.5)
    proc = run_cli(mpraster_cmd, cli_env, cut, tmp_path / "o.tif", "-k", "reverse", "-p", "cost=0")
    assert_one_line_error(proc, 5, "RGB.cut.tif", "truncated or corrupt")
    assert not leftovers(tmp_path)


def test_unknown_kernel(tmp_path, src, mpraster_cmd, cli_env):
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "revers")
    assert_one_line_error(
        proc,
        6,
        "unknown kernel 'revers' (did you mean 'reverse' or 'reverse-py'?)",
        "known kernels: aspect, focal-max, focal-mean",
    )


def test_kernel_name_with_underscores(tmp_path, src, mpraster_cmd, cli_env):
    proc = run_cli(
        mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "focal_mean", "-p", "size=5",
        "--dry-run",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "kernel: focal-mean (size=5); halo 2" in proc.stdout


@pytest.mark.parametrize(
    "param,fragment",
    [
        ("cots=5", "no parameter 'cots'"),
        ("cost=lots", "must be of type int"),
        ("cost=-3", "zero or more"),
    ],
)
def test_bad_kernel_parameter(tmp_path, src, mpraster_cmd, cli_env, param, fragment):
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "reverse", "-p", param)
    assert_one_line_error(proc, 7, fragment)


def test_dtype_the_kernel_does_not_take(tmp_path, mpraster_cmd, cli_env):
    data = (np.arange(64, dtype="complex64") * (1 + 1j)).reshape(1, 8, 8)
    cplx = write_raster(tmp_path / "c.tif", data)
    proc = run_cli(mpraster_cmd, cli_env, cplx, tmp_path / "o.tif", "-k", "reverse")
    assert_one_line_error(proc, 8, "does not take complex64", "c.tif")


def test_existing_output_untouched(tmp_path, src, mpraster_cmd, cli_env):
    out = tmp_path / "o.tif"
    out.write_bytes(b"precious")
    proc = run_cli(mpraster_cmd, cli_env, src, out, "-k", "reverse", "-p", "cost=0")
    assert_one_line_error(proc, 9, "output exists", "--overwrite")
    assert out.read_bytes() == b"precious"


def test_output_folder_missing(tmp_path, src, mpraster_cmd, cli_env):
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "no" / "o.tif", "-k", "reverse")
    assert_one_line_error(proc, 10, "output folder does not exist", "create it first")


def test_output_folder_not_writable(tmp_path, src, mpraster_cmd, cli_env):
    # /proc refuses new files even to root, for whom chmod would not stop a write.
    proc = run_cli(mpraster_cmd, cli_env, src, "/proc/mpraster-test.tif", "-k", "reverse")
    assert_one_line_error(proc, 10, "cannot create", "writable")


def test_output_folder_chmod_not_writable(tmp_path, src, mpraster_cmd, cli_env):
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod; the /proc test covers this as root")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    proc = run_cli(mpraster_cmd, cli_env, src, folder / "o.tif", "-k", "reverse")
    assert_one_line_error(proc, 10, "cannot create")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["-j", "0"], "-j/--jobs must be a whole number of at least 1, got 0"),
        (["--block-size", "100"], "multiple of 16"),
        (["--block-size", "8"], "multiple of 16"),
        (["--prefetch", "0"], "--prefetch"),
        (["--co", "BLOCKXSIZE=64"], "use --block-size"),
        # mpraster's own words on every GDAL: GDAL would only warn about most of these and
        # write the file without them, and words what it refuses differently by version.
        (["--co", "COMPRESS=NOPE"], "creation option COMPRESS=nope is not a value GDAL takes"),
        (["--co", "FOO=bar"], "unknown creation option FOO for a GeoTIFF"),
        (
            ["--co", "COMPRESS=DEFLATE", "--co", "ZLEVEL=99"],
            "creation option ZLEVEL=99 is out of range; give ZLEVEL from 1 to 12",
        ),
        (["--co", "PREDICTOR=7"], "creation option PREDICTOR=7 is not a value GDAL takes"),
        (
            ["--co", "COMPRESS=LZW", "--co", "ZLEVEL=6"],
            "creation option ZLEVEL tunes COMPRESS=DEFLATE or LERC_DEFLATE",
        ),
    ],
)
def test_bad_options(tmp_path, src, mpraster_cmd, cli_env, args, fragment):
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "reverse", *args)
    assert_one_line_error(proc, 2, fragment)
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "mode,io", [("threads", "main"), ("processes", "main"), ("processes", "workers")]
)
def test_kernel_raising_in_worker_names_window(tmp_path, mpraster_cmd, cli_env, mode, io):
    src = row_coded(tmp_path)
    out = tmp_path / "o.tif"
    out.write_bytes(b"earlier")
    args = [
        src,
        out,
        "-k",
        "kernels_for_tests:fail_on_second_row",
        "--mode",
        mode,
        "--io",
        io,
        "-j",
        "2",
        "--block-size",
        "16",
        "--overwrite",
    ]
    proc = run_cli(mpraster_cmd, cli_env, *args)
    assert_one_line_error(
        proc,
        11,
        "kernel 'fail_on_second_row' failed on window 1 (row 16, col 0, 16x16)",
        "ZeroDivisionError: kernel bug on purpose",
    )
    assert out.read_bytes() == b"earlier" and not leftovers(tmp_path)
    verbose = run_cli(mpraster_cmd, cli_env, *args, "--verbose")
    assert verbose.returncode == 11
    # The worker's own traceback, down to the line that raised.
    assert 'raise ZeroDivisionError("kernel bug on purpose")' in verbose.stderr


def test_kernel_returning_wrong_shape(tmp_path, src, mpraster_cmd, cli_env):
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        tmp_path / "o.tif",
        "-k",
        "kernels_for_tests:wrong_shape",
        "--block-size",
        "16",
        "-j",
        "1",
        "--mode",
        "threads",
    )
    assert_one_line_error(
        proc, 11, "returned uint8 (3, 15, 16) on window 0", "expected uint8 (3, 16, 16)"
    )


@pytest.mark.parametrize("io", ["main", "workers"])
def test_worker_process_dies(tmp_path, mpraster_cmd, cli_env, io):
    src = row_coded(tmp_path)
    out = tmp_path / "o.tif"
    out.write_bytes(b"earlier")
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        out,
        "-k",
        "kernels_for_tests:exit_worker",
        "--mode",
        "processes",
        "--io",
        io,
        "-j",
        "2",
        "--block-size",
        "16",
        "--overwrite",
    )
    assert_one_line_error(proc, 12, "worker process died", "1 (row 16, col 0, 16x16)", "in flight")
    assert out.read_bytes() == b"earlier" and not leftovers(tmp_path)


def test_worker_process_dies_library(tmp_path):
    src = row_coded(tmp_path)
    with pytest.raises(errors.WorkerDied):
        mpraster.run(
            src,
            tmp_path / "o.tif",
            "kernels_for_tests:exit_worker",
            mode="processes",
            jobs=2,
            block_size=16,
        )
    assert not leftovers(tmp_path)


def test_unguarded_script_is_told_to_guard_the_call(tmp_path, cli_env):
    """Worker processes re-run the main script; an unguarded mpraster.run there kills every
    worker as it starts. The error says so instead of only 'a worker died'."""
    src = row_coded(tmp_path)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import mpraster\n"
        f"mpraster.run({str(src)!r}, {str(tmp_path / 'o.tif')!r}, 'reverse-py',"
        " mode='processes', jobs=2, block_size=16, params={'cost': 0})\n"
    )
    proc = run_command([sys.executable, script], env=cli_env)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mpraster.errors.WorkerDied: a worker process died"), last
    assert "unguarded.py calls mpraster.run outside" in last and "guard the call" in last
    assert not (tmp_path / "o.tif").exists()
