"""Which outputs have their tiles encoded apart and placed (mpraster/tiles.py), as a run
decides it without help: by the output's profile alone, never by mode or -j."""

import numpy as np
import pytest
import rasterio
from helpers import (
    assert_one_line_error,
    digest,
    run_cli,
    stop_after_first_window,
    synthetic,
)

import mpraster
from mpraster import tiles
from mpraster.errors import OptionError, ResumeError
from mpraster.sample import write_raster

WORKERS = "each worker encodes the tiles it computes"


@pytest.fixture(autouse=True)
def default_rule(monkeypatch):
    monkeypatch.delenv(tiles.MIN_TILE_BYTES_VARIABLE, raising=False)


def who_encodes(tmp_path, dtype, bands, block, options, jobs=2):
    src = write_raster(tmp_path / "in.tif", synthetic((bands, 1024, 1024), dtype))
    job = mpraster.plan_job(
        src,
        tmp_path / "o.tif",
        "reverse",
        params={"cost": 0},
        jobs=jobs,
        block_size=block,
        creation_options=options,
    )
    return next(line for line in job.describe().splitlines() if "  tiles: " in line)


@pytest.mark.parametrize(
    "dtype,bands,block,options,placed",
    [
        ("float32", 1, 512, {"compress": "deflate"}, True),  # 1 MiB tiles
        ("uint16", 1, 512, {"compress": "zstd"}, True),  # 512 KiB
        ("uint8", 3, 512, {"compress": "lzw"}, True),  # 768 KiB
        ("uint8", 1, 512, {"compress": "deflate"}, False),  # 256 KiB
        ("float32", 1, 256, {"compress": "deflate"}, False),  # 256 KiB
        ("uint8", 1, 64, {}, True),  # uncompressed: laid out without GDAL, at no cost
    ],
)
def test_compressed_tiles_are_placed_from_half_a_mebibyte(
    tmp_path, dtype, bands, block, options, placed
):
    line = who_encodes(tmp_path, dtype, bands, block, options)
    if placed:
        assert "the writer places them" in line
    else:
        assert "GDAL encodes and writes every tile on 2 threads (tiles of " in line
        assert "encoding each in a file of its own costs more" in line


def test_the_environment_moves_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, "0")
    assert WORKERS in who_encodes(tmp_path, "uint8", 1, 64, {"compress": "deflate"})
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, str(4 << 20))
    assert WORKERS not in who_encodes(tmp_path, "float32", 1, 512, {"compress": "deflate"})


def test_a_bad_threshold_is_one_line(tmp_path, mpraster_cmd, cli_env):
    src = write_raster(tmp_path / "in.tif", synthetic((1, 64, 64), "uint8"))
    cli_env[tiles.MIN_TILE_BYTES_VARIABLE] = "lots"
    args = [src, tmp_path / "o.tif", "-k", "reverse", "--co", "COMPRESS=DEFLATE"]
    proc = run_cli(mpraster_cmd, cli_env, *args)
    assert_one_line_error(proc, OptionError.exit_code, "MPRASTER_MIN_PLACED_TILE_BYTES", "lots")


@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_the_rule_does_not_depend_on_the_mode_or_jobs(tmp_path, mode, jobs):
    """A placed output and one GDAL writes, each the same bytes however it is run."""
    src = write_raster(tmp_path / "in.tif", synthetic((3, 600, 520), "uint8"))
    for name, bands in (("placed", [1, 2, 3]), ("gdal", [1])):
        out = tmp_path / f"{name}-{mode}-{jobs}.tif"
        mpraster.run(
            f"{src}:{','.join(map(str, bands))}",
            out,
            "reverse",
            mode=mode,
            jobs=jobs,
            params={"cost": 0},
            creation_options={"compress": "deflate"},
        )
        reference = tmp_path / f"{name}-reference.tif"
        if not reference.exists():
            mpraster.run(
                f"{src}:{','.join(map(str, bands))}",
                reference,
                "reverse",
                mode="threads",
                jobs=1,
                params={"cost": 0},
                creation_options={"compress": "deflate"},
            )
        assert digest(out) == digest(reference)


def test_a_run_resumed_under_another_rule_is_another_job(tmp_path, monkeypatch):
    """Placed or not lays the file out, and journals it, otherwise: the journal of a run
    stopped under one rule is refused by a run under the other."""
    src = write_raster(tmp_path / "in.tif", synthetic((1, 160, 16), "uint8"))
    out = tmp_path / "o.tif"
    kwargs = dict(
        jobs=1,
        block_size=16,
        params={"cost": 0},
        checkpoint_mb=0.0001,
        creation_options={"compress": "deflate"},
    )
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, "0")
    stop_after_first_window(src, out, **kwargs)
    monkeypatch.delenv(tiles.MIN_TILE_BYTES_VARIABLE)
    with pytest.raises(ResumeError, match="different job"):
        mpraster.run(src, out, "reverse", resume=True, **kwargs)
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, "0")
    mpraster.run(src, out, "reverse", resume=True, **kwargs)
    with rasterio.open(out) as done, rasterio.open(src) as given:
        assert np.array_equal(done.read(), given.read()[::-1])


def test_uncompressed_tiles_are_laid_out_as_gdal_lays_them(tmp_path):
    """Placed without GDAL: the window in the tile's corner, zeros past the edge, or the
    nodata value in a tile with no other pixel (GDAL fills such a tile when it closes)."""
    data = synthetic((2, 37, 45), "int16")
    data[:, 32:, 32:] = -1  # the bottom-right partial tile: nodata only
    src = write_raster(tmp_path / "in.tif", data, nodata=-1)
    for interleave in ("pixel", "band"):
        ours = tmp_path / f"ours-{interleave}.tif"
        mpraster.run(
            src,
            ours,
            "reverse",
            jobs=2,
            block_size=16,
            params={"cost": 0},
            creation_options={"interleave": interleave},
        )
        with rasterio.open(ours) as placed:
            assert np.array_equal(placed.read(), data[::-1])
            profile = placed.profile
        gdal = tmp_path / f"gdal-{interleave}.tif"
        with rasterio.open(gdal, "w", **profile) as dst:
            dst.write(data[::-1])
        with rasterio.open(ours) as a, rasterio.open(gdal) as b:
            for band in range(1, 3) if interleave == "band" else [1]:
                for row in range(3):
                    for col in range(3):
                        key = f"BLOCK_OFFSET_{col}_{row}", f"BLOCK_SIZE_{col}_{row}"
                        chunks = []
                        for ds, path in ((a, ours), (b, gdal)):
                            at, size = (int(ds.get_tag_item(k, "TIFF", band)) for k in key)
                            with open(path, "rb") as fh:
                                fh.seek(at)
                                chunks.append(fh.read(size))
                        assert chunks[0] == chunks[1], (interleave, band, row, col)
