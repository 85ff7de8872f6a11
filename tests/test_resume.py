"""Graceful stop on SIGINT/SIGTERM, the journal, and --resume: a resumed run's output is
byte-identical to an uninterrupted one, and windows already written are not computed again."""

import json
import signal

import numpy as np
import pytest
import rasterio
from helpers import RESUMABLE_RUN, row_coded, run_cli, start_cli, wait_for_windows

import mpraster
from mpraster.errors import ResumeError, UnfinishedRunError


def reference(tmp_path, src, cost):
    """The output of the job with cost ``cost``, run through in one thread."""
    out = tmp_path / "reference.tif"
    mpraster.run(
        src,
        out,
        "reverse",
        jobs=1,
        block_size=16,
        params={"cost": cost},
        creation_options={"compress": "deflate"},
        checkpoint_mb=0.0001,
    )
    return out.read_bytes()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_drops_a_stuck_window_after_the_grace_period(
    tmp_path, mpraster_cmd, cli_env, sig, code
):
    """A process worker stuck on a window is dropped once --stop-grace has passed (a
    thread cannot be stopped: in threads mode the window in flight runs to its end)."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    proc = start_cli(
        mpraster_cmd,
        cli_env,
        src,
        out,
        "-k",
        "kernels_for_tests:hang",
        "-p",
        "row=96",
        "--mode",
        "processes",
        "-j",
        "2",
        "--stop-grace",
        "0.2",
        *RESUMABLE_RUN,
    )
    wait_for_windows(proc, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert f"stopped by {sig.name} after" in err and "run the same command with --resume" in err
    assert not out.exists()
    assert (tmp_path / "o.tif.partial").exists() and (tmp_path / "o.tif.journal").exists()


def test_resume_after_sigterm_is_byte_identical(tmp_path, mpraster_cmd, cli_env):
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    args = [src, out, "-k", "reverse", "-p", "cost=300000", "--mode", "threads", "-j", "2"]
    args += RESUMABLE_RUN
    proc = start_cli(mpraster_cmd, cli_env, *args)
    wait_for_windows(proc, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    journal = (tmp_path / "o.tif.journal").read_text().splitlines()
    done = sum(len(json.loads(line)["checksums"]) for line in journal[1:])
    assert 3 <= done < 10

    # Without --resume the leftover is neither overwritten nor mistaken for an output.
    again = run_cli(
        mpraster_cmd, cli_env, *args[:2], "-k", "reverse", "-p", "cost=300000", *RESUMABLE_RUN
    )
    assert again.returncode == 17 and "pass --resume to finish it" in again.stderr

    # A different job (cost differs) is refused.
    other = run_cli(
        mpraster_cmd, cli_env, src, out, "-k", "reverse", "-p", "cost=1", *RESUMABLE_RUN, "--resume"
    )
    assert other.returncode == 16 and "was a different job" in other.stderr

    stats_file = tmp_path / "stats.json"
    proc = run_cli(mpraster_cmd, cli_env, *args, "--resume", "--stats-json", stats_file, "-q")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(stats_file.read_text())
    assert stats["windows_resumed"] == done  # not computed again
    assert not (tmp_path / "o.tif.partial").exists() and not (tmp_path / "o.tif.journal").exists()
    assert not list(tmp_path.glob("*.resume"))
    assert out.read_bytes() == reference(tmp_path, src, cost=300000)


def test_resume_after_sigkill(tmp_path, mpraster_cmd, cli_env):
    """Killed outright: the last checkpoint's windows are kept, the rest are redone."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    args = [src, out, "-k", "reverse", "-p", "cost=300000", "--mode", "threads", "-j", "2"]
    args += RESUMABLE_RUN
    proc = start_cli(mpraster_cmd, cli_env, *args)
    wait_for_windows(proc, 4)
    proc.kill()
    proc.communicate(timeout=60)
    journal = (tmp_path / "o.tif.journal").read_text().splitlines()
    assert len(journal) >= 2
    proc = run_cli(mpraster_cmd, cli_env, *args, "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == reference(tmp_path, src, cost=300000)


def test_damaged_partial_is_refused(tmp_path):
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    kwargs = dict(jobs=1, block_size=16, params={"cost": 0}, checkpoint_mb=0.0001)
    stop = mpraster.StopSignal(grace=0)
    stop.set(signal.SIGTERM)  # stops before anything is submitted
    with pytest.raises(mpraster.MprasterError, match="after 0 of 10 windows"):
        mpraster.run(src, out, "reverse", stop=stop, **kwargs)
    with pytest.raises(UnfinishedRunError):
        mpraster.run(src, out, "reverse", **kwargs)
    mpraster.run(src, out, "reverse", resume=True, **kwargs)  # nothing was done: all computed
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert np.array_equal(b.read(), a.read()[::-1])
    # A partial whose pixels changed after it was journaled is not trusted.
    stop = mpraster.StopSignal(grace=0)
    out2 = tmp_path / "o2.tif"

    class StopAfter(mpraster.progress.NullProgress):
        def advance(self, windows, pixels):
            stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(src, out2, "reverse", stop=stop, progress=StopAfter(), **kwargs)
    with rasterio.open(tmp_path / "o2.tif.partial", "r+") as ds:
        ds.write(np.full((2, 16, 16), 9, dtype="uint8"), window=((0, 16), (0, 16)))
    with pytest.raises(ResumeError, match="does not match its journal"):
        mpraster.run(src, out2, "reverse", resume=True, **kwargs)


def test_a_failed_resumed_run_leaves_nothing_behind(tmp_path):
    """The interrupted run's partial is moved aside while a resumed run takes windows from
    it; when the resumed run fails, that copy goes too (its journal went with the failed
    run's), instead of lying beside the output as OUTPUT.partial.resume."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    kwargs = dict(jobs=1, block_size=16, params={"row": 128}, checkpoint_mb=0.0001)
    kernel = "kernels_for_tests:fail_on_second_row"  # fails on the window at row 128
    stop = mpraster.StopSignal(grace=0)

    class StopAfter(mpraster.progress.NullProgress):
        def advance(self, windows, pixels):
            stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(src, out, kernel, mode="threads", stop=stop, progress=StopAfter(), **kwargs)
    assert (tmp_path / "o.tif.partial").exists() and (tmp_path / "o.tif.journal").exists()
    with pytest.raises(mpraster.errors.WindowFailed, match="row 128"):
        mpraster.run(src, out, kernel, mode="threads", resume=True, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.tif"]
