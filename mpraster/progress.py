"""Progress sinks a run reports to.

A run only calls ``start``, ``advance``, ``close`` and ``finish`` on a sink; what a sink
shows (a tqdm bar, plain log lines, JSON events, nothing) never changes the result. A job
of several passes over the raster (``mpraster stats``) names each before its ``start``
with ``stage``, where a sink has it, so that every pass shows as a labelled bar or lines.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO

from mpraster.errors import OptionError
from mpraster.stats import RunStats

PROGRESS_KINDS = ("auto", "bar", "log", "json", "none")


class ProgressSink(Protocol):
    """What a run reports its progress to."""

    def start(self, windows: int, pixels: int) -> None: ...

    def advance(self, windows: int, pixels: int) -> None: ...

    def close(self) -> None:
        """The run ended, finished or not."""

    def finish(self, stats: RunStats) -> None:
        """The run finished; these are its figures."""


class NullProgress:
    """Shows nothing; the base of the other sinks."""

    def stage(self, name: str) -> None:
        """The next ``start`` begins pass ``name`` of a job of several passes (optional)."""

    def start(self, windows: int, pixels: int) -> None:
        pass

    def advance(self, windows: int, pixels: int) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(self, stats: RunStats) -> None:
        pass


class _Rate:
    """Counts done against total and derives rate and ETA from a monotonic clock."""

    def __init__(self) -> None:
        self.total_windows = self.total_pixels = self.windows = self.pixels = 0
        self.started = time.perf_counter()

    def start(self, windows: int, pixels: int) -> None:
        self.total_windows, self.total_pixels = windows, pixels
        self.started = time.perf_counter()

    def advance(self, windows: int, pixels: int) -> None:
        self.windows += windows
        self.pixels += pixels

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def pixels_per_second(self) -> float:
        elapsed = self.elapsed
        return self.pixels / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.pixels_per_second
        return (self.total_pixels - self.pixels) / rate if rate > 0 else None

    @property
    def done(self) -> bool:
        return self.windows >= self.total_windows


class BarProgress(NullProgress):
    """A tqdm bar of windows with the pixel rate; tqdm's ``TQDM_*`` variables apply."""

    def __init__(self, stream: TextIO | None = None, description: str = "mpraster") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.description = description
        self._base = description
        self._bar = None
        self._rate = _Rate()

    def stage(self, name: str) -> None:
        self.description = f"{self._base} {name}"

    def start(self, windows: int, pixels: int) -> None:
        from tqdm.auto import tqdm  # only runs with a bar pay for importing tqdm

        self._rate = _Rate()
        self._rate.start(windows, pixels)
        self._bar = tqdm(
            total=windows, unit="win", desc=self.description, file=self.stream, leave=True
        )

    def advance(self, windows: int, pixels: int) -> None:
        self._rate.advance(windows, pixels)
        self._bar.set_postfix_str(f"{self._rate.pixels_per_second / 1e6:.2f} MPix/s", refresh=False)
        self._bar.update(windows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class LogProgress(NullProgress):
    """Plain lines for batch logs: one at start, one every ``interval`` seconds, one at end."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = 10.0, prefix: str = "mpraster"
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.prefix = prefix
        self._base = prefix
        self._rate = _Rate()
        self._last = 0.0

    def stage(self, name: str) -> None:
        self.prefix = f"{self._base}: {name}"

    def start(self, windows: int, pixels: int) -> None:
        self._rate = _Rate()
        self._rate.start(windows, pixels)
        self._last = time.perf_counter()
        self._emit(f"start: {windows} windows, {pixels / 1e6:.2f} MPix")

    def advance(self, windows: int, pixels: int) -> None:
        self._rate.advance(windows, pixels)
        now = time.perf_counter()
        if now - self._last >= self.interval or self._rate.done:
            self._last = now
            self._emit(self._line())

    def _line(self) -> str:
        r = self._rate
        share = 100.0 * r.windows / r.total_windows if r.total_windows else 100.0
        eta = _clock(r.eta) if r.eta is not None else "?"
        return (
            f"{r.windows}/{r.total_windows} windows ({share:.0f}%), "
            f"{r.pixels_per_second / 1e6:.2f} MPix/s, elapsed {_clock(r.elapsed)}, ETA {eta}"
        )

    def _emit(self, text: str) -> None:
        print(f"{self.prefix}: {text}", file=self.stream, flush=True)


class JsonProgress(NullProgress):
    """One JSON object per line, for dashboards and cluster monitoring.

    Events: ``start`` (windows, pixels), ``progress`` every ``interval`` seconds and at the
    last window (windows_done, windows_total, pixels_done, pixels_total, mpix_per_second,
    elapsed_seconds, eta_seconds), and ``end`` with the run's stats. Every object also
    carries ``event`` and ``time`` (Unix seconds), and in a job of several passes
    ``pass``, the pass it belongs to (``start`` and ``progress`` come once per pass).
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._rate = _Rate()
        self._last = 0.0
        self._stage: str | None = None

    def stage(self, name: str) -> None:
        self._stage = name

    def start(self, windows: int, pixels: int) -> None:
        self._rate = _Rate()
        self._rate.start(windows, pixels)
        self._last = time.perf_counter()
        self._emit("start", windows=windows, pixels=pixels)

    def advance(self, windows: int, pixels: int) -> None:
        self._rate.advance(windows, pixels)
        now = time.perf_counter()
        if now - self._last >= self.interval or self._rate.done:
            self._last = now
            r = self._rate
            self._emit(
                "progress",
                windows_done=r.windows,
                windows_total=r.total_windows,
                pixels_done=r.pixels,
                pixels_total=r.total_pixels,
                mpix_per_second=round(r.pixels_per_second / 1e6, 4),
                elapsed_seconds=round(r.elapsed, 3),
                eta_seconds=None if r.eta is None else round(r.eta, 3),
            )

    def finish(self, stats: RunStats) -> None:
        self._emit("end", stats=stats.as_dict())

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        if self._stage is not None and event != "end":
            record["pass"] = self._stage
        print(json.dumps(record), file=self.stream, flush=True)


def make_progress(kind: str, stream: TextIO | None = None, interval: float = 10.0) -> ProgressSink:
    """The sink for ``--progress KIND``: ``auto`` is a bar on a terminal, log lines elsewhere.

    ``json`` writes one JSON object per line (see `JsonProgress`); ``none`` nothing.
    """
    if kind not in PROGRESS_KINDS:
        raise OptionError(f"unknown progress kind {kind!r}; use one of {', '.join(PROGRESS_KINDS)}")
    stream = stream if stream is not None else sys.stderr
    if kind == "auto":
        kind = "bar" if stream.isatty() else "log"
    if kind == "bar":
        return BarProgress(stream)
    if kind == "log":
        return LogProgress(stream, interval)
    if kind == "json":
        return JsonProgress(stream, interval)
    return NullProgress()
