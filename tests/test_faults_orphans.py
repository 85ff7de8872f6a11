"""A processes-mode run killed outright leaves nothing behind: the blocks a dead run left
are removed by the next run."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mpraster
from mpraster.transport import SHM_DIR, process_start

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.isdir(SHM_DIR),
    reason="reads /proc and /dev/shm (Linux)",
)


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
