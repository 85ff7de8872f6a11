"""Progress sinks the engine reports to, and the stats object every run returns.

The engine only calls ``start``, ``advance`` and ``close`` on a sink; what a sink shows
(a tqdm bar, plain log lines, nothing) never changes the result.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

PROGRESS_KINDS = ("auto", "bar", "log", "none")


@dataclass
class RunStats:
    """The figures of one run: counts, bytes and where the time went (seconds).

    ``read_seconds`` and ``compute_seconds`` are summed over all readers and workers, so
    with several workers they can exceed ``wall_seconds``; ``write_seconds`` and
    ``wait_seconds`` are the main process's own (time writing, time blocked on workers).
    """

    windows: int = 0
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
        return {**asdict(self), "mpix_per_second": self.mpix_per_second}


class ProgressSink(Protocol):
    """What the engine reports to."""

    def start(self, windows: int, pixels: int) -> None: ...

    def advance(self, windows: int, pixels: int) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Shows nothing."""

    def start(self, windows: int, pixels: int) -> None:
        pass

    def advance(self, windows: int, pixels: int) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """A tqdm bar of windows with the pixel rate; tqdm's ``TQDM_*`` variables apply."""

    def __init__(self, stream: TextIO | None = None, description: str = "mpraster") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.description = description
        self._bar = None
        self._pixels = 0
        self._start = 0.0

    def start(self, windows: int, pixels: int) -> None:
        from tqdm.auto import tqdm

        self._start = time.perf_counter()
        self._bar = tqdm(
            total=windows, unit="win", desc=self.description, file=self.stream, leave=True
        )

    def advance(self, windows: int, pixels: int) -> None:
        self._pixels += pixels
        elapsed = time.perf_counter() - self._start
        rate = self._pixels / 1e6 / elapsed if elapsed > 0 else 0.0
        self._bar.set_postfix_str(f"{rate:.2f} MPix/s", refresh=False)
        self._bar.update(windows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class LogProgress:
    """Plain lines for batch logs: one at start, one every ``interval`` seconds, one at end."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = 10.0, prefix: str = "mpraster"
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.prefix = prefix
        self._total_windows = 0
        self._total_pixels = 0
        self._windows = 0
        self._pixels = 0
        self._start = 0.0
        self._last = 0.0

    def start(self, windows: int, pixels: int) -> None:
        self._total_windows, self._total_pixels = windows, pixels
        self._start = self._last = time.perf_counter()
        self._emit(f"start: {windows} windows, {pixels / 1e6:.2f} MPix")

    def advance(self, windows: int, pixels: int) -> None:
        self._windows += windows
        self._pixels += pixels
        now = time.perf_counter()
        if now - self._last >= self.interval or self._windows == self._total_windows:
            self._last = now
            self._emit(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        rate = self._pixels / elapsed if elapsed > 0 else 0.0
        left = self._total_pixels - self._pixels
        eta = _clock(left / rate) if rate > 0 else "?"
        share = 100.0 * self._windows / self._total_windows if self._total_windows else 100.0
        return (
            f"{self._windows}/{self._total_windows} windows ({share:.0f}%), "
            f"{rate / 1e6:.2f} MPix/s, elapsed {_clock(elapsed)}, ETA {eta}"
        )

    def _emit(self, text: str) -> None:
        print(f"{self.prefix}: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


def make_progress(kind: str, stream: TextIO | None = None, interval: float = 10.0) -> ProgressSink:
    """The sink for ``--progress KIND``: ``auto`` is a bar on a terminal, log lines elsewhere."""
    stream = stream if stream is not None else sys.stderr
    if kind == "auto":
        kind = "bar" if stream.isatty() else "log"
    if kind == "bar":
        return BarProgress(stream)
    if kind == "log":
        return LogProgress(stream, interval)
    return NullProgress()
