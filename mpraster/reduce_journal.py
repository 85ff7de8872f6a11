"""The journal of a reduction: how far each pass got, and its partial so far.

Partials are merged in plan order by a fixed tree (`mpraster.fold`), so the state of a
pass after its first ``n`` windows is a few partials (the tree's open nodes, at most one
per level): the journal keeps those (not one partial per window), and a resumed pass
merges window ``n`` onwards into them — the same merges in the same order as an
uninterrupted run, hence the same bits. Finished passes stay in the journal until the
whole job is done, so a run stopped in its third pass does not redo the first two. The
journal is rewritten whole (a file beside it, renamed into place), so it is never torn.

The same file, finished, is what a ``stats --shard`` run leaves for ``mpraster merge``
(`mpraster.stats_shards`): its first pass over the shard's windows, and ``about``, what
the merge needs to know of the job.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Sequence
from typing import Any

from mpraster import __version__
from mpraster.errors import ResumeError, UnfinishedRunError
from mpraster.resume import fingerprint, input_identity

# Seconds between journal writes while a pass runs (and always when it ends or stops).
CHECKPOINT_SECONDS = 5.0
# How the journal's partials are kept: the open nodes of `mpraster.fold`'s tree.
FORMAT = "tree-1"


def reduction_key(reduction: Any) -> str:
    """What identifies a pass: its reduction, parameters included."""
    return hashlib.sha256(pickle.dumps(reduction, protocol=4)).hexdigest()


def job_fingerprint(inputs: Sequence[str], description: dict[str, Any]) -> str:
    """What makes two runs the same job: the inputs as they are now, and ``description``."""
    return fingerprint(
        {
            "inputs": [input_identity(p) for p in inputs],
            **description,
            "version": __version__,
            "format": FORMAT,
        }
    )


def read_journal_file(path: str) -> tuple[str, dict[str, tuple[int, Any]], dict[str, Any]]:
    """A journal (or a shard's file) as saved: its fingerprint, passes and ``about``.

    Raises
    ------
    ResumeError
        If the file cannot be read or is not a journal.
    """
    try:
        with open(path, "rb") as fh:
            found, passes, about = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ResumeError(f"cannot read the stats journal {path}: {err}") from err
    return found, passes, about


class ReductionJournal:
    """The journal at ``path`` of the job ``description`` (inputs, request, block size).

    Raises
    ------
    UnfinishedRunError
        If a journal of an interrupted run is there and ``resume`` was not asked for.
    ResumeError
        If ``resume`` was asked for and the journal there is another job's, or unreadable.
    """

    def __init__(
        self,
        path: str,
        inputs: Sequence[str],
        description: dict[str, Any],
        resume: bool,
        about: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.fingerprint = job_fingerprint(inputs, description)
        self.about = about or {}
        self.passes: dict[str, tuple[int, Any]] = {}
        self._saved = time.monotonic()
        if os.path.exists(path):
            if not resume:
                raise UnfinishedRunError(
                    f"an interrupted stats run left its journal {path}: pass --resume to "
                    "finish it, or delete the journal to start again"
                )
            self._load()

    def _load(self) -> None:
        found, passes, _ = read_journal_file(self.path)
        if found != self.fingerprint:
            raise ResumeError(
                f"the stats journal {self.path} is of another job (other inputs, options or "
                "mpraster version): delete it to start again"
            )
        self.passes = passes

    def resumed(self, key: str) -> tuple[int, Any] | None:
        """How many windows of pass ``key`` are done, and their nodes; None if none."""
        return self.passes.get(key)

    def progress(self, key: str, done: int, nodes: Any, force: bool = False) -> None:
        """Record pass ``key``'s first ``done`` windows (the nodes of `mpraster.fold` they
        make); written every CHECKPOINT_SECONDS."""
        self.passes[key] = (done, nodes)
        if force or time.monotonic() - self._saved >= CHECKPOINT_SECONDS:
            self.save()

    def save(self, path: str | None = None) -> None:
        """Write the journal whole to its path (or ``path``): a file beside it, fsynced,
        renamed into place, so that nothing half-written is ever at the path."""
        path = path or self.path
        partial = f"{path}.partial"
        with open(partial, "wb") as fh:
            pickle.dump((self.fingerprint, self.passes, self.about), fh, protocol=4)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
        self._saved = time.monotonic()

    def remove(self) -> None:
        """The job is done: its journal goes."""
        if os.path.exists(self.path):
            os.unlink(self.path)
