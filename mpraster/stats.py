"""The figures every run returns: counts, bytes, where the time went, and what bounds it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# What adds up over the passes of a job (`RunStats.of_passes`).
_SUMMED = (
    "windows",
    "windows_resumed",
    "pixels",
    "bytes_read",
    "bytes_written",
    "read_seconds",
    "compute_seconds",
    "write_seconds",
    "wait_seconds",
)


@dataclass
class RunStats:
    """The figures of one run: counts, bytes and where the time went (seconds).

    ``read_seconds`` and ``compute_seconds`` are summed over all readers and workers, so
    with several workers they can exceed ``wall_seconds``; ``write_seconds`` is the
    writer's thread's, ``wait_seconds`` the main thread's (time blocked on workers).
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
    # The main process read the inputs in bands of whole rows for windows that share
    # blocks (`mpraster.budget.reads_in_bands`): each block decoded once, on GDAL's threads.
    bands_read: bool = False
    # A job of several passes over the raster (``mpraster stats``): each pass's figures.
    passes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of_passes(cls, passes: Sequence[tuple[str, RunStats]], wall_seconds: float) -> RunStats:
        """The figures of a job of several passes: each pass's counts and timers summed,
        how it ran from the first, and a line per pass in ``passes``."""
        first = passes[0][1]
        total = cls(mode=first.mode, io=first.io, jobs=first.jobs, kernel=first.kernel)
        for _, stats in passes:
            for name in _SUMMED:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        total.wall_seconds = wall_seconds
        total.passes = [
            {"pass": name, "wall_seconds": stats.wall_seconds}
            | {k: getattr(stats, k) for k in _SUMMED}
            for name, stats in passes
        ]
        return total

    @property
    def mpix_per_second(self) -> float:
        return self.pixels / 1e6 / self.wall_seconds if self.wall_seconds else 0.0

    def summary(self) -> str:
        """One line: windows, MPix, seconds, MPix/s, and how it ran."""
        passes = f" in {len(self.passes)} passes" if len(self.passes) > 1 else ""
        return (
            f"{self.windows} windows{passes}, {self.pixels / 1e6:.2f} MPix in "
            f"{self.wall_seconds:.2f} s "
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

        The main thread reads (with ``io="main"``) and the writer's thread writes, side by
        side; workers read (with ``io="workers"``) and compute. Whichever was busy for most
        of the wall time is the bound: ``writer``, ``reader`` (the main process's),
        ``compute`` or ``read`` (worker time, in kernels or in reading), else ``overhead``.
        """
        wall = self.wall_seconds or 1e-9
        main_read = self.read_seconds if self.io == "main" else 0.0
        worker_read = self.read_seconds - main_read
        worker_capacity = wall * max(self.jobs, 1)
        shares = {
            "writer": self.write_seconds / wall,
            "reader": main_read / wall,
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
        if self.compression:
            help_writer = (
                f"try a faster codec than {self.compression} (--co COMPRESS=ZSTD or LZW, or "
                "ZLEVEL=1) or none"
            )
            if self.jobs == 1:
                # The writer's pool encodes every tile of a lone worker's (mpraster.tiles).
                help_writer = f"more -j (each worker encodes its own tiles), or {help_writer}"
        else:
            help_writer = "the output is uncompressed: faster storage is what helps"
        advice = {
            "writer": f"writer-bound: the writer's thread was busy {percent} of wall time; "
            f"{help_writer}",
            "reader": f"reader-bound: the main process was reading {percent} of wall time; "
            + (
                "it decodes each block once for every worker, -j blocks at a time on GDAL's "
                "threads, where with --io workers each worker would decode again the blocks "
                "its windows share with their neighbours: more -j, or an input that decodes "
                "faster (ZSTD rather than DEFLATE or LZW, or none), is what helps"
                if self.bands_read
                else "try --io workers to read and decode in parallel"
            ),
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
                f"write   {self.write_seconds:8.2f} s  (the writer's thread, "
                f"{100 * self.write_seconds / wall:.0f}% of wall)",
                f"wait    {self.wait_seconds:8.2f} s  (main process waiting on workers)",
                *(
                    f"{p['pass']}: {p['windows']} windows in {p['wall_seconds']:.2f} s (read "
                    f"{p['read_seconds']:.2f} s, compute {p['compute_seconds']:.2f} s, wait "
                    f"{p['wait_seconds']:.2f} s)"
                    for p in self.passes
                ),
                self.diagnosis()[1],
            ]
        )
