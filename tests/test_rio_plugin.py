"""`rio mpraster`: the same click commands through rasterio's own CLI entry."""

import sys

import numpy as np
import pytest
import rasterio
from helpers import BIN, run_cli, run_command

RIO = BIN / "rio"


@pytest.fixture
def rio(cli_env):
    if not RIO.exists():
        pytest.fail(f"rasterio's rio command is missing beside {sys.executable}")

    def call(*args):
        return run_command([RIO], *args, env=cli_env)

    return call


def test_rio_lists_and_helps_the_plugin(rio):
    assert "mpraster" in rio("--help").stdout
    proc = rio("mpraster", "run", "--help")
    assert proc.returncode == 0
    for option in (
        "--co, --profile",
        "--overwrite",
        "--kernel",
        "--mode",
        "--io",
        "--jobs",
        "--cog",
        "--dry-run",
    ):
        assert option in proc.stdout, option


def test_rio_mpraster_run_is_the_same_command(tmp_path, make_raster, rio, mpraster_cmd, cli_env):
    src = make_raster((3, 60, 60), "uint8")
    via_rio = tmp_path / "rio.tif"
    # The same options, through rio and through mpraster's own command.
    options = ["--kernel", "reverse", "-p", "cost=0", "--co", "COMPRESS=DEFLATE", "-j", "2"]
    options += ["--block-size", "32", "-q"]
    proc = rio("mpraster", "run", src, via_rio, *options)
    assert proc.returncode == 0, proc.stderr
    direct = tmp_path / "direct.tif"
    run_cli(mpraster_cmd, cli_env, src, direct, *options, check=True)
    assert via_rio.read_bytes() == direct.read_bytes()
    with rasterio.open(src) as a, rasterio.open(via_rio) as b:
        assert np.array_equal(b.read(), a.read()[::-1]) and b.compression.name == "deflate"
    # Errors keep their exit codes under rio too.
    proc = rio("mpraster", "run", src, via_rio, "--kernel", "reverse")
    assert proc.returncode == 9 and "output exists" in proc.stderr
