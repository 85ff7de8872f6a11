"""One run per output: a second run of the same output, shard or merge is refused at once
(exit 19, one line naming the output and its holder) and never touches the first run's
partial or journal; a lock left by a killed run never blocks."""

import errno
import json
import os
import signal
import socket

import pytest
from helpers import (
    RESUMABLE_RUN,
    row_coded,
    run_cli,
    run_command,
    start_cli,
    wait_for_windows,
)

import mpraster
from mpraster import lock as lock_module
from mpraster.errors import OutputLockedError, ResumeError
from mpraster.lock import OutputLock, lock_path
from mpraster.merge import merge_shards
from mpraster.progress import NullProgress

GATE = "kernels_for_tests:wait_for_file"


def gated(tmp_path, src, out, row=96):
    """A run that writes the windows above ``row``, then waits until tmp_path/go exists."""
    params = ["-p", f"row={row}", "-p", f"path={tmp_path / 'go'}"]
    return [src, out, "-k", GATE, *params, "--mode", "threads", "-j", "1", *RESUMABLE_RUN]


def reference(tmp_path, src, row=96):
    """The output of the gated job, run through in one thread with the gate open."""
    (tmp_path / "go").touch()
    out = tmp_path / "reference.tif"
    mpraster.run(
        src,
        out,
        GATE,
        mode="threads",
        jobs=1,
        block_size=16,
        params={"row": row, "path": str(tmp_path / "go")},
        creation_options={"compress": "deflate"},
        checkpoint_mb=0.0001,
    )
    data = out.read_bytes()
    out.unlink()
    return data


def assert_refused(proc, output, pid):
    assert proc.returncode == 19, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"Error: another run (pid {pid} on {socket.gethostname()} since ")
    assert f"is writing {output} (it holds {output}.lock)" in lines[0]
    assert "wait for it to finish, or stop it first" in lines[0]


def snapshot(*paths):
    """What a second run must not change: inode, size, mtime and bytes of each file."""
    result = {}
    for path in paths:
        st = os.stat(path)
        result[path.name] = (st.st_ino, st.st_size, st.st_mtime_ns, path.read_bytes())
    return result


def test_second_run_is_refused_and_the_first_finishes(tmp_path, mpraster_cmd, cli_env):
    """The issue: B (--overwrite) used to delete A's partial, and A then put B's unfinished
    partial in place."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    args = gated(tmp_path, src, out)
    a = start_cli(mpraster_cmd, cli_env, *args)
    wait_for_windows(a, 6)  # windows 0-5 written; A waits at the gate on window 6
    partial, journal = tmp_path / "o.tif.partial", tmp_path / "o.tif.journal"
    before = snapshot(partial, journal)

    for extra in (["--overwrite"], ["--resume"], ["--overwrite", "--resume"], ["--dry-run"]):
        assert_refused(run_cli(mpraster_cmd, cli_env, *args, *extra), out, a.pid)
    # A merge of the same output is a run of it too.
    assert_refused(
        run_command([*mpraster_cmd, "merge"], out, "--overwrite", env=cli_env), out, a.pid
    )
    assert snapshot(partial, journal) == before
    assert not out.exists()
    holder = json.loads((tmp_path / "o.tif.lock").read_text())
    assert holder["pid"] == a.pid and holder["host"] == socket.gethostname()

    expected = reference(tmp_path, src)  # opens the gate
    _, err = a.communicate(timeout=60)
    assert a.returncode == 0, err
    assert out.read_bytes() == expected
    assert not [p.name for p in tmp_path.glob("o.tif.*")]  # partial, journal and lock gone


def test_lock_of_a_killed_run_does_not_block(tmp_path, mpraster_cmd, cli_env):
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    args = gated(tmp_path, src, out)
    a = start_cli(mpraster_cmd, cli_env, *args)
    wait_for_windows(a, 6)
    a.send_signal(signal.SIGKILL)
    a.communicate(timeout=60)
    assert json.loads((tmp_path / "o.tif.lock").read_text())["pid"] == a.pid  # left behind
    journal = (tmp_path / "o.tif.journal").read_text().splitlines()
    done = sum(len(json.loads(line)["checksums"]) for line in journal[1:])
    assert done == 6

    expected = reference(tmp_path, src)  # opens the gate
    stats = tmp_path / "stats.json"
    proc = run_cli(mpraster_cmd, cli_env, *args, "--resume", "--stats-json", stats, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "Error" not in proc.stderr and "cannot lock" not in proc.stderr
    assert json.loads(stats.read_text())["windows_resumed"] == done
    assert out.read_bytes() == expected
    assert not [p.name for p in tmp_path.glob("o.tif.*")]


def test_shards_and_merges_are_locked_one_by_one(tmp_path, mpraster_cmd, cli_env):
    """A second run of one shard is refused, another shard runs; a second merge is refused."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    # Shard 0/2 has rows 0-79: it waits at row 32; shard 1/2 never meets the gate.
    args = gated(tmp_path, src, out, row=32)
    shard0 = tmp_path / "o.tif.shard0000of0002.tif"
    a = start_cli(mpraster_cmd, cli_env, *args, "--shard", "0/2")
    wait_for_windows(a, 2)
    before = snapshot(tmp_path / f"{shard0.name}.partial", tmp_path / f"{shard0.name}.journal")
    proc = run_cli(mpraster_cmd, cli_env, *args, "--shard", "0/2", "--overwrite")
    assert_refused(proc, shard0, a.pid)
    proc = run_cli(mpraster_cmd, cli_env, *args, "--shard", "1/2", "-q")
    assert proc.returncode == 0, proc.stderr
    after = snapshot(tmp_path / f"{shard0.name}.partial", tmp_path / f"{shard0.name}.journal")
    assert after == before

    expected = reference(tmp_path, src, row=32)  # opens the gate
    _, err = a.communicate(timeout=60)
    assert a.returncode == 0, err

    second = []

    class SecondMerge(NullProgress):
        """Starts a second merge of the same output while the first is writing."""

        def advance(self, windows, pixels):
            if not second:
                second.append(run_command([*mpraster_cmd, "merge"], out, env=cli_env))

    merge_shards(out, progress=SecondMerge())
    assert_refused(second[0], out, os.getpid())
    assert out.read_bytes() == expected
    assert not (tmp_path / "o.tif.lock").exists()


def library_kwargs(tmp_path):
    return dict(jobs=1, block_size=16, params={"cost": 0}, checkpoint_mb=0.0001)


def test_library_runs_are_locked(tmp_path):
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    kwargs = library_kwargs(tmp_path)
    job = mpraster.plan_job(src, out, "reverse", **kwargs)  # planned before the other run
    with OutputLock(out) as other:
        assert other.locked
        holder = f"pid {os.getpid()} on {socket.gethostname()} since "
        for call in (
            lambda: mpraster.run(src, out, "reverse", overwrite=True, **kwargs),
            lambda: mpraster.plan_job(src, out, "reverse", resume=True, **kwargs),
            lambda: mpraster.execute(job),
        ):
            with pytest.raises(OutputLockedError, match=f"another run \\({holder}") as caught:
                call()
            assert isinstance(caught.value, BlockingIOError) and caught.value.exit_code == 19
        assert [p.name for p in tmp_path.glob("o.tif*")] == ["o.tif.lock"]
    assert not (tmp_path / "o.tif.lock").exists()
    mpraster.execute(job)  # once the other run is done
    assert out.exists() and not (tmp_path / "o.tif.lock").exists()


def test_a_resume_planned_before_another_run_finished_it_is_refused(tmp_path):
    """The interrupted run is checked again under the lock, not only when planned."""
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    kwargs = library_kwargs(tmp_path)
    stop = mpraster.StopSignal(grace=0)

    class StopAfterOne(NullProgress):
        def advance(self, windows, pixels):
            stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(src, out, "reverse", stop=stop, progress=StopAfterOne(), **kwargs)
    stale = mpraster.plan_job(src, out, "reverse", resume=True, **kwargs)
    assert stale.resume_from is not None
    mpraster.run(src, out, "reverse", resume=True, **kwargs)
    finished = out.read_bytes()
    with pytest.raises(ResumeError, match="changed after this run was planned"):
        mpraster.execute(stale)
    assert out.read_bytes() == finished
    assert [p.name for p in tmp_path.glob("o.tif*")] == ["o.tif"]


def test_lock_follows_the_file_at_its_path(tmp_path, monkeypatch):
    """A lock taken on a file its holder unlinked in the meantime is taken again."""
    out = tmp_path / "o.tif"
    flock = lock_module.fcntl.flock
    calls = []

    def flock_after_the_holder_left(fd, operation):
        if not calls:
            # Between our open and our flock, the holder unlinks the file and releases,
            # and a third run creates a new one.
            os.unlink(lock_path(str(out)))
            (tmp_path / "o.tif.lock").touch()
        calls.append(fd)
        return flock(fd, operation)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_the_holder_left)
    with OutputLock(out) as held:
        assert len(calls) == 2
        assert os.path.samestat(os.fstat(held._fd), os.stat(tmp_path / "o.tif.lock"))
    assert not (tmp_path / "o.tif.lock").exists()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_filesystem_without_flock_runs_unlocked(tmp_path, monkeypatch, caplog, code):
    """Some Lustre and NFS mounts have no flock: the run goes on, with a warning."""

    def no_flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    src = row_coded(tmp_path, rows=160, textured=True)
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "reverse", **library_kwargs(tmp_path))
    assert out.exists() and not (tmp_path / "o.tif.lock").exists()
    assert f"cannot lock {out}.lock ({os.strerror(code)}); running without" in caplog.text
