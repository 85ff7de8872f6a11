"""Progress sinks the engine reports to, and the stats object every run returns.

The engine only calls ``start``, ``advance`` and ``close`` on a sink; what a sink shows
(a tqdm bar, plain log lines, nothing) never changes the result.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

from mpraster.errors import OptionError

PROGRESS_KINDS = ("auto", "bar", "log", "json", "none")


@dataclass
class RunStats:
    """The figures of one run: counts, bytes and where the time went (seconds).

    ``read_seconds`` and ``compute_seconds`` are summed over all readers and workers, so
    with several workers they can exceed ``wall_seconds``; ``write_seconds`` and
    ``wait_seconds`` are the main process's own (time writing, time blocked on workers).
    """

    windows: int = 0
    windows_resumed: int = 0
    pixels: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    wall_seconds: float = 0.0
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    wait_seconds: float = 0.0
    mode: str = ""
    io: str = ""
    jobs: int = 0
    kernel: str = ""
    compression: str = ""  # the output's codec, "" for none

    @property
    def mpix_per_second(self) -> float:
        return self.pixels / 1e6 / self.wall_seconds if self.wall_seconds else 0.0

    def summary(self) -> str:
        """One line: windows, MPix, seconds, MPix/s, and how it ran."""
        return (
            f"{self.windows} windows, {self.pixels / 1e6:.2f} MPix in {self.wall_seconds:.2f} s "
            f"({self.mpix_per_second:.2f} MPix/s; {self.kernel}, {self.mode}, io={self.io}, "
            f"-j {self.jobs}; read {self.read_seconds:.2f} s, compute "
            f"{self.compute_seconds:.2f} s, write {self.write_seconds:.2f} s, wait "
            f"{self.wait_seconds:.2f} s)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "mpix_per_second": self.mpix_per_second,
            "windows_per_second": self.windows_per_second,
            "bound": self.diagnosis()[0],
        }

    @property
    def windows_per_second(self) -> float:
        return self.windows / self.wall_seconds if self.wall_seconds else 0.0

    def diagnosis(self) -> tuple[str, str]:
        """What bounds the run, from the timers: (kind, one line of advice).

        The main process writes (and, with ``io="main"``, reads); workers read (with
        ``io="workers"``) and compute. Whichever side was busy for most of the wall time
        is the bound: ``writer`` or ``reader`` (the main process, by its larger part),
        ``compute`` or ``read`` (worker time, in kernels or in reading), else ``overhead``.
        """
        wall = self.wall_seconds or 1e-9
        main_read = self.read_seconds if self.io == "main" else 0.0
        worker_read = self.read_seconds - main_read
        worker_capacity = wall * max(self.jobs, 1)
        # The main process reads (io=main) and writes on one thread: its busy time is the
        # sum, and it bounds the run long before either part alone reaches the wall time.
        shares = {
            "main": (main_read + self.write_seconds) / wall,
            "compute": self.compute_seconds / worker_capacity,
            "read": worker_read / worker_capacity,
        }
        kind, share = max(shares.items(), key=lambda item: item[1])
        percent = f"{100 * share:.0f}%"
        if share < 0.5:
            return "overhead", (
                f"no stage is busy for more than half the time (largest: {kind} {percent}); "
                "the run is short or bound by start-up and hand-offs: try larger --block-size"
            )
        if kind == "main":
            kind = "writer" if self.write_seconds >= main_read else "reader"
        parts = f"writing {100 * self.write_seconds / wall:.0f}%" + (
            f", reading {100 * main_read / wall:.0f}%" if self.io == "main" else ""
        )
        if self.compression:
            help_writer = (
                f"try a faster codec than {self.compression} (--co COMPRESS=ZSTD or LZW) or "
                "none, --co NUM_THREADS=ALL_CPUS"
            )
        else:
            help_writer = "the output is uncompressed: faster storage is what helps"
        advice = {
            "writer": f"writer-bound: the main process was busy {percent} of wall time "
            f"({parts}); {help_writer}"
            + (", and --io workers to read in the workers" if self.io == "main" else ""),
            "reader": f"reader-bound: the main process was busy {percent} of wall time "
            f"({parts}); try --io workers to read and decode in parallel",
            "compute": f"compute-bound: kernels kept the workers {percent} busy; more -j "
            "(cores) or a faster kernel is what helps",
            "read": f"read-bound: workers spent {percent} of their time reading; faster "
            "storage or an input codec that decodes faster helps",
        }
        return kind, advice[kind]

    def report(self) -> str:
        """A few lines: where the time went and what bounds the run."""
        wall = self.wall_seconds or 1e-9
        readers = "main process" if self.io == "main" else "workers, summed"
        busy = 100 * self.compute_seconds / (wall * max(self.jobs, 1))
        return "\n".join(
            [
                f"wall {self.wall_seconds:.2f} s, {self.windows_per_second:.1f} windows/s, "
                f"{self.mpix_per_second:.2f} MPix/s, {self.bytes_read / 2**20:.1f} MiB read, "
                f"{self.bytes_written / 2**20:.1f} MiB written",
                f"read    {self.read_seconds:8.2f} s  ({readers})",
                f"compute {self.compute_seconds:8.2f} s  (workers, summed; {busy:.0f}% of "
                f"{self.jobs} workers)",
                f"write   {self.write_seconds:8.2f} s  (main process, "
                f"{100 * self.write_seconds / wall:.0f}% of wall)",
                f"wait    {self.wait_seconds:8.2f} s  (main process waiting on workers)",
                self.diagnosis()[1],
            ]
        )


class ProgressSink(Protocol):
    """What the engine reports to."""

    def start(self, windows: int, pixels: int) -> None: ...

    def advance(self, windows: int, pixels: int) -> None: ...

    def close(self) -> None:
        """The run ended, finished or not."""

    def finish(self, stats: RunStats) -> None:
        """The run finished; these are its figures."""


class NullProgress:
    """Shows nothing; the base of the other sinks."""

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
        self._bar = None
        self._rate = _Rate()

    def start(self, windows: int, pixels: int) -> None:
        from tqdm.auto import tqdm  # only runs with a bar pay for importing tqdm

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
        self._rate = _Rate()
        self._last = 0.0

    def start(self, windows: int, pixels: int) -> None:
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
    carries ``event`` and ``time`` (Unix seconds).
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._rate = _Rate()
        self._last = 0.0

    def start(self, windows: int, pixels: int) -> None:
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
