"""Who encodes a placed output's tiles: a worker that computed a whole tile window encodes
it; a tile assembled from row strips (few tiles for many workers), or every tile with one
worker, is encoded on the writer's pool of threads, never by the writer's own thread,
which only places tiles. The file is the same bytes whoever encoded each tile."""

import threading

import pytest
import rasterio
from helpers import digest, synthetic

import mpraster
from mpraster import tiles
from mpraster.errors import OutputWriteError
from mpraster.sample import write_raster
from mpraster.tiles import TileEncoder


@pytest.fixture(autouse=True)
def small_tiles_placed(monkeypatch):
    """Compressed tiles of any size placed, as the tests' small rasters need (a run
    places them from `mpraster.tiles.MIN_TILE_BYTES`); CLI runs inherit it."""
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, "0")


DEFLATE = {"compress": "deflate", "predictor": "2"}


@pytest.fixture
def encoders(monkeypatch):
    """The names of the threads that encoded a tile, in order."""
    names: list[str] = []
    encode = TileEncoder.encode

    def recorded(self, array):
        names.append(threading.current_thread().name)
        return encode(self, array)

    monkeypatch.setattr(TileEncoder, "encode", recorded)
    return names


def run(src, out, jobs, mode="threads", block=32, **options):
    return mpraster.run(
        src,
        out,
        "reverse",
        mode=mode,
        jobs=jobs,
        block_size=block,
        params={"cost": 0},
        creation_options=DEFLATE,
        overwrite=True,
        **options,
    )


@pytest.fixture
def src(tmp_path):
    # In tiles of 32, 3 x 3 of them: any -j cuts each into two row strips. In tiles of 16
    # (too short to cut), 6 x 6.
    return write_raster(tmp_path / "in.tif", synthetic((2, 96, 90), "uint16"), tile=32)


def test_workers_encode_whole_tiles(tmp_path, src, encoders):
    stats = run(src, tmp_path / "j2.tif", jobs=2, block=16)
    assert stats.windows == 36 and len(encoders) == 36
    assert not any(name.startswith(("mpraster-encode", "mpraster-writer")) for name in encoders)


@pytest.mark.parametrize("jobs,block,windows,tiles", [(1, 16, 36, 36), (2, 32, 18, 9)])
def test_the_pool_encodes_what_arrives_as_pixels(
    tmp_path, src, encoders, jobs, block, windows, tiles
):
    """-j 1 (the worker does not encode), and tiles cut into strips: the pool."""
    stats = run(src, tmp_path / f"j{jobs}.tif", jobs=jobs, block=block)
    assert stats.windows == windows and len(encoders) == tiles
    assert all(name.startswith("mpraster-encode") for name in encoders), encoders


@pytest.mark.parametrize("block", [16, 32])
def test_same_bytes_whoever_encodes(tmp_path, src, block):
    files = []
    for mode, jobs in [("threads", 1), ("threads", 2), ("threads", 3), ("processes", 2)]:
        files.append(tmp_path / f"{mode}{jobs}.tif")
        run(src, files[-1], jobs=jobs, mode=mode, block=block)
    assert len({digest(path) for path in files}) == 1
    with rasterio.open(src) as a, rasterio.open(files[0]) as b:
        assert (b.read() == a.read()[::-1]).all()


def test_a_tile_the_pool_cannot_encode_fails_the_run(tmp_path, src, monkeypatch):
    out = tmp_path / "out.tif"
    out.write_bytes(b"an earlier output")
    calls = []

    def refuse(self, array):
        calls.append(array.shape)
        raise rasterio.errors.RasterioError("the codec refused the tile")

    monkeypatch.setattr(TileEncoder, "encode", refuse)
    with pytest.raises(OutputWriteError, match="the codec refused the tile") as caught:
        run(src, out, jobs=3)
    assert caught.value.exit_code == 18 and calls
    assert out.read_bytes() == b"an earlier output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]
