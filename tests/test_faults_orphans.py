"""A processes-mode run killed outright leaves nothing behind: its workers exit, then its
forkserver and resource tracker (which frees the run's shared memory and semaphores), and
the caller's pipes reach their end; the blocks a dead run left are removed by the next run."""

import fcntl
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import parent_pid, row_coded, start_cli, wait_for_windows

import mpraster
from mpraster.modes.processes import exit_with_main
from mpraster.modes.transport import SHM_DIR, process_start

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.isdir(SHM_DIR),
    reason="reads /proc and /dev/shm (Linux)",
)


def descendants(pid):
    """Every descendant of ``pid``, by pid, with its start time (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (parent := parent_pid(int(entry))) is not None:
            children.setdefault(parent, []).append(int(entry))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = process_start(child)
            todo.append(child)
    return found


def alive(processes):
    """Those of ``processes`` (pid: start time) that still run."""
    return [pid for pid, start in processes.items() if start and process_start(pid) == start]


def shared_files(pids):
    """Inodes of the /dev/shm files (shared memory, semaphores) that ``pids`` map."""
    inodes = set()
    for pid in pids:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(SHM_DIR + "/"):
                inodes.add(int(fields[4]))
    return inodes


def in_shm(inodes):
    """Names of the /dev/shm files with those inodes."""
    return {entry.name for entry in os.scandir(SHM_DIR) if entry.inode() in inodes}


def test_sigkill_of_the_main_process_leaves_nothing_behind(tmp_path, mpraster_cmd, cli_env):
    src = row_coded(tmp_path, rows=160, bands=1)
    args = [src, tmp_path / "o.tif", "-k", "kernels_for_tests:hang", "-p", "row=96"]
    args += ["--mode", "processes", "-j", "2", "--block-size", "16"]
    proc = start_cli(mpraster_cmd, cli_env, *args, "--progress", "log", "--log-interval", "0")
    # A worker never finishes the window at row 96, so the run is mid-way whenever it is
    # killed: one worker busy in the kernel, the other idle on the call queue.
    wait_for_windows(proc, 3)
    tree = {proc.pid: process_start(proc.pid), **descendants(proc.pid)}
    files = shared_files(tree)
    try:
        assert len(tree) == 5, "main, resource tracker, forkserver and two workers"
        names = in_shm(files)
        assert any(name.startswith(f"mpraster-{proc.pid}-") for name in names), names
        assert any(name.startswith("sem.") for name in names), names

        proc.kill()
        # Returns only once every process holding the caller's pipes has ended.
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive(tree)
        assert not in_shm(files)
    finally:
        for pid in alive(tree):
            os.kill(pid, 9)
        proc.communicate(timeout=60)
        for name in in_shm(files):
            os.unlink(os.path.join(SHM_DIR, name))


def test_a_worker_whose_main_process_is_gone_exits():
    """Even if the main process died before the worker's watchdog started."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    worker = multiprocessing.get_context("forkserver").Process(
        target=exit_with_main, args=(reader,)
    )
    writer.close()
    worker.start()
    reader.close()
    worker.join(60)
    assert worker.exitcode == 1


def test_a_run_removes_the_blocks_of_dead_runs(tmp_path, make_raster):
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    dead, me, started = child.pid, os.getpid(), process_start(os.getpid())
    blocks = {
        "dead": f"mpraster-{dead}-{started}-00000001",
        # This process's pid with another start time: the creator had the pid before us.
        "reused": f"mpraster-{me}-{int(started) - 1}-00000002",
        "alive": f"mpraster-{me}-{started}-00000003",
        # Locked: its creator lives, in a pid namespace where its pid is not ``dead``.
        "locked": f"mpraster-{dead}-{started}-00000004",
        # Just made: its creator may not have locked it yet.
        "new": f"mpraster-{dead}-{started}-00000005",
        "foreign": "psm_mpraster_test",
    }
    paths = {key: Path(SHM_DIR, name) for key, name in blocks.items()}
    locks = []
    try:
        for key, path in paths.items():
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.ftruncate(fd, 4096)
            if key == "locked":
                fcntl.flock(fd, fcntl.LOCK_SH)
                locks.append(fd)
            else:
                os.close(fd)
            if key != "new":
                os.utime(path, (time.time() - 3600,) * 2)
        mpraster.run(make_raster(), tmp_path / "o.tif", "reverse", mode="processes", jobs=1)
        kept = {key for key, path in paths.items() if path.exists()}
        assert kept == {"alive", "locked", "new", "foreign"}
    finally:
        for fd in locks:
            os.close(fd)
        for path in paths.values():
            path.unlink(missing_ok=True)
