"""One run per output: an advisory lock beside the output, held from planning to the rename.

A run takes ``fcntl.flock`` on ``OUTPUT.lock`` before it touches ``OUTPUT.partial``, the
journal or a previous run's leftovers, and holds it until the output is renamed into place
and they are cleaned up. A second run of the same output is refused at once
(`OutputLockedError`) and touches nothing. The kernel drops a flock when its holder dies,
however it dies: a lock file left by a killed run never blocks the next one.

The file names its holder (pid, host, start time) for the refusal message; what matters is
the flock, never the file's existence or contents.

Filesystems without flock (some Lustre and NFS mounts answer ENOSYS, ENOLCK or
EOPNOTSUPP) get a run without the lock and a warning on the ``mpraster`` logger: refusing
would make mpraster unusable there with nothing the user could change, and every other
promise (an output appears only complete, resume checks what it reuses) holds without it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time

try:
    import fcntl
except ImportError:  # Windows: no flock; runs go unlocked, with a warning
    fcntl = None

from mpraster.errors import OutputLockedError, OutputPathError

logger = logging.getLogger("mpraster")


def _host_name() -> str:
    """This machine's name, as `socket.gethostname` gives it (which is uname's on POSIX):
    the socket module costs a run's start-up more than the rest of the lock."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


# What flock answers on a filesystem that does not support it.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def lock_path(output: str) -> str:
    """The lock file of ``output``, beside it."""
    return f"{output}.lock"


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says ("pid 42 on node7 since ..."), or ""."""
    try:
        record = json.loads(os.pread(fd, 4096, 0))
        return f"pid {record['pid']} on {record['host']} since {record['since']}"
    except (OSError, ValueError, TypeError, KeyError):
        # Taken an instant ago, its holder has not written its name yet.
        return ""


def _refusal(output: str, fd: int) -> OutputLockedError:
    holder = _holder(fd)
    by = f" ({holder})" if holder else ""
    return OutputLockedError(
        f"another run{by} is writing {output} (it holds {lock_path(output)}); wait for it "
        "to finish, or stop it first"
    )


def _open_or_create(path: str) -> tuple[int, bool]:
    """Open the lock file for writing (flock on NFS needs it); also say if we made it."""
    # O_CLOEXEC: a child started with exec must not inherit, and so keep, the lock.
    flags = os.O_RDWR | os.O_CLOEXEC
    while True:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            pass
        try:
            return os.open(path, flags), False
        except FileNotFoundError:
            if os.path.islink(path):
                raise  # a dangling symlink: O_EXCL would fail on it forever
            # Its holder removed it in between: create it.


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def check_not_locked(output: str) -> None:
    """Refuse at once if a run holds ``output``'s lock; creates nothing (for planning).

    A shared lock, taken and dropped at once, is enough to see an exclusive holder; it
    needs only read access, so a dry run in a read-only folder works.

    Raises
    ------
    OutputLockedError
        If another run holds the lock.
    """
    if fcntl is None:
        return
    try:
        fd = os.open(lock_path(output), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file, no holder; `OutputLock` reports other trouble
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(output, fd) from None
    except OSError:
        return  # no flock here: `OutputLock` warns
    finally:
        os.close(fd)  # closing drops the shared lock


class OutputLock:
    """The exclusive lock of one output, for the length of a ``with`` block.

    Parameters
    ----------
    output : path
        The output the run writes (a shard's own file for a shard run).

    Raises
    ------
    OutputLockedError
        On entry, if another run holds the lock.
    OutputPathError
        On entry, if the lock file cannot be created (folder missing or not writable).
    """

    def __init__(self, output: str | os.PathLike) -> None:
        self.output = os.fspath(output)
        self.path = lock_path(self.output)
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        """Whether the lock is held (False on a filesystem without flock)."""
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock, or refuse at once; see the class."""
        if fcntl is None:
            self._unsupported("this platform has no flock")
            return self
        while True:
            try:
                fd, created = _open_or_create(self.path)
            except OSError as err:
                folder = os.path.dirname(os.path.abspath(self.path))
                if not os.path.isdir(folder):
                    raise OutputPathError(
                        f"output folder does not exist: {folder}; create it first"
                    ) from err
                raise OutputPathError(
                    f"cannot create {self.path}: {err.strerror}; check that the output "
                    "folder is writable"
                ) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = _refusal(self.output, fd)
                os.close(fd)
                raise error from None
            except OSError as err:
                os.close(fd)
                if err.errno not in _UNSUPPORTED:
                    raise OutputPathError(
                        f"cannot lock {self.path}: {err.strerror}; check the output folder"
                    ) from err
                if created:
                    # No run can hold a lock here: the file would only name one that did not.
                    _unlink(self.path)
                self._unsupported(err.strerror)
                return self
            # The holder before us unlinks the file while it still holds the lock: if we
            # opened the file before that and locked it after, our lock is on a file no
            # longer at the path, and a third run could lock a new one. Lock again then.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = {
            "pid": os.getpid(),
            "host": _host_name(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only unnamed
        return self

    def _unsupported(self, why: str) -> None:
        logger.warning(
            "mpraster: cannot lock %s (%s); running without the one-run-per-output lock: "
            "make sure no other run writes %s",
            self.path,
            why,
            self.output,
        )

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order, see `acquire`)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
