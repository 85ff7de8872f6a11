"""Tiles encoded where they are computed and placed in the output as they are
(mpraster/tiles.py): each tile is the bytes GDAL's own writer makes of it, the file is a
GeoTIFF that another GDAL reads, every mode gives the same bytes, and a killed, overgrown
or damaged run, a resume and a shard merge keep those bytes."""

import functools
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import (
    MATRIX,
    RESUMABLE_RUN,
    assert_one_line_error,
    digest,
    finish,
    row_coded,
    run_cli,
    run_command,
    start_cli,
    stop_after_first_window,
    synthetic,
    wait_for_windows,
)
from rasterio.enums import Interleaving
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile

import mpraster
from mpraster import tiles
from mpraster.errors import OutputExistsError, OutputWriteError, ResumeError, ShardMergeError
from mpraster.merge import merge_shards
from mpraster.modes.threads import WORKER_THREAD_PREFIX
from mpraster.output import find_missing_tile
from mpraster.sample import DEFAULT_TRANSFORM, write_raster
from mpraster.tiles import TileEncoder, TilePlacer, TileTable, placement_problem
from mpraster.windows import shard_path

GDALINFO = shutil.which("gdalinfo")
GDAL_TRANSLATE = shutil.which("gdal_translate")
EARLIER = b"an earlier output, to be kept byte for byte\n"

PLACEABLE = ["NONE", "DEFLATE", "LZW", "ZSTD", "LZMA", "PACKBITS", "LERC"]
TILE_DTYPES = ["uint8", "int16", "uint16", "float32", "float64"]
NAN = float("nan")
NODATA = {"uint8": 255, "int16": -1, "uint16": 7, "float32": -9999.0, "float64": NAN}


@pytest.fixture(autouse=True)
def small_tiles_placed(monkeypatch):
    """Compressed tiles of any size placed, as the tests' small rasters need (a run
    places them from `mpraster.tiles.MIN_TILE_BYTES`); CLI runs inherit it."""
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, "0")


# ---------------------------------------------------------------- helpers


@functools.cache
def codec_missing(codec: str) -> str | None:
    """Why the running GDAL cannot write ``codec`` tiles, or None if it can."""
    if codec == "NONE":
        return None
    try:
        with MemoryFile() as memory:
            with memory.open(
                driver="GTiff",
                width=16,
                height=16,
                count=3,  # WEBP takes 3 or 4 bands
                dtype="uint8",
                transform=DEFAULT_TRANSFORM,
                compress=codec,
            ) as dst:
                dst.write(np.zeros((3, 16, 16), "uint8"))
            with memory.open() as src:
                written = src.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION")
    except RasterioError as err:
        return f"GDAL {rasterio.__gdal_version__} cannot write {codec}: {err}"
    if written != codec:
        return f"GDAL {rasterio.__gdal_version__} wrote {written} when asked for {codec}"
    return None


def require_codec(codec: str) -> None:
    reason = codec_missing(codec.upper())
    if reason:
        pytest.skip(reason)


def stored_tiles(path) -> dict[tuple[int, int, int], bytes]:
    """Every tile's stored bytes by (band, row, col), from where GDAL's directory says they
    are (``BLOCK_OFFSET_x_y``, ``BLOCK_SIZE_x_y``, as `find_missing_tile` reads them); band
    1 stands for every band of a file interleaved by pixel."""
    data = path.read_bytes()
    tiles = {}
    with rasterio.open(path) as src:
        rows, cols = src.block_shapes[0]
        by_band = src.interleaving == Interleaving.band
        for band in range(1, src.count + 1) if by_band else [1]:
            for row in range(-(-src.height // rows)):
                for col in range(-(-src.width // cols)):
                    offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", band) or 0)
                    size = int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", band) or 0)
                    assert offset and size, f"{path}: tile {band, row, col} is not in the file"
                    tiles[(band, row, col)] = data[offset : offset + size]
    return tiles


def gdal_writes(path, data, nodata, block, creation_options):
    """``data`` written tile by tile by GDAL's own GeoTIFF writer (through rasterio)."""
    bands, rows, cols = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        dtype=data.dtype.name,
        count=bands,
        height=rows,
        width=cols,
        crs="EPSG:32618",
        transform=DEFAULT_TRANSFORM,
        nodata=nodata,
        tiled=True,
        blockxsize=block,
        blockysize=block,
        **creation_options,
    ) as dst:
        dst.write(data)
    return path


def with_empty_tiles(data, nodata, block):
    """``data`` with a whole inner tile and the partial bottom-right tile set to nodata (or
    0): the tiles GDAL's writer treats as empty."""
    data = data.copy()
    fill = 0 if nodata is None else nodata
    data[:, block : 2 * block, block : 2 * block] = fill
    rows, cols = data.shape[1:]
    data[:, (rows - 1) // block * block :, (cols - 1) // block * block :] = fill
    return data


def read(path):
    with rasterio.open(path) as src:
        return src.read()


def tile_count(path) -> int:
    with rasterio.open(path) as src:
        rows, cols = src.block_shapes[0]
        return -(-src.height // rows) * -(-src.width // cols)


@pytest.fixture
def encoded(monkeypatch):
    """Who called `TileEncoder.encode` in this process, one entry per call: "worker" (a
    worker thread, which encodes the whole tiles it computes) or "writer" (the writer's
    side, which encodes the tiles that reach it as pixels)."""
    calls = []
    original = TileEncoder.encode

    def encode(self, array):
        worker = threading.current_thread().name.startswith(WORKER_THREAD_PREFIX)
        calls.append("worker" if worker else "writer")
        return original(self, array)

    monkeypatch.setattr(TileEncoder, "encode", encode)
    return calls


def encoded_by_writer(job) -> int:
    """How many tiles of ``job`` reach the writer as pixels: all with one worker, which
    leaves the encoding to the writer's side; else those cut into row strips."""
    return sum(1 for t in job.tasks if t.part == 0 and (job.jobs == 1 or t.parts > 1))


def journaled(output) -> int:
    """How many tile windows the journal of ``output`` says are done."""
    lines = Path(f"{output}.journal").read_text().splitlines()
    return sum(len(json.loads(line)["checksums"]) for line in lines[1:])


def damage_tile(path, number: int, how: str) -> None:
    """Damage stored tile ``number`` of ``path``: flip bytes near its start (``bytes``) or
    take it out of the tile table (``table``)."""
    with open(path, "r+b") as fh:
        table = TileTable.read(fh)
        if how == "bytes":
            at = table.offsets[number] + 2
            fh.seek(at)
            chunk = fh.read(4)
            fh.seek(at)
            fh.write(bytes(b ^ 0x5A for b in chunk))
        else:
            table.offsets[number] = table.counts[number] = 0
            for values, at in zip(table.packed(), table.at, strict=True):
                fh.seek(at)
                fh.write(values)


# ---------------------------------------------------------------- 1. GDAL's own bytes


def assert_tiles_as_gdal_writes(tmp_path, data, nodata, block, options, jobs, encoded):
    """Run ``reverse`` (cost 0: the bands in reverse order, pixels untouched) over ``data``
    in threads and write the expected result with GDAL's writer: the pixels and every
    stored tile are the same, and the tiles were placed (encoded apart, by the workers
    when there are several and a window is a whole tile)."""
    src = write_raster(tmp_path / "in.tif", data, nodata=nodata)
    out = tmp_path / "out.tif"
    mpraster.run(
        src,
        out,
        "reverse",
        mode="threads",
        jobs=jobs,
        params={"cost": 0},
        block_size=block,
        creation_options=options,
    )
    reference = gdal_writes(tmp_path / "gdal.tif", data[::-1], nodata, block, options)

    assert np.array_equal(read(out), read(reference), equal_nan=True)
    ours, gdals = stored_tiles(out), stored_tiles(reference)
    assert ours.keys() == gdals.keys()
    differ = [(key, len(ours[key]), len(gdals[key])) for key in gdals if ours[key] != gdals[key]]
    assert not differ, f"tiles (band, row, col), our size, GDAL's size: {differ}"
    assert len(encoded) == tile_count(out)
    job = mpraster.plan_job(src, tmp_path / "plan.tif", "reverse", jobs=jobs, block_size=block)
    assert encoded.count("writer") == encoded_by_writer(job)
    return src, out


@pytest.mark.parametrize("dtype", TILE_DTYPES)
@pytest.mark.parametrize("codec", PLACEABLE)
def test_each_tile_is_the_bytes_gdal_writes(tmp_path, encoded, codec, dtype):
    """Every codec a tile may be placed with, every type: 3 bands of 37 x 45 pixels in
    tiles of 16, so that the right and bottom tiles are partial; nodata set; an inner and
    an edge tile wholly nodata. Two workers encode every tile."""
    require_codec(codec)
    nodata = NODATA[dtype]
    data = with_empty_tiles(synthetic((3, 37, 45), dtype), nodata, 16)
    _, out = assert_tiles_as_gdal_writes(
        tmp_path, data, nodata, 16, {"compress": codec}, 2, encoded
    )
    assert encoded == ["worker"] * 9
    # Lossless all: the pixels are the data's, extremes, infinities and -0.0 included.
    assert np.array_equal(read(out), data[::-1], equal_nan=True)


@dataclass(frozen=True)
class Variant:
    """One output profile: its pixels' type and shape, tile size, nodata, creation
    options, and the workers that run it."""

    dtype: str
    shape: tuple[int, int, int]
    block: int
    nodata: float | None
    options: dict
    jobs: int = 2


DEFLATE_2 = {"compress": "DEFLATE", "predictor": "2"}
VARIANTS = {
    "deflate-predictor2-zlevel9-band": Variant(
        "int16", (3, 37, 45), 16, -1, {**DEFLATE_2, "zlevel": "9", "interleave": "BAND"}
    ),
    "deflate-predictor3-zlevel1-nan": Variant(
        "float64", (2, 50, 33), 32, NAN, {"compress": "DEFLATE", "predictor": "3", "zlevel": "1"}, 1
    ),
    "deflate-predictor2-strips": Variant("uint16", (2, 70, 50), 32, 7, DEFLATE_2),
    "zstd-predictor2-level19": Variant(
        "uint16", (2, 45, 37), 16, 7, {"compress": "ZSTD", "predictor": "2", "zstd_level": "19"}
    ),
    "zstd-predictor3-level3-band": Variant(
        "float32",
        (4, 33, 50),
        32,
        NAN,
        {"compress": "ZSTD", "predictor": "3", "zstd_level": "3", "interleave": "BAND"},
    ),
    "lzw-predictor2-band": Variant(
        "uint8", (3, 37, 45), 16, 0, {"compress": "LZW", "predictor": "2", "interleave": "BAND"}, 1
    ),
    "lzma-preset1": Variant(
        "float32", (2, 20, 70), 64, None, {"compress": "LZMA", "lzma_preset": "1"}
    ),
    "packbits-band": Variant(
        "uint16", (3, 37, 45), 16, 0, {"compress": "PACKBITS", "interleave": "BAND"}
    ),
    "none-band": Variant(
        "float64", (2, 37, 45), 16, -9999.0, {"compress": "NONE", "interleave": "BAND"}
    ),
    "lerc-max-z-error": Variant(
        "float32", (2, 37, 45), 16, -9999.0, {"compress": "LERC", "max_z_error": "0.5"}
    ),
    "lerc-deflate-zlevel-band": Variant(
        "uint16",
        (3, 37, 45),
        16,
        7,
        {"compress": "LERC_DEFLATE", "zlevel": "6", "interleave": "BAND"},
    ),
    "lerc-zstd-level": Variant(
        "float64",
        (2, 45, 37),
        16,
        None,
        {"compress": "LERC_ZSTD", "zstd_level": "9", "max_z_error": "0.001"},
        1,
    ),
    "one-partial-tile": Variant("uint16", (2, 10, 12), 16, None, DEFLATE_2),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_tile_variants_are_the_bytes_gdal_writes(tmp_path, encoded, variant):
    """Predictors, levels, tiles interleaved by band (one TIFF tile per band), nodata NaN
    and none, lossy LERC, tiles cut into row strips (the writer's side encodes those), one
    partial tile (the tile tables then fit in their directory entries); one worker (the
    writer's side encodes every tile) or two."""
    case = VARIANTS[variant]
    require_codec(case.options["compress"])
    data = synthetic(case.shape, case.dtype)
    if min(case.shape[1:]) > 2 * case.block:
        data = with_empty_tiles(data, case.nodata, case.block)
    assert_tiles_as_gdal_writes(
        tmp_path, data, case.nodata, case.block, case.options, case.jobs, encoded
    )


# ---------------------------------------------------------------- 2. a valid GeoTIFF


LAYOUTS = {
    # id: creation options, the file's first 4 bytes, rows, cols
    "classic": ({}, b"II*\0", 37, 45),
    "bigtiff": ({"bigtiff": "YES"}, b"II+\0", 37, 45),
    "big-endian": ({"endianness": "BIG"}, b"MM\0*", 37, 45),
    "bigtiff-big-endian": ({"bigtiff": "YES", "endianness": "BIG"}, b"MM\0+", 37, 45),
    "bigtiff-band": ({"bigtiff": "YES", "interleave": "BAND"}, b"II+\0", 37, 45),
    # Tables of one or two tiles: GDAL keeps them in their directory entries, the placer
    # keeps one tile's there and moves two tiles' (8 bytes at full width) out.
    "two-tiles": ({}, b"II*\0", 16, 20),
    "one-tile-big-endian": ({"endianness": "BIG"}, b"MM\0*", 10, 12),
    "one-tile-bigtiff-big-endian": ({"bigtiff": "YES", "endianness": "BIG"}, b"MM\0+", 10, 12),
}


@pytest.mark.skipif(
    not (GDALINFO and GDAL_TRANSLATE), reason="needs GDAL's command line tools on PATH"
)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_placed_output_is_a_geotiff_another_gdal_reads(tmp_path, layout):
    """The placed file is read the same by the system's GDAL (gdalinfo, gdal_translate: a
    reader other than rasterio's): pixels, checksums, CRS, transform, nodata, tags and band
    descriptions; BigTIFF and big-endian files are what they say, and their tile tables,
    as `TileTable.read` finds them, are where GDAL finds the tiles."""
    extra, head, rows, cols = LAYOUTS[layout]
    data = synthetic((3, rows, cols), "float32")
    src = write_raster(tmp_path / "in.tif", data, nodata=-9999.0)
    with rasterio.open(src, "r+") as dst:
        dst.update_tags(SOURCE="test_tiles", UNITS_NOTE="metres")
        dst.descriptions = ("red", "green", "blue")
    out = tmp_path / "out.tif"
    options = {"compress": "DEFLATE", "predictor": "3", **extra}
    mpraster.run(
        src,
        out,
        "reverse",
        jobs=2,
        mode="threads",
        params={"cost": 0},
        block_size=16,
        creation_options=options,
    )
    expected = data[::-1]

    assert out.read_bytes()[:4] == head
    with open(out, "rb") as fh:
        table = TileTable.read(fh)
    assert table.order == (">" if head[:2] == b"MM" else "<")
    assert table.big == (head[2:] in (b"+\0", b"\0+"))
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), expected)
        per_plane = table.tiles // (ds.count if ds.interleaving == Interleaving.band else 1)
        across = -(-ds.width // 16)
        for number in range(table.tiles):
            plane, at = divmod(number, per_plane)
            row, col = divmod(at, across)
            item = (f"BLOCK_OFFSET_{col}_{row}", f"BLOCK_SIZE_{col}_{row}")
            assert int(ds.get_tag_item(item[0], "TIFF", plane + 1)) == table.offsets[number]
            assert int(ds.get_tag_item(item[1], "TIFF", plane + 1)) == table.counts[number]
        checksums = [ds.checksum(band) for band in (1, 2, 3)]
        assert ds.crs.to_epsg() == 32618 and ds.transform == DEFAULT_TRANSFORM
        assert ds.nodata == -9999.0
        assert ds.tags()["SOURCE"] == "test_tiles"
        assert ds.descriptions == ("blue", "green", "red")
    assert find_missing_tile(str(out)) is None

    env = dict(os.environ)
    info = run_command([GDALINFO, "-json", "-checksum"], out, env=env, check=True)
    assert info.stderr == ""
    described = json.loads(info.stdout)
    assert [band["checksum"] for band in described["bands"]] == checksums
    assert [band["noDataValue"] for band in described["bands"]] == [-9999.0] * 3
    assert [band["description"] for band in described["bands"]] == ["blue", "green", "red"]
    assert described["geoTransform"] == list(DEFAULT_TRANSFORM.to_gdal())
    assert 'ID["EPSG",32618]' in described["coordinateSystem"]["wkt"]
    assert described["metadata"][""]["SOURCE"] == "test_tiles"
    raw = tmp_path / "raw.bin"
    run_command(
        [GDAL_TRANSLATE, "-q", "-of", "ENVI", "-co", "INTERLEAVE=BSQ"],
        out,
        raw,
        env=env,
        check=True,
    )
    assert np.array_equal(np.fromfile(raw, "<f4").reshape(expected.shape), expected)


# ---------------------------------------------------------------- 3. same bytes every way


def masked_input(path):
    """3 bands of uint8 with an internal per-dataset mask: the output has one too."""
    write_raster(path, synthetic((3, 70, 50), "uint8"))
    rows, cols = np.mgrid[:70, :50]
    mask = np.where((rows - 40) ** 2 + (cols - 20) ** 2 < 150, 0, 255).astype("uint8")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        dst.write_mask(mask)
    return path


# id: how to make the input, block size, creation options, why it is not placed (or None)
EVERY_WAY = {
    "deflate-predictor": (
        lambda p: write_raster(p, synthetic((3, 70, 50), "uint16"), nodata=7),
        16,
        {"compress": "DEFLATE", "predictor": "2"},
        None,
    ),
    # Tiles of 32 over 70 rows are cut into row strips for 2 or 3 workers but the last
    # (6 rows): the writer's side encodes the assembled tiles, the workers the others.
    "deflate-strips": (
        lambda p: write_raster(p, synthetic((3, 70, 50), "uint16"), nodata=7),
        32,
        {"compress": "DEFLATE", "predictor": "2"},
        None,
    ),
    "jpeg": (
        lambda p: write_raster(p, synthetic((3, 70, 50), "uint8")),
        16,
        {"compress": "JPEG"},
        "JPEG tiles share tables kept in the file's directory",
    ),
    "mask": (masked_input, 16, {"compress": "DEFLATE"}, "an internal mask has tiles of its own"),
}


@pytest.fixture(scope="module")
def every_way_reference(tmp_path_factory):
    """Per output of EVERY_WAY, made once: its input and the bytes of a run on one thread
    that reads and computes (threads, --io main, -j 1)."""
    made = {}

    def reference(name):
        if name not in made:
            make, block, options, _ = EVERY_WAY[name]
            folder = tmp_path_factory.mktemp(name)
            src = make(folder / "in.tif")
            out = folder / "reference.tif"
            mpraster.run(
                src,
                out,
                "reverse",
                mode="threads",
                io="main",
                jobs=1,
                params={"cost": 0},
                block_size=block,
                creation_options=options,
            )
            made[name] = (src, digest(out))
        return made[name]

    return reference


@pytest.mark.parametrize("mode,io,jobs", MATRIX)
@pytest.mark.parametrize("name", EVERY_WAY)
def test_same_bytes_every_way(tmp_path, every_way_reference, encoded, name, mode, io, jobs):
    """Threads or processes, --io main or workers, -j 1, 2, 3: the same file, whether its
    tiles are placed (encoded on the writer's side with -j 1 or when cut into row strips,
    by the workers otherwise) or written by GDAL tile by tile (JPEG, a mask)."""
    src, expected = every_way_reference(name)
    encoded.clear()  # the reference's, when it was made just now
    _, block, options, problem = EVERY_WAY[name]
    out = tmp_path / "out.tif"
    kwargs = dict(params={"cost": 0}, block_size=block, creation_options=options)
    mpraster.run(src, out, "reverse", mode=mode, io=io, jobs=jobs, **kwargs)
    assert digest(out) == expected

    job = mpraster.plan_job(src, tmp_path / "plan.tif", "reverse", jobs=jobs, **kwargs)
    assert placement_problem(job.profile, False, job.validity.writes_mask) == problem
    if problem is not None:
        assert encoded == []
        return
    tiles = sum(1 for t in job.tasks if t.part == 0)
    by_writer = encoded_by_writer(job)
    assert encoded.count("writer") == by_writer
    # Worker processes encode where this process cannot count them.
    assert encoded.count("worker") == (tiles - by_writer if mode == "threads" else 0)
    if name == "deflate-strips" and jobs > 1:
        assert 0 < by_writer < tiles


# ---------------------------------------------------------------- 4. faults


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_killed_run_resumes_to_the_same_bytes(tmp_path, mpraster_cmd, cli_env, mode):
    """SIGKILL mid-run: the partial is a GeoTIFF whose journaled tiles are in place (the
    table on disk is the last checkpoint's); --resume places them as stored, computes the
    rest, and writes the bytes of an uninterrupted run."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    args = [src, out, "-k", "reverse", "-p", "cost=300000", "--mode", mode, "-j", "2"]
    args += [*RESUMABLE_RUN, "--co", "PREDICTOR=2"]
    proc = start_cli(mpraster_cmd, cli_env, *args)
    wait_for_windows(proc, 4)
    proc.kill()
    finish(proc)
    done = journaled(out)
    assert 1 <= done < 10

    partial = tmp_path / "o.tif.partial"
    expected = read(src)[::-1]
    with open(partial, "rb") as fh:
        table = TileTable.read(fh)
    assert all(table.offsets[:done]) and all(table.counts[:done])
    assert find_missing_tile(str(partial), sparse=True) is None
    with rasterio.open(partial) as ds:
        journaled_rows = ds.read(window=((0, 16 * done), (0, 16)))
    assert np.array_equal(journaled_rows, expected[:, : 16 * done])

    stats_file = tmp_path / "stats.json"
    proc = run_cli(mpraster_cmd, cli_env, *args, "--resume", "--stats-json", stats_file, "-q")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(stats_file.read_text())["windows_resumed"] == done
    reference = tmp_path / "reference.tif"
    mpraster.run(
        src,
        reference,
        "reverse",
        jobs=1,
        params={"cost": 0},
        block_size=16,
        creation_options={"compress": "DEFLATE", "predictor": "2"},
        checkpoint_mb=0.0001,
    )
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["rows.tif", "o.tif", "reference.tif", "stats.json"]
    )


@pytest.mark.parametrize("jobs", [1, 2])
def test_resume_places_journaled_tiles_without_encoding_them(tmp_path, encoded, jobs):
    """A resumed run takes the journaled tiles' stored bytes: it encodes only the tiles it
    computes, and the file is the bytes of an uninterrupted run."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    kwargs = dict(
        mode="threads",
        jobs=jobs,
        block_size=16,
        params={"cost": 0},
        checkpoint_mb=0.0001,
        creation_options={"compress": "ZSTD", "predictor": "2"},
    )
    stop_after_first_window(src, out, **kwargs)
    done = journaled(out)
    assert 1 <= done < 10
    encoded.clear()
    stats = mpraster.run(src, out, "reverse", resume=True, **kwargs)
    assert stats.windows_resumed == done
    assert len(encoded) == 10 - done
    reference = tmp_path / "reference.tif"
    mpraster.run(src, reference, "reverse", **kwargs)
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("jobs", [1, 2])
def test_output_outgrowing_classic_tiff_fails_the_run(tmp_path, monkeypatch, jobs):
    """A placer whose file would pass classic TIFF's 4 GiB (here: a few kilobytes past
    where the tiles start) fails the run with OutputWriteError naming the fix; nothing is
    left beside the target, and an earlier output there is kept byte for byte."""
    original = TilePlacer.__init__

    def small_limit(self, *args):
        original(self, *args)
        self._limit = self._end + 4000

    monkeypatch.setattr(TilePlacer, "__init__", small_limit)
    src = write_raster(tmp_path / "in.tif", synthetic((3, 70, 50), "uint16"))
    out = tmp_path / "out.tif"
    out.write_bytes(EARLIER)
    with pytest.raises(OutputWriteError) as caught:
        mpraster.run(
            src,
            out,
            "reverse",
            mode="threads",
            jobs=jobs,
            params={"cost": 0},
            block_size=16,
            creation_options={"compress": "DEFLATE"},
            overwrite=True,
        )
    message = str(caught.value)
    assert f"writing {out} failed" in message and f"nothing was written to {out}" in message
    assert "outgrows a classic TIFF's 4 GiB; pass --co BIGTIFF=YES" in message
    assert out.read_bytes() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]


@pytest.mark.parametrize(
    "codec,how",
    [("NONE", "bytes"), ("DEFLATE", "bytes"), ("LZW", "bytes"), ("DEFLATE", "table")],
)
def test_damaged_stored_tile_is_refused_on_resume(tmp_path, mpraster_cmd, cli_env, codec, how):
    """A journaled tile whose stored bytes changed afterwards (whether they decode to
    other pixels or fail to decode at all) or that left the tile table: --resume refuses
    the partial with one line, not a traceback, and does not hand the tile over."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    # As the command line passes --co COMPRESS (rasterio's option parser), so that the
    # resumed run below is the same job.
    options = {"compress": None if codec == "NONE" else codec.lower()}
    stop_after_first_window(
        src,
        out,
        jobs=1,
        block_size=16,
        params={"cost": 0},
        checkpoint_mb=0.0001,
        creation_options=options,
    )
    assert journaled(out) >= 1
    damage_tile(tmp_path / "o.tif.partial", 0, how)
    proc = run_cli(
        mpraster_cmd,
        cli_env,
        src,
        out,
        "-k",
        "reverse",
        "-p",
        "cost=0",
        "--block-size",
        "16",
        "--checkpoint-mb",
        "0.0001",
        "--co",
        f"COMPRESS={codec}",
        "-j",
        "1",
        "--resume",
    )
    assert_one_line_error(proc, ResumeError.exit_code, "tile window 0 of", "match its journal")
    assert not out.exists()


@pytest.mark.parametrize(
    "dtype,options,placed",
    [
        ("float32", {"compress": "LERC", "max_z_error": "0.5"}, True),
        ("float32", {"compress": "LERC_DEFLATE", "max_z_error": "0.5"}, True),
        ("uint8", {"compress": "JPEG"}, False),
        ("uint8", {"compress": "WEBP"}, False),
    ],
    ids=["lerc-max-z-error", "lerc-deflate-max-z-error", "jpeg", "webp"],
)
def test_lossy_output_resumes_to_the_same_bytes(tmp_path, dtype, options, placed):
    """A lossy codec changes the pixels it stores, so its tiles cannot be checked against
    the kernel's pixels on resume: a placed output's tiles are journaled by their stored
    bytes, and GDAL's lossy outputs are written to a lossless working file that GDAL
    compresses at the end. Either way a stopped run resumes to an uninterrupted one's
    bytes."""
    require_codec(options["compress"])
    src = write_raster(tmp_path / "in.tif", synthetic((3, 160, 16), dtype))
    out = tmp_path / "o.tif"
    kwargs = dict(
        jobs=1,
        block_size=16,
        params={"cost": 0},
        checkpoint_mb=0.0001,
        creation_options=options,
    )
    stop_after_first_window(src, out, **kwargs)
    assert journaled(out) >= 1
    working = rasterio.open(f"{out}.partial")
    with working:
        stored = working.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION")
    assert stored == (options["compress"] if placed else None)
    mpraster.run(src, out, "reverse", resume=True, **kwargs)
    reference = tmp_path / "reference.tif"
    mpraster.run(src, reference, "reverse", **kwargs)
    assert out.read_bytes() == reference.read_bytes()
    with rasterio.open(out) as done:
        assert done.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == options["compress"]


def test_a_journal_of_another_version_is_not_resumed(tmp_path):
    """Journals written before placed tiles were journaled by their bytes (format 1)."""
    src = write_raster(tmp_path / "in.tif", synthetic((3, 160, 16), "uint8"))
    out = tmp_path / "o.tif"
    kwargs = dict(jobs=1, block_size=16, params={"cost": 0}, checkpoint_mb=0.0001)
    stop_after_first_window(src, out, **kwargs)
    journal = Path(f"{out}.journal")
    header, *rest = journal.read_text().splitlines()
    journal.write_text("\n".join([json.dumps({**json.loads(header), "format": 1}), *rest]))
    with pytest.raises(ResumeError, match=r"another version of mpraster.*--overwrite"):
        mpraster.run(src, out, "reverse", resume=True, **kwargs)
    mpraster.run(src, out, "reverse", overwrite=True, **kwargs)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert (b.read() == a.read()[::-1]).all()


# ---------------------------------------------------------------- 5. merge


MERGED = dict(params={"cost": 0}, block_size=16, checkpoint_mb=0.0001)


def sharded(tmp_path, options, jobs=2):
    """The input, the output path with its 3 shards written (2 workers each), and the bytes
    of one unsharded run on one thread."""
    src = write_raster(tmp_path / "in.tif", synthetic((3, 70, 50), "uint16"), nodata=7)
    out = tmp_path / "o.tif"
    for index in range(3):
        mpraster.run(
            src,
            out,
            "reverse",
            mode="threads",
            jobs=jobs,
            shard=(index, 3),
            creation_options=options,
            **MERGED,
        )
    single = tmp_path / "single.tif"
    mpraster.run(src, single, "reverse", jobs=1, creation_options=options, **MERGED)
    return src, out, single.read_bytes()


@pytest.mark.parametrize("interleave", ["PIXEL", "BAND"])
def test_merge_copies_stored_tiles_to_the_bytes_of_one_run(tmp_path, encoded, interleave):
    """Shards whose plan says their tiles were encoded as the merged output encodes them
    are merged by copying their stored bytes: nothing is encoded again, and the merged
    file is the bytes of one unsharded run."""
    options = {"compress": "DEFLATE", "predictor": "2", "interleave": interleave}
    _, out, single = sharded(tmp_path, options)
    encoded.clear()
    stats = merge_shards(out)
    assert stats.windows == 20
    assert encoded == []
    assert out.read_bytes() == single


def test_merge_refuses_a_shard_missing_a_tile(tmp_path):
    """A shard that lacks one of its own tiles is named with the tile, and nothing is
    written."""
    _, out, _ = sharded(tmp_path, {"compress": "DEFLATE"})
    shard = shard_path(str(out), 1, 3)
    with rasterio.open(shard) as ds:
        across = -(-ds.width // 16)
    number = 7  # shard 1 of 3 holds tiles 6 to 12 of 20
    damage_tile(shard, number, "table")
    row, col = divmod(number, across)
    with pytest.raises(ShardMergeError, match=f"the shard {shard} lacks its tile") as caught:
        merge_shards(out)
    assert f"at row {row}, col {col}; run that shard again" in str(caught.value)
    assert not out.exists()
    assert not list(tmp_path.glob("o.tif.partial*")) and not list(tmp_path.glob("*.journal"))


def test_second_merge_needs_overwrite(tmp_path, mpraster_cmd, cli_env):
    """`mpraster merge` again over its own output: refused in one line without
    --overwrite (the output is kept), replaced with it."""
    _, out, single = sharded(tmp_path, {"compress": "ZSTD", "predictor": "2"})
    merge = [*mpraster_cmd, "merge"]
    run_command(merge, out, "-q", env=cli_env, check=True)
    assert out.read_bytes() == single
    again = run_command(merge, out, "-q", env=cli_env)
    assert_one_line_error(again, OutputExistsError.exit_code, "output exists", "--overwrite")
    assert out.read_bytes() == single
    out.write_bytes(EARLIER)
    run_command(merge, out, "--overwrite", "-q", env=cli_env, check=True)
    assert out.read_bytes() == single


@pytest.mark.parametrize("index", [0, 1, 2])
def test_resumed_shard_places_its_journaled_tiles(tmp_path, encoded, index):
    """A shard stopped and resumed takes its journaled tiles as stored (a shard's tile
    windows are numbered from its first tile, not from the output's), and merges with
    the others to the bytes of one run."""
    src = write_raster(tmp_path / "in.tif", synthetic((2, 480, 16), "uint16"), nodata=7)
    out = tmp_path / "o.tif"
    options = dict(creation_options={"compress": "DEFLATE", "predictor": "2"}, **MERGED)
    shard = dict(mode="threads", jobs=1, shard=(index, 3), **options)
    stop_after_first_window(src, out, **shard)
    done = journaled(shard_path(str(out), index, 3))
    assert 1 <= done < 10
    encoded.clear()
    stats = mpraster.run(src, out, "reverse", resume=True, **shard)
    assert stats.windows_resumed == done
    assert len(encoded) == 10 - done
    for other in {0, 1, 2} - {index}:
        mpraster.run(src, out, "reverse", mode="threads", jobs=2, shard=(other, 3), **options)
    merge_shards(out)
    single = tmp_path / "single.tif"
    mpraster.run(src, single, "reverse", jobs=1, **options)
    assert out.read_bytes() == single.read_bytes()


ZSTD = {"creation_options": {"compress": "zstd"}}


@pytest.mark.parametrize(
    "options,says",
    [
        (dict(jobs=2, block_size=16, **ZSTD), "each worker encodes the tiles it computes"),
        (dict(jobs=1, block_size=16, **ZSTD), "encoded on a thread beside the lone worker"),
        (
            dict(jobs=2, block_size=32, **ZSTD),
            "put back together from row strips and encoded on a pool",
        ),
        (dict(jobs=2, block_size=16), "each worker lays out the tiles it computes"),
        (
            dict(jobs=2, block_size=16, creation_options={"compress": "jpeg"}),
            "GDAL writes them to an uncompressed working file and compresses a copy at the end",
        ),
        (
            dict(jobs=2, block_size=128, cog=mpraster.CogOptions()),
            "GDAL writes them to an uncompressed working file and compresses a copy at the "
            "end (a COG is laid out by GDAL's COG driver)",
        ),
    ],
)
def test_dry_run_says_who_encodes_the_tiles(tmp_path, options, says):
    src = write_raster(tmp_path / "in.tif", synthetic((3, 96, 96), "uint8"))
    job = mpraster.plan_job(src, tmp_path / "o.tif", "reverse", params={"cost": 0}, **options)
    assert f"  tiles: {says}" in job.describe()
