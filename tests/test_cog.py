"""Cloud-Optimized GeoTIFF output, checked against GDAL's COG layout rules by hand."""

import struct

import numpy as np
import pytest
import rasterio
from helpers import digest, row_coded, run_cli

import mpraster
from mpraster.errors import OptionError
from mpraster.output import CogOptions, parse_overviews
from mpraster.sample import write_raster


def ifd_offsets(data: bytes) -> list[int]:
    """Offsets of every IFD of a classic little-endian TIFF, following the chain."""
    assert data[:4] == b"II*\x00"
    offsets, offset = [], struct.unpack_from("<I", data, 4)[0]
    while offset:
        offsets.append(offset)
        count = struct.unpack_from("<H", data, offset)[0]
        offset = struct.unpack_from("<I", data, offset + 2 + 12 * count)[0]
    return offsets


def first_tile_offset(path, overview_level=None) -> int:
    with rasterio.open(path, overview_level=overview_level) as ds:
        return int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))


def assert_valid_cog(path, levels):
    data = path.read_bytes()
    # GDAL's COG ghost header, right after the TIFF header.
    assert b"LAYOUT=IFDS_BEFORE_DATA" in data[:300] and b"BLOCK_ORDER=ROW_MAJOR" in data[:300]
    ifds = ifd_offsets(data)
    assert len(ifds) == 1 + levels  # full resolution, then each overview
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["tiled"] and len(ds.overviews(1)) == levels
    tiles = [first_tile_offset(path)] + [first_tile_offset(path, i) for i in range(levels)]
    # Every IFD comes before any pixel data ...
    assert max(ifds) < min(tiles)
    # ... and overviews are stored smallest first, the full resolution last.
    assert tiles == sorted(tiles, reverse=True)


@pytest.mark.parametrize("mode,io", [("threads", "main"), ("processes", "workers")])
def test_cog_output_is_valid_and_identical_across_modes(tmp_path, make_raster, mode, io):
    src = make_raster((3, 300, 280), "uint16")
    outs = []
    for jobs in (1, 2):
        out = tmp_path / f"{jobs}.tif"
        mpraster.run(
            src,
            out,
            "reverse",
            mode=mode,
            io=io,
            jobs=jobs,
            params={"cost": 0},
            block_size=128,
            creation_options={"COMPRESS": "DEFLATE"},
            cog=CogOptions(),
        )
        outs.append(out)
    assert_valid_cog(outs[0], levels=2)  # 300 px halves to 150, then 75 (< one 128 px tile)
    with rasterio.open(src) as a, rasterio.open(outs[0]) as b:
        assert np.array_equal(b.read(), a.read()[::-1])
        assert b.compression.name == "deflate"
    assert len({digest(p) for p in outs}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["1.tif", "2.tif", src.name])


def test_cog_explicit_factors_and_resampling(tmp_path, make_raster):
    src = write_raster(
        tmp_path / "f.tif", np.linspace(-5, 5, 256 * 256, dtype="float32").reshape(1, 256, 256)
    )
    out = tmp_path / "o.tif"
    mpraster.run(
        src,
        out,
        "reverse",
        jobs=1,
        params={"cost": 0},
        block_size=128,
        cog=CogOptions((2, 4), "average"),
    )
    assert_valid_cog(out, levels=2)
    with rasterio.open(src) as a, rasterio.open(out, overview_level=0) as b:
        expected = a.read(1).reshape(128, 2, 128, 2).mean(axis=(1, 3))
        assert np.allclose(b.read(1), expected, rtol=1e-5)


def test_cog_without_overviews(tmp_path, make_raster):
    src = make_raster((1, 64, 64), "uint8")
    out = tmp_path / "o.tif"
    mpraster.run(
        src, out, "reverse", jobs=1, params={"cost": 0}, block_size=128, cog=CogOptions("none")
    )
    assert_valid_cog(out, levels=0)


def test_cog_driver_options_pass_the_creation_option_check(tmp_path, make_raster):
    """LEVEL is the COG driver's DEFLATE level (GTiff calls it ZLEVEL): not refused for a
    COG, refused for a plain GeoTIFF, where GDAL would ignore it."""
    src = make_raster((1, 64, 64), "uint8")
    out = tmp_path / "o.tif"
    options = {"COMPRESS": "DEFLATE", "LEVEL": "9"}
    kwargs = dict(params={"cost": 0}, block_size=128, creation_options=options)
    mpraster.run(src, out, "reverse", cog=CogOptions("none"), **kwargs)
    assert_valid_cog(out, levels=0)
    with pytest.raises(mpraster.MprasterError, match="LEVEL is for --cog outputs"):
        mpraster.run(src, tmp_path / "plain.tif", "reverse", **kwargs)


def test_cog_failure_leaves_nothing(tmp_path):
    src = row_coded(tmp_path)
    out = tmp_path / "o.tif"
    out.write_bytes(b"earlier")
    with pytest.raises(mpraster.MprasterError):
        mpraster.run(
            src,
            out,
            "kernels_for_tests:fail_on_second_row",
            mode="threads",
            jobs=1,
            block_size=128,
            overwrite=True,
            cog=CogOptions(),
        )
    assert out.read_bytes() == b"earlier"
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_cog_needs_blocks_of_128(tmp_path, make_raster):
    with pytest.raises(OptionError, match="--block-size of 128 or more"):
        mpraster.run(make_raster(), tmp_path / "o.tif", "reverse", block_size=64, cog=CogOptions())


def test_cog_option_errors():
    assert parse_overviews("2,4,8") == (2, 4, 8) and parse_overviews("auto") == "auto"
    with pytest.raises(OptionError, match="--overviews"):
        parse_overviews("lots")
    with pytest.raises(OptionError, match="2 or more"):
        CogOptions((1, 2))
    with pytest.raises(OptionError, match="--resampling"):
        CogOptions("auto", "sharpest")


def test_cog_from_the_cli(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((3, 300, 300), "uint8")
    out = tmp_path / "o.tif"
    args = [src, out, "-k", "reverse", "-p", "cost=0", "--driver", "COG", "--overviews", "2,4"]
    proc = run_cli(
        mpraster_cmd, cli_env, *args, "--resampling", "average", "--block-size", "128", "-q"
    )
    assert proc.returncode == 0, proc.stderr
    assert_valid_cog(out, levels=2)
    proc = run_cli(
        mpraster_cmd, cli_env, src, tmp_path / "p.tif", "-k", "reverse", "--cog", "--overviews", "x"
    )
    assert proc.returncode == 2 and "--overviews takes auto, none or factors" in proc.stderr
