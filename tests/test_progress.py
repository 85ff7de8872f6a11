import pytest

from mpraster.progress import RunStats


@pytest.mark.parametrize(
    "fields,kind,advice",
    [
        (
            dict(write_seconds=9.0, io="workers", read_seconds=1.0, compute_seconds=1.0),
            "writer",
            "NUM_THREADS",
        ),
        (dict(read_seconds=8.0, io="main", compute_seconds=2.0), "reader", "--io workers"),
        (dict(compute_seconds=18.0, io="main"), "compute", "-j"),
        (dict(read_seconds=16.0, io="workers", compute_seconds=1.0), "read", "storage"),
        (dict(compute_seconds=2.0, write_seconds=1.0, io="main"), "overhead", "--block-size"),
    ],
)
def test_diagnosis_names_the_busiest_stage(fields, kind, advice):
    stats = RunStats(wall_seconds=10.0, jobs=2, windows=10, pixels=10**6, **fields)
    got_kind, text = stats.diagnosis()
    assert got_kind == kind and advice in text
    assert stats.as_dict()["bound"] == kind
    assert text in stats.report()
