"""Several outputs from one pass: each file the one a single-output run writes, in every
mode; journaled, resumed, sharded and failed together."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest
import rasterio
from helpers import MATRIX, assert_one_line_error, digest, run_cli, run_command

import mpraster
from mpraster import tiles
from mpraster.errors import OptionError, OutputPathError, WindowFailed
from mpraster.merge import merge_shards
from mpraster.modes.threads import WORKER_THREAD_PREFIX
from mpraster.sample import write_raster

TERRAIN = ("slope", "aspect", "hillshade")


@pytest.fixture
def dem(tmp_path):
    """A rough float32 DEM with nodata holes and flat patches (aspect's flat case)."""
    rng = np.random.default_rng(3)
    z = np.cumsum(np.cumsum(rng.normal(size=(150, 130)), 0), 1).round().astype("float32")
    z[40:46, 20:31] = -9999
    z[90:110, 60:90] = 7.0
    return write_raster(tmp_path / "dem.tif", z[np.newaxis], nodata=-9999, tile=64)


def _single_runs(tmp_path, dem, **options):
    """Each terrain product written by its own single-output kernel, one thread."""
    found = {}
    for name in TERRAIN:
        path = tmp_path / f"single-{name}.tif"
        mpraster.run(dem, path, name, jobs=1, mode="threads", **options)
        found[name] = digest(path)
    return found


@pytest.mark.parametrize(("mode", "io", "jobs"), MATRIX)
def test_terrain_outputs_are_the_single_output_files(tmp_path, dem, mode, io, jobs):
    options = dict(block_size=32, creation_options={"COMPRESS": "DEFLATE"})
    single = _single_runs(tmp_path, dem, **options)
    targets = {name: tmp_path / f"{name}.tif" for name in TERRAIN}
    planned = mpraster.plan_job(dem, targets, "terrain", mode=mode, io=io, jobs=jobs, **options)
    stats = mpraster.run(dem, targets, "terrain", mode=mode, io=io, jobs=jobs, **options)
    assert stats.windows == len(planned.tasks)  # one pass, not one per output
    assert {name: digest(path) for name, path in targets.items()} == single
    # One output alone is the same file as well.
    alone = tmp_path / "alone.tif"
    mpraster.run(dem, {"aspect": alone}, "terrain", mode=mode, io=io, jobs=jobs, **options)
    assert digest(alone) == single["aspect"]


@pytest.mark.parametrize(("mode", "io", "jobs"), MATRIX)
def test_outputs_placed_and_written_by_gdal_in_one_pass(tmp_path, dem, monkeypatch, mode, io, jobs):
    """slope's and aspect's tiles (float32, 1 KiB) placed, hillshade's (uint8, 256 B) by
    GDAL's writer: a worker encodes the first two and hands the third over as pixels;
    each file is still the bytes of its single-output run."""
    monkeypatch.setenv(tiles.MIN_TILE_BYTES_VARIABLE, "512")
    options = dict(block_size=16, creation_options={"COMPRESS": "DEFLATE"})
    single = _single_runs(tmp_path, dem, **options)
    targets = {name: tmp_path / f"{name}.tif" for name in TERRAIN}
    planned = mpraster.plan_job(dem, targets, "terrain", mode=mode, io=io, jobs=jobs, **options)
    said = [line for line in planned.describe().splitlines() if line.startswith("  tiles: ")]
    assert ["GDAL encodes" in line for line in said] == [False, False, True]
    encoded_by = []
    encode = tiles.TileEncoder.encode

    def recorded(self, array):
        encoded_by.append(threading.current_thread().name)
        return encode(self, array)

    monkeypatch.setattr(tiles.TileEncoder, "encode", recorded)
    mpraster.run(dem, targets, "terrain", mode=mode, io=io, jobs=jobs, **options)
    assert {name: digest(path) for name, path in targets.items()} == single
    if mode == "threads":  # who encoded (a process worker's calls are not seen here)
        assert len(encoded_by) == 2 * len(planned.tiles)  # slope's and aspect's only
        by = WORKER_THREAD_PREFIX if jobs > 1 else "mpraster-encode"
        assert all(name.startswith(by) for name in encoded_by), set(encoded_by)


def test_terrain_matches_numpy_horn_inside(tmp_path, dem):
    targets = {name: tmp_path / f"{name}.tif" for name in TERRAIN}
    mpraster.run(dem, targets, "terrain", jobs=2, block_size=32)
    with rasterio.open(dem) as src:
        z = src.read(1).astype("float64")
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dx = (c + 2 * f + i) - (a + 2 * d + g)
    dy = (g + 2 * h + i) - (a + 2 * b + c)
    aspect = np.degrees(np.arctan2(dy, -dx))
    aspect = np.where(aspect > 90, 450 - aspect, 90 - aspect) % 360
    slope = np.degrees(np.arctan(np.hypot(dx / 240, dy / 240)))  # 8 x 30 m
    near_hole = np.zeros_like(z, bool)
    near_hole[38:48, 18:33] = True
    inside = ~near_hole[1:-1, 1:-1]
    flat = (dx == 0) & (dy == 0)
    with rasterio.open(targets["slope"]) as s, rasterio.open(targets["aspect"]) as asp:
        got_slope, got_aspect = s.read(1)[1:-1, 1:-1], asp.read(1)[1:-1, 1:-1]
        assert s.nodata == -9999 and s.descriptions == ("slope",) and s.units == ("degrees",)
        assert asp.descriptions == ("aspect",)
    np.testing.assert_allclose(got_slope[inside], slope[inside], atol=1e-4)
    assert (got_aspect[flat & inside] == -9999).all() and flat.sum() > 100
    both = inside & ~flat
    err = np.abs(got_aspect[both] - aspect[both])
    assert np.minimum(err, 360 - err).max() < 1e-3
    # The hole (rows 40-45, cols 20-30) and its ring of neighbours are nodata.
    assert (got_slope[38:45, 18:30] == -9999).all() and (got_aspect[38:45, 18:30] == -9999).all()


def test_a_user_kernel_with_two_outputs_of_different_types(tmp_path, make_raster):
    src = make_raster((3, 70, 50), "uint16", nodata=0)
    targets = {"total": tmp_path / "total.tif", "flipped": tmp_path / "flipped.tif"}
    kernel = "kernels_for_tests:two_products"
    for mode in ("threads", "processes"):
        mpraster.run(src, targets, kernel, mode=mode, jobs=2, block_size=16, overwrite=True)
        with rasterio.open(src) as a, rasterio.open(targets["total"]) as t:
            assert t.dtypes == ("float64",) and t.nodata == -1
            assert np.array_equal(t.read(1), a.read().sum(axis=0, dtype="float64"))
        reverse = tmp_path / "reverse.tif"
        mpraster.run(src, reverse, "reverse", jobs=1, block_size=16, overwrite=True)
        assert digest(targets["flipped"]) == digest(reverse)


def test_a_stopped_run_resumes_every_output_together(tmp_path, dem):
    targets = {name: tmp_path / f"{name}.tif" for name in TERRAIN}
    options = dict(jobs=1, block_size=16, checkpoint_mb=0.0001, mode="threads")
    options["creation_options"] = {"COMPRESS": "DEFLATE"}
    stop = mpraster.StopSignal(grace=0)

    class StopAfter(mpraster.progress.NullProgress):
        seen = 0

        def advance(self, windows, pixels):
            self.seen += windows
            if self.seen == 7:
                stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(dem, targets, "terrain", stop=stop, progress=StopAfter(), **options)
    for path in targets.values():
        assert not path.exists()
        assert path.with_name(path.name + ".partial").exists()
        assert path.with_name(path.name + ".journal").exists()
    # Another set of outputs is another job: its journals do not match.
    with pytest.raises(mpraster.errors.ResumeError, match="different job"):
        mpraster.run(dem, {"slope": targets["slope"]}, "terrain", resume=True, **options)
    stats = mpraster.run(dem, targets, "terrain", resume=True, **options)
    assert stats.windows_resumed >= 7
    single = _single_runs(tmp_path, dem, block_size=16, checkpoint_mb=0.0001, **{
        "creation_options": {"COMPRESS": "DEFLATE"}})  # fmt: skip
    assert {name: digest(path) for name, path in targets.items()} == single
    assert (
        sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name or "journal" in p.name)
        == []
    )


def test_shards_of_each_output_merge_into_the_single_output_files(tmp_path, dem):
    targets = {name: tmp_path / f"{name}.tif" for name in TERRAIN}
    for index in range(3):
        mpraster.run(dem, targets, "terrain", jobs=2, block_size=32, shard=(index, 3))
    for path in targets.values():
        merge_shards(str(path))
    assert {name: digest(path) for name, path in targets.items()} == _single_runs(
        tmp_path, dem, block_size=32
    )


def test_a_failed_output_leaves_every_target_as_it_was(tmp_path, dem):
    """The kernel fails part-way: no output appears, an earlier one is untouched."""
    targets = {"a": tmp_path / "a.tif", "b": tmp_path / "b.tif"}
    targets["a"].write_bytes(b"earlier output")
    with pytest.raises(WindowFailed, match="no 'b'"):
        mpraster.run(
            dem, targets, "kernels_for_tests:forgets_an_output", block_size=32, overwrite=True
        )
    assert targets["a"].read_bytes() == b"earlier output" and not targets["b"].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "dem.tif"]
    # A folder that cannot be written: refused before any window, nothing left anywhere.
    missing = {"slope": tmp_path / "s.tif", "aspect": tmp_path / "no" / "such" / "a.tif"}
    with pytest.raises(OutputPathError):
        mpraster.run(dem, missing, "terrain", block_size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "dem.tif"]


def test_outputs_that_do_not_suit_the_kernel_are_refused(tmp_path, dem):
    with pytest.raises(OptionError, match=r"several outputs .* -o slope=slope\.tif"):
        mpraster.plan_job(dem, tmp_path / "x.tif", "terrain")
    with pytest.raises(OptionError, match=r"no output 'slop' \(did you mean 'slope'\?\)"):
        mpraster.plan_job(dem, {"slop": tmp_path / "x.tif"}, "terrain")
    with pytest.raises(OptionError, match="two outputs would be written to"):
        mpraster.plan_job(
            dem, {"slope": tmp_path / "x.tif", "aspect": tmp_path / "x.tif"}, "terrain"
        )
    with pytest.raises(OptionError, match="makes one output"):
        mpraster.plan_job(dem, {"slope": tmp_path / "x.tif"}, "slope")
    with pytest.raises(OptionError, match="named for the PNG format"):
        mpraster.plan_job(dem, {"slope": tmp_path / "x.png"}, "terrain")


def test_cli_writes_named_outputs_and_says_what_each_is(tmp_path, dem, mpraster_cmd, cli_env):
    slope, shade = tmp_path / "slope.tif", tmp_path / "shade.tif"
    args = [dem, "-k", "terrain", "-o", f"slope={slope}", "-o", f"hillshade={shade}"]
    plan = run_cli(mpraster_cmd, cli_env, *args, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert (
        f"output [slope]: {slope}" in plan.stdout and f"output [hillshade]: {shade}" in plan.stdout
    )
    done = run_cli(mpraster_cmd, cli_env, *args, "-j", "2", "-q", "--block-size", "32")
    assert done.returncode == 0, done.stderr
    assert digest(slope) == _single_runs(tmp_path, dem, block_size=32)["slope"]
    bad = run_cli(mpraster_cmd, cli_env, dem, tmp_path / "x.tif", "-k", "terrain")
    assert_one_line_error(bad, 2, "several outputs (slope, aspect, hillshade)", "-o NAME=FILE")
    bad = run_cli(mpraster_cmd, cli_env, dem, "-k", "terrain", "-o", "shade=x.tif")
    assert_one_line_error(bad, 2, "no output 'shade'", "its outputs: slope, aspect, hillshade")
    listing = run_command([*mpraster_cmd, "kernels"], "terrain", env=cli_env, check=True)
    for name in TERRAIN:
        assert f"output {name} (-o {name}=FILE): " in listing.stdout
