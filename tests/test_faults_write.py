"""A write that fails anywhere fails the run: exit 18, one line, nothing at the target or
beside it, an earlier output byte-for-byte the same; creation options are accepted or
refused by mpraster's own rules, the same on every GDAL."""

import contextlib
import errno
import logging
import os
import re
import subprocess
import threading

import numpy as np
import pytest
import rasterio
from helpers import assert_one_line_error, run_cli, synthetic

import mpraster
from mpraster import creation_options, gdal_errors, output
from mpraster.errors import OptionError, OutputPathError, OutputWriteError
from mpraster.output import CogOptions
from mpraster.sample import write_raster

EARLIER = b"an earlier output, to be kept byte for byte\n"
# libtiff itself prints a failed write(2) straight to stderr from GDAL's threads, where no
# error handler can hear it; mpraster's own output is the one line after.
LIBTIFF_LINE = ("_tiffWriteProc: ", "_tiffSeekProc: ")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs holding an earlier output, mounted for the test and unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a small tmpfs, and mounting one needs root")
    folder = tmp_path / "tiny"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]
    proc = subprocess.run(mount, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        (folder / "out.tif").write_bytes(EARLIER)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def noise(tmp_path, size):
    """Incompressible 3-band uint8: its output is as large compressed as not."""
    return write_raster(tmp_path / f"noise{size}.tif", synthetic((3, size, size), "uint8"))


def only_the_earlier_output(folder):
    assert sorted(p.name for p in folder.iterdir()) == ["out.tif"]
    assert (folder / "out.tif").read_bytes() == EARLIER


def assert_disk_full_error(proc, target, mpi=False):
    # Progress log lines may come first (as in helpers.assert_one_line_error); mpiexec
    # reports the exit status after a line of dashes, and the other ranks, torn down by
    # mpiexec once rank 0 has failed, may print their own noise: there, rank 0's error is
    # the one line that says "Error: ".
    stderr = proc.stderr.split("\n-----")[0]
    skipped = (*LIBTIFF_LINE, "mpraster: ")
    lines = [line for line in stderr.splitlines() if not line.startswith(skipped)]
    if mpi:
        lines = [line for line in lines if line.startswith("Error: ")]
    assert proc.returncode == 18, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert f"writing {target} failed" in lines[0] and "out of space" in lines[0]
    assert f"nothing was written to {target}" in lines[0]
    assert "/vsimem/" not in lines[0] and "Traceback" not in proc.stderr


# Each codec the README names; the COG's working file (602 KB) fits the disk, the copy
# GDAL makes of it at the end does not.
CODECS = {
    "none": ({}, None, 768),
    "DEFLATE": ({"compress": "deflate"}, None, 768),
    "LZW": ({"compress": "lzw"}, None, 768),
    "ZSTD": ({"compress": "zstd"}, None, 768),
    "cog": ({}, CogOptions(), 448),
}


@pytest.mark.parametrize("mode", ["threads", "processes"])
@pytest.mark.parametrize("codec", CODECS)
def test_disk_full_fails_the_run(tmp_path, tiny_disk, codec, mode):
    options, cog, size = CODECS[codec]
    out = tiny_disk / "out.tif"
    with pytest.raises(OutputWriteError) as caught:
        # -j 2 compresses on GDAL's threads (NUM_THREADS=2), where a full disk is only logged.
        mpraster.run(
            noise(tmp_path, size),
            out,
            "reverse",
            mode=mode,
            jobs=2,
            block_size=128,
            params={"cost": 0},
            creation_options=options,
            cog=cog,
            overwrite=True,
        )
    message = str(caught.value)
    assert caught.value.exit_code == 18 and "\n" not in message
    assert message.startswith(f"writing {out} failed: ") and "out of space" in message
    assert message.endswith(f"nothing was written to {out}") and "/vsimem/" not in message
    # GDAL's own reason, heard from it: not the backstop's finding in the finished file.
    assert "finished file" not in message
    only_the_earlier_output(tiny_disk)


@pytest.mark.parametrize(
    "mode,cachemax", [("threads", None), ("processes", None), ("threads", "64")]
)
def test_disk_full_is_one_line_from_the_cli(
    tmp_path, tiny_disk, mpraster_cmd, cli_env, mode, cachemax
):
    """The run that exited 0 and replaced the earlier output with a torn file; also with
    GDAL_CACHEMAX set, when the engine leaves the GDAL environment to the writer."""
    if cachemax:
        cli_env["GDAL_CACHEMAX"] = cachemax
    out = tiny_disk / "out.tif"
    args = [noise(tmp_path, 768), out, "-k", "reverse", "-p", "cost=0", "-j", "2"]
    args += ["--mode", mode, "--co", "COMPRESS=DEFLATE", "--overwrite"]
    assert_disk_full_error(run_cli(mpraster_cmd, cli_env, *args), out)
    only_the_earlier_output(tiny_disk)


def test_disk_full_under_mpi(tmp_path, tiny_disk, mpirun):
    src = noise(tmp_path, 768)
    out = tiny_disk / "out.tif"
    args = ["-m", "mpraster", "run", src, out, "-k", "reverse", "-p", "cost=0", "--mode", "mpi"]
    proc = mpirun(*args, "--block-size", "128", "--co", "COMPRESS=DEFLATE", "--overwrite")
    assert_disk_full_error(proc, out, mpi=True)
    only_the_earlier_output(tiny_disk)


def test_torn_file_is_found_before_the_rename(tmp_path, tiny_disk):
    """The backstop for a write error nobody heard: a file written outside any
    rasterio.Env (GDAL's errors go to stderr only) onto the full disk closes "fine", torn."""
    src = noise(tmp_path, 768)
    torn = tiny_disk / "torn.tif"
    with rasterio.open(src) as dataset:
        profile = dataset.profile | {"tiled": True, "blockxsize": 128, "blockysize": 128}
        data = dataset.read()
    dst = rasterio.open(torn, "w", **profile, compress="deflate", num_threads=2)
    try:
        dst.write(data)
    finally:
        with contextlib.suppress(rasterio.errors.RasterioError):
            dst.close()
    assert output.find_missing_tile(str(torn)) is not None


def test_find_missing_tile(tmp_path):
    data = synthetic((3, 48, 48), "uint8")
    whole = write_raster(tmp_path / "whole.tif", data, tile=16)
    assert output.find_missing_tile(str(whole)) is None
    # GDAL writes the directory first: cutting the tail leaves it, and the last tile short.
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:-100])
    assert output.find_missing_tile(str(cut)) == (
        "tile (row 2, col 2) of band 1 ends past the end of the finished file"
    )
    # A shard leaves the tiles of other shards out (SPARSE_OK): allowed there only.
    sparse = tmp_path / "sparse.tif"
    with rasterio.open(whole) as dataset:
        profile = dataset.profile | {"sparse_ok": True}
    with rasterio.open(sparse, "w", **profile) as dst:
        dst.write(data[:, :16, :16], window=rasterio.windows.Window(0, 0, 16, 16))
    assert output.find_missing_tile(str(sparse), sparse=True) is None
    assert output.find_missing_tile(str(sparse)) == (
        "tile (row 0, col 1) of band 1 is missing from the finished file"
    )


def test_journal_that_cannot_sync_fails_the_run(tmp_path, make_raster, monkeypatch):
    src = make_raster((3, 64, 64), "uint8")
    out = tmp_path / "out.tif"
    out.write_bytes(EARLIER)
    real_fsync, calls = os.fsync, []

    def full_after_header(fd):
        calls.append(fd)
        if len(calls) > 1:  # the header went through; the first checkpoint does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_after_header)
    with pytest.raises(OutputWriteError, match="No space left on device") as caught:
        mpraster.run(
            src,
            out,
            "reverse",
            jobs=1,
            block_size=16,
            params={"cost": 0},
            checkpoint_mb=0.001,
            overwrite=True,
        )
    assert caught.value.exit_code == 18
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name, "out.tif"]
    assert out.read_bytes() == EARLIER


@pytest.mark.parametrize("cog", [None, CogOptions("none")], ids=["tiff", "cog"])
def test_rename_failure_keeps_a_resumable_partial(tmp_path, make_raster, monkeypatch, cog):
    """root ignores chmod, so the folder turning read-only is os.replace refusing."""
    src = make_raster((3, 200, 150), "uint8")
    out = tmp_path / "out.tif"
    kwargs = dict(jobs=2, block_size=128, params={"cost": 0}, cog=cog)
    kwargs["creation_options"] = {"compress": "deflate"}
    mpraster.run(src, tmp_path / "reference.tif", "reverse", **kwargs)
    real_replace = os.replace

    def refuse_target(source, target):
        if os.fspath(target) == str(out):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", refuse_target)
    with pytest.raises(OutputPathError) as caught:
        mpraster.run(src, out, "reverse", **kwargs)
    message = str(caught.value)
    assert caught.value.exit_code == 10 and "\n" not in message
    assert f"cannot move the finished output to {out}: Permission denied" in message
    assert "kept as" in message and "--resume to finish" in message
    assert not out.exists() and not (tmp_path / "out.tif.partial-final").exists()
    assert (tmp_path / "out.tif.partial").exists() and (tmp_path / "out.tif.journal").exists()
    monkeypatch.setattr(os, "replace", real_replace)
    stats = mpraster.run(src, out, "reverse", resume=True, **kwargs)
    assert stats.windows_resumed == stats.windows  # nothing computed again
    assert out.read_bytes() == (tmp_path / "reference.tif").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name, "out.tif", "reference.tif"]


def float32_input(tmp_path):
    return write_raster(tmp_path / "f32.tif", synthetic((3, 40, 40), "float32"))


REFUSED = [
    (
        {"compress": "webp"},
        "COMPRESS=WEBP needs a uint8 output of 3 or 4 bands (RGB or RGBA), and the output "
        "has 3 bands of float32",
    ),
    ({"compress": "jpeg"}, "COMPRESS=JPEG needs a uint8 output, and the output is float32"),
    ({"nbits": "4"}, "NBITS=4 does not suit the float32 output"),
    # GDAL 3.12 refuses it, GDAL 3.10 ignores it.
    ({"predictor": "2"}, "PREDICTOR=2 needs a compression that uses it"),
    ({"compress": "deflate", "predictor": "3", "zlevel": "0"}, "ZLEVEL=0 is out of range"),
]


@pytest.mark.parametrize("options,message", REFUSED)
def test_options_gdal_cannot_encode_are_refused(tmp_path, options, message):
    with pytest.raises(OptionError, match=re.escape(message)) as caught:
        mpraster.run(
            float32_input(tmp_path), tmp_path / "o.tif", "reverse", creation_options=options
        )
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f32.tif"]


def test_webp_on_float32_is_one_line_from_the_cli(tmp_path, mpraster_cmd, cli_env):
    """It used to exit 0 with garbage pixels: GDAL refuses in its compression threads."""
    args = [float32_input(tmp_path), tmp_path / "o.tif", "-k", "reverse", "-j", "2"]
    proc = run_cli(mpraster_cmd, cli_env, *args, "--co", "COMPRESS=WEBP")
    assert_one_line_error(proc, 2, "COMPRESS=WEBP needs a uint8 output of 3 or 4 bands")
    assert "ERROR" not in proc.stderr and not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "options",
    [{"compress": "webp"}, {"compress": "jpeg"}, {"nbits": "4"}],
    ids=["webp", "jpeg", "nbits"],
)
def test_probe_encodes_what_the_table_misses(tmp_path, monkeypatch, options):
    """Without mpraster's table, the tile the probe encodes still refuses them up front,
    in GDAL's words without its temporary file names."""
    monkeypatch.setattr(creation_options, "_check_option_table", lambda profile, cog: None)
    with pytest.raises(OptionError, match=r"GDAL (cannot write|refused)") as caught:
        mpraster.run(
            float32_input(tmp_path), tmp_path / "o.tif", "reverse", creation_options=options
        )
    message = str(caught.value)
    assert "/vsimem/" not in message and ".tif:" not in message and "gtiffdataset" not in message


class Seen(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_gdal_errors_are_heard_in_the_listening_thread_only():
    """Another thread's GDAL errors are its own to report; and the user's logging sees
    what it saw before (no INFO records that exist only for mpraster to hear)."""
    logger = logging.getLogger("rasterio._env")
    level, seen = logger.level, Seen()
    logger.addHandler(seen)
    try:
        with gdal_errors.GDAL_MESSAGES.listening() as heard:
            assert logger.getEffectiveLevel() <= logging.INFO
            logger.info(gdal_errors.GDAL_FAILURE, 1, "heard")
            other = threading.Thread(
                target=logger.info, args=(gdal_errors.GDAL_FAILURE, 1, "elsewhere")
            )
            other.start()
            other.join()
            logger.warning("CPLE_AppDefined in a warning, passed on")
    finally:
        logger.removeHandler(seen)
    assert heard.errors == ["heard"]
    assert seen.messages == ["CPLE_AppDefined in a warning, passed on"]
    assert logger.level == level and logger.getEffectiveLevel() > logging.INFO


def test_option_table_agrees_with_gdal_on_what_it_accepts(tmp_path, make_raster):
    """Combinations the table lets through are ones GDAL writes and reads back exactly."""
    src = make_raster((3, 40, 40), "uint8")
    for options in (
        {"compress": "deflate", "predictor": "2", "zlevel": "9", "num_threads": "2"},
        {"compress": "zstd", "zstd_level": "3"},
        {"compress": "lzw", "predictor": "1", "interleave": "band"},
        {"compress": "webp", "webp_lossless": "yes"},
    ):
        out = tmp_path / "o.tif"
        kwargs = dict(jobs=1, block_size=16, params={"cost": 0}, overwrite=True)
        mpraster.run(src, out, "reverse", creation_options=options, **kwargs)
        with rasterio.open(src) as a, rasterio.open(out) as b:
            assert np.array_equal(b.read(), a.read()[::-1]), options
