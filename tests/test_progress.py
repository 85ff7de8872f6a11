import json

import pytest

import mpraster
from mpraster.errors import OptionError
from mpraster.stats import RunStats


@pytest.mark.parametrize(
    "fields,kind,advice",
    [
        (
            dict(
                write_seconds=9.0,
                io="workers",
                read_seconds=1.0,
                compute_seconds=1.0,
                compression="DEFLATE",
            ),
            "writer",
            "faster codec than DEFLATE (--co COMPRESS=ZSTD or LZW, or ZLEVEL=1) or none",
        ),
        (
            dict(write_seconds=9.0, io="workers", read_seconds=1.0, compute_seconds=1.0),
            "writer",
            "the output is uncompressed: faster storage is what helps",
        ),
        (dict(read_seconds=8.0, io="main", compute_seconds=2.0), "reader", "try --io workers"),
        # Windows that share blocks, read in bands: workers reading would decode them again.
        (
            dict(read_seconds=8.0, io="main", compute_seconds=2.0, bands_read=True),
            "reader",
            "each block once for every worker",
        ),
        (dict(compute_seconds=18.0, io="main"), "compute", "-j"),
        (dict(read_seconds=16.0, io="workers", compute_seconds=1.0), "read", "storage"),
        (dict(compute_seconds=2.0, write_seconds=1.0, io="main"), "overhead", "--block-size"),
        # Reading (the main thread) and writing (the writer's thread) overlap: the busier
        # one bounds the run, not their sum.
        (
            dict(read_seconds=4.0, write_seconds=4.5, io="main", compute_seconds=12.0),
            "compute",
            "kept the workers 60% busy",
        ),
        (
            dict(read_seconds=6.0, write_seconds=5.5, io="main", compute_seconds=8.0),
            "reader",
            "the main process was reading 60% of wall time",
        ),
    ],
)
def test_diagnosis_names_the_busiest_stage(fields, kind, advice):
    stats = RunStats(wall_seconds=10.0, jobs=2, windows=10, pixels=10**6, **fields)
    got_kind, text = stats.diagnosis()
    assert got_kind == kind and advice in text
    assert stats.as_dict()["bound"] == kind
    assert text in stats.report()


def test_a_lone_worker_bound_by_encoding_is_told_to_add_workers():
    stats = RunStats(
        wall_seconds=10.0, jobs=1, write_seconds=9.0, compute_seconds=1.0, compression="ZSTD"
    )
    kind, text = stats.diagnosis()
    assert kind == "writer" and "more -j (each worker encodes its own tiles)" in text
    assert "faster codec than ZSTD" in text


def test_library_takes_the_cli_progress_names(tmp_path, make_raster, capsys):
    src = make_raster((2, 40, 50), "uint8")
    stats = mpraster.run(src, tmp_path / "out.tif", "reverse", params={"cost": 0}, progress="json")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[-1]["stats"]["windows"] == stats.windows
    with pytest.raises(OptionError, match="unknown progress kind 'nope'"):
        mpraster.run(src, tmp_path / "other.tif", "reverse", progress="nope")
    assert not (tmp_path / "other.tif").exists()
