"""Inputs are GDAL dataset names: remote (HTTP range reads from a loopback server),
virtual (/vsizip/, VRT mosaics), subdatasets (netCDF); missing, unreachable and
not-a-raster told apart from GDAL's answer; --config reaching every worker."""

from __future__ import annotations

import socket
import zipfile

import numpy as np
import pytest
import rasterio
from helpers import (
    assert_one_line_error,
    digest,
    http_env,
    run_cli,
    synthetic,
    tile_offset,
    write_netcdf,
)

import mpraster
from mpraster.errors import InputUnreachableError
from mpraster.inputs import cache_max_bytes
from mpraster.sample import write_raster

PLACEMENTS = [
    ("threads", "main"),
    ("threads", "workers"),
    ("processes", "main"),
    ("processes", "workers"),
]
OPTIONS = ["-p", "cost=0", "--block-size", "64", "-j", "2", "--co", "COMPRESS=DEFLATE"]
# netCDF and hand-written VRTs carry no georeferencing here: rasterio says so, once.
no_georeference = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def local_reference(tmp_path, src):
    out = tmp_path / "local.tif"
    mpraster.run(
        src, out, "reverse", mode="threads", jobs=1, block_size=64, params={"cost": 0},
        creation_options={"compress": "deflate"},
    )  # fmt: skip
    return digest(out)


@pytest.mark.parametrize("mode,io", PLACEMENTS)
@pytest.mark.parametrize("form", ["/vsicurl/", ""])
def test_remote_input_gives_the_local_bytes(
    tmp_path, served, mpraster_cmd, cli_env, mode, io, form
):
    server, src = served
    out = tmp_path / "remote.tif"
    name = form + server.url("in.tif")
    proc = run_cli(mpraster_cmd, cli_env, name, out, "-k", "reverse", "--mode", mode,
                   "--io", io, *OPTIONS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert digest(out) == local_reference(tmp_path, src)
    assert any(rng for method, rng in server.requests if method == "GET"), "no range read"


def test_config_reaches_worker_processes(tmp_path, served, mpraster_cmd, cli_env):
    """The environment says to wait 10 minutes on a stalled read; --config says 1 second,
    and process workers, which read the windows, obey --config."""
    server, src = served
    server.hold_from = tile_offset(src, 9)
    env = http_env(cli_env, low_speed_time=600, timeout=600)
    config = ["--config", "GDAL_HTTP_LOW_SPEED_TIME=1", "--config", "GDAL_HTTP_MAX_RETRY=0"]
    proc = run_cli(mpraster_cmd, env, "/vsicurl/" + server.url("in.tif"), tmp_path / "o.tif",
                   "-k", "reverse", "--mode", "processes", "--io", "workers", *config,
                   *OPTIONS, timeout=90)  # fmt: skip
    assert_one_line_error(proc, 5, "failed at window", "network read failed")


def test_config_must_be_key_value(tmp_path, make_raster, mpraster_cmd, cli_env):
    proc = run_cli(mpraster_cmd, cli_env, make_raster(), tmp_path / "o.tif", "-k", "reverse",
                   "--config", "GDAL_CACHEMAX")  # fmt: skip
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr


def test_config_gdal_cachemax_is_a_size(tmp_path, make_raster, mpraster_cmd, cli_env):
    """GDAL_CACHEMAX is read as GDAL reads it (megabytes, bytes, a share of the memory),
    not handed to rasterio as a string (a traceback once)."""
    src = make_raster()
    for value in ("64", "64MB", "5%", "200000000"):
        proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / f"o{value}.tif", "-k", "reverse",
                       "--config", f"GDAL_CACHEMAX={value}", "-q")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert cache_max_bytes("64") == 64 << 20 and cache_max_bytes("200000000") == 200000000
    assert cache_max_bytes("1GB") == 1 << 30
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "reverse",
                   "--config", "GDAL_CACHEMAX=lots")  # fmt: skip
    assert_one_line_error(proc, 2, "GDAL_CACHEMAX=lots is not a size")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: connecting to it is refused


def test_unreachable_input(tmp_path, mpraster_cmd, cli_env):
    name = f"/vsicurl/http://127.0.0.1:{free_port()}/in.tif"
    proc = run_cli(mpraster_cmd, http_env(cli_env, max_retry=0), name, tmp_path / "o.tif",
                   "-k", "reverse")  # fmt: skip
    assert_one_line_error(proc, 21, "cannot reach input", "127.0.0.1", "--config")
    with pytest.raises(InputUnreachableError):
        mpraster.run(name, tmp_path / "o.tif", "reverse", gdal_config={"GDAL_HTTP_MAX_RETRY": 0})


def test_input_inside_a_zip(tmp_path):
    src = write_raster(tmp_path / "in.tif", synthetic((3, 200, 130), "uint8"), tile=64)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.write(src, "inner/in.tif")
    out = tmp_path / "zipped.tif"
    name = f"/vsizip/{tmp_path / 'a.zip'}/inner/in.tif"
    mpraster.run(name, out, "reverse", jobs=2, block_size=64, params={"cost": 0},
                 creation_options={"compress": "deflate"})  # fmt: skip
    assert digest(out) == local_reference(tmp_path, src)
    missing = f"/vsizip/{tmp_path / 'a.zip'}/inner/nope.tif"
    with pytest.raises(mpraster.errors.InputNotFoundError, match=r"nope\.tif"):
        mpraster.run(missing, tmp_path / "o.tif", "reverse")


@no_georeference
def test_netcdf_subdatasets(tmp_path, mpraster_cmd, cli_env):
    a = synthetic((1, 40, 30), "float32", seed=1)[0]
    nc = write_netcdf(tmp_path / "two.nc", {"a": a, "b": -a})
    proc = run_cli(mpraster_cmd, cli_env, nc, tmp_path / "o.tif", "-k", "reverse")
    # GDAL 3.12 quotes the file name in a subdataset's name, 3.10 does not.
    assert_one_line_error(proc, 4, "2 subdatasets", "netcdf:", "two.nc", ":a", ":b")
    out = tmp_path / "a.tif"
    mpraster.run(f"NETCDF:{nc}:a", out, "reverse", mode="processes", io="workers", jobs=2,
                 block_size=16, params={"cost": 0})  # fmt: skip
    with rasterio.open(f"NETCDF:{nc}:a") as src, rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), src.read())
        assert not np.array_equal(ds.read(), -src.read())


@no_georeference
def test_vrt_mosaic_of_two_files(tmp_path):
    data = synthetic((1, 64, 96), "uint16", seed=3)
    left = write_raster(tmp_path / "left.tif", data[:, :, :48])
    right = write_raster(tmp_path / "right.tif", data[:, :, 48:])
    sources = "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="1">'
        f"{path.name}</SourceFilename><SourceBand>1</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="48" ySize="64"/>'
        f'<DstRect xOff="{offset}" yOff="0" xSize="48" ySize="64"/></SimpleSource>'
        for path, offset in ((left, 0), (right, 48))
    )
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="96" rasterYSize="64"><VRTRasterBand dataType="UInt16" '
        f'band="1">{sources}</VRTRasterBand></VRTDataset>'
    )
    out = tmp_path / "o.tif"
    mpraster.run(vrt, out, "focal-mean", jobs=2, block_size=16, params={"size": 3})
    whole = tmp_path / "whole.tif"
    write_raster(whole, data)
    reference = tmp_path / "reference.tif"
    mpraster.run(whole, reference, "focal-mean", jobs=1, block_size=16, params={"size": 3})
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        assert np.array_equal(a.read(), b.read())
