"""The journal of a reduction: how far each pass got, and its partial so far.

Partials are merged in plan order, so the state of a pass after its first ``n`` windows
is one partial: the journal keeps that (not one partial per window), and a resumed pass
merges window ``n`` onwards into it — the same merges in the same order as an
uninterrupted run, hence the same bits. Finished passes stay in the journal until the
whole job is done, so a run stopped in its third pass does not redo the first two. The
journal is rewritten whole (a file beside it, renamed into place), so it is never torn.
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


def reduction_key(reduction: Any) -> str:
    """What identifies a pass: its reduction, parameters included."""
    return hashlib.sha256(pickle.dumps(reduction, protocol=4)).hexdigest()


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
        self, path: str, inputs: Sequence[str], description: dict[str, Any], resume: bool
    ) -> None:
        self.path = path
        self.fingerprint = fingerprint(
            {
                "inputs": [input_identity(p) for p in inputs],
                **description,
                "version": __version__,
            }
        )
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
        try:
            with open(self.path, "rb") as fh:
                found, passes = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ResumeError(f"cannot read the stats journal {self.path}: {err}") from err
        if found != self.fingerprint:
            raise ResumeError(
                f"the stats journal {self.path} is of another job (other inputs, options or "
                "mpraster version): delete it to start again"
            )
        self.passes = passes

    def resumed(self, key: str) -> tuple[int, Any] | None:
        """How many windows of pass ``key`` are done, and their partial; None if none."""
        return self.passes.get(key)

    def progress(self, key: str, done: int, partial: Any, force: bool = False) -> None:
        """Record pass ``key``'s first ``done`` windows; written every CHECKPOINT_SECONDS."""
        self.passes[key] = (done, partial)
        if force or time.monotonic() - self._saved >= CHECKPOINT_SECONDS:
            self.save()

    def save(self) -> None:
        partial = f"{self.path}.partial"
        with open(partial, "wb") as fh:
            pickle.dump((self.fingerprint, self.passes), fh, protocol=4)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, self.path)
        self._saved = time.monotonic()

    def remove(self) -> None:
        """The job is done: its journal goes."""
        if os.path.exists(self.path):
            os.unlink(self.path)
