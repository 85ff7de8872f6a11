"""Running a reduction: the engine of `mpraster.run`, folding partials instead of writing.

::

    plan_reduction ─► ReductionJob ─► execute_reduction:
        --io main:    BlockReader ─► values + validity ─► Backend.submit ─► update()
        --io workers:                (none) ─►            (own BlockReader) │
        schedule(): at most jobs * prefetch windows in flight ◄─ partial ◄──┘
            reorder buffer (plan order) ─► PlanFold (a fixed merge tree) ─► finish

The same `mpraster.modes` back ends and the same `mpraster.schedule.schedule` loop as a
map, so threads, processes and MPI, ``--io``, progress, ``--stats`` timers and stops
behave the same. Partials are pickled back (they are small); process workers still take
their inputs through shared memory with ``--io main``. There is no output, hence no lock
(a journal, if given, is the caller's), and workers read by default (``--io workers``):
the main process only merges, and decoding, most of a reduction's time, runs on every
worker. The windows are cut from the grid, the block size and the first input's blocks
(whole strips, not parts of them: see `mpraster.windows.plan_block_windows`), never from
``-j``, and partials are merged in plan order by a tree fixed by the plan
(`mpraster.fold`): a result is the same bits whatever the mode, ``--io``, ``-j`` and the
shards.
"""

from __future__ import annotations

import dataclasses
import signal
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpraster import budget
from mpraster.block_reader import BlockReader
from mpraster.budget import main_gdal_env
from mpraster.errors import Interrupted
from mpraster.fold import PlanFold
from mpraster.inputs import InputInfo, InputSpec, gdal_env, inspect_inputs, network_config
from mpraster.job import InputsArg, input_specs
from mpraster.kernels import check_importable
from mpraster.modes import Backend, make_backend
from mpraster.options import RunOptions
from mpraster.progress import NullProgress, ProgressSink, make_progress
from mpraster.reduce_journal import ReductionJournal, reduction_key
from mpraster.reductions import Reduction
from mpraster.schedule import StopSignal, schedule
from mpraster.stats import RunStats
from mpraster.windows import WindowTask, plan_block_windows, plan_windows
from mpraster.worker import WindowResult, WorkerSpec

# Windows a reduction's plan aims for, whatever -j: a plan cut for the worker count would
# make the partials, and so the last bits of a float sum, depend on -j.
_REDUCTION_TASKS = 64


@dataclass(frozen=True)
class ReductionJob(budget.CacheBudget):
    """A checked and planned reduction: the inputs, the windows and how to run them."""

    inputs: tuple[InputSpec, ...]
    infos: tuple[InputInfo, ...]
    reduction: Reduction
    mode: str
    io: str
    why: str
    jobs: int
    prefetch: int
    block_size: int
    tasks: tuple[WindowTask, ...]
    window_timeout: float | None = None
    gdal_config: dict[str, str] = dataclasses.field(default_factory=dict)
    # No output tiles: what `mpraster.budget` reads of a map's job.
    halo = 0
    tile_bytes = 0

    def window_bytes(self, inputs: bool = True) -> tuple[int, int]:
        """Bytes of the largest window's values and validity (slot slack included); no output."""
        if not inputs:
            return 0, 0
        pixels = max(int(t.read.height) * int(t.read.width) for t in self.tasks)
        per_pixel = sum(i.count * (np.dtype(i.dtype).itemsize + 1) for i in self.infos)
        return per_pixel * pixels + 128 * len(self.infos), 0


def plan_reduction(
    inputs: InputsArg, reduction: Reduction, options: RunOptions | None = None, **changes: Any
) -> ReductionJob:
    """Check the inputs (found, rasters, bands, one grid) and plan the windows.

    Takes `RunOptions` (or its fields as keywords); the map's options (``dtype``,
    ``creation_options``, ``cog`` ...) are ignored.

    Raises
    ------
    MprasterError
        The precise subclass a run would raise for the same inputs and options.
    """
    options = RunOptions.of(options, **changes)
    specs = input_specs(inputs, options.bidx)
    mode, io, why = options.placement(reduction)
    if options.io is None and io == "main":
        # Nothing to write: the main process only merges partials, while reading would
        # make it decode every window alone. Workers decode theirs in parallel.
        io, why = "workers", f"{why}; workers read, as a reduction writes nothing"
    ref = getattr(reduction, "ref", f"{type(reduction).__module__}:{type(reduction).__qualname__}")
    check_importable("reduction", reduction.name, ref, mode)
    with gdal_env(**options.gdal_config):
        infos = inspect_inputs(specs)
    tasks = _plan(infos[0], options.block_size)
    return ReductionJob(
        inputs=tuple(specs),
        infos=tuple(infos),
        reduction=reduction,
        mode=mode,
        io=io,
        why=why,
        jobs=options.worker_count,
        prefetch=options.prefetch,
        block_size=options.block_size,
        tasks=tuple(tasks),
        window_timeout=options.window_timeout,
        gdal_config=dict(options.gdal_config),
    )


def _plan(info: InputInfo, block_size: int) -> list[WindowTask]:
    """The windows of a reduction: the square grid of ``block_size``, unless it cuts
    through the first input's blocks (strips, tiles that do not divide it) and there are
    enough blocks for windows of whole ones (`mpraster.windows.plan_block_windows`)."""
    rows, cols = info.block_shape
    tasks = None
    if block_size % rows or block_size % cols:
        tasks = plan_block_windows(
            info.height, info.width, block_size, info.block_shape, _REDUCTION_TASKS
        )
    return tasks or plan_windows(info.height, info.width, block_size, 0, _REDUCTION_TASKS)


def reduce(
    inputs: InputsArg,
    reduction: Reduction,
    options: RunOptions | None = None,
    *,
    progress: ProgressSink | str | None = None,
    stop: StopSignal | None = None,
    **changes: Any,
) -> Any:
    """Run ``reduction`` over ``inputs`` window by window and return its result.

    Takes the arguments of `mpraster.run` but the output and kernel (see `plan_reduction`).
    """
    if isinstance(progress, str):
        progress = make_progress(progress)
    job = plan_reduction(inputs, reduction, options, **changes)
    return execute_reduction(job, progress, stop)[0]


def _worker_spec(job: ReductionJob) -> WorkerSpec:
    return WorkerSpec(
        run_id=uuid.uuid4().hex[:8],
        kernel_ref="",
        params={},
        inputs=job.inputs,
        infos=job.infos,
        fill="nodata",
        halo=0,
        in_process=job.mode in ("processes", "mpi"),
        gdal_cache_bytes=job.worker_cache_bytes,
        gdal_config=tuple({**network_config(), **job.gdal_config}.items()),
        reduction=job.reduction,
    )


def execute_reduction(
    job: ReductionJob,
    progress: ProgressSink | None = None,
    stop: StopSignal | None = None,
    executor: Executor | None = None,
    journal: ReductionJournal | None = None,
) -> tuple[Any, RunStats]:
    """Run a planned `ReductionJob`; returns its result and the run's figures.

    ``executor`` as for `mpraster.execute` (MPI mode's, left running). With a
    ``journal``, the pass starts from where it says this reduction got, and records how
    far it gets (see `mpraster.reduce_journal`).

    Raises
    ------
    Interrupted
        Once ``stop`` is set, after the windows in flight are done; no result.
    """
    progress = progress or NullProgress()
    stats = RunStats(mode=job.mode, io=job.io, jobs=job.jobs, kernel=job.reduction.name)
    wall_start = time.perf_counter()
    finished = False
    reader = backend = None
    with main_gdal_env(job.main_cache_bytes, job.gdal_config):
        try:
            if job.io == "main":
                reader = BlockReader(job.inputs, job.infos)
            backend = make_backend(job, _worker_spec(job), executor)
            partial = _fold(job, backend, reader, progress, stop, stats, journal)
            finished = True
        except (Interrupted, KeyboardInterrupt) as err:
            signum = getattr(err, "signum", signal.SIGINT)
            then = "run the same command with --resume to finish" if journal else "run it again"
            raise Interrupted(
                f"stopped by {signal.Signals(signum).name} after {stats.windows} of "
                f"{len(job.tasks)} windows; no figures were given: {then}",
                signum,
            ) from err
        finally:
            if backend is not None:
                backend.close(finished)
            if reader is not None:
                reader.close()
            progress.close()
    result = job.reduction.finish(partial)
    stats.wall_seconds = time.perf_counter() - wall_start
    progress.finish(stats)
    return result, stats


def _fold(
    job: ReductionJob,
    backend: Backend,
    reader: BlockReader | None,
    progress: ProgressSink,
    stop: StopSignal | None,
    stats: RunStats,
    journal: ReductionJournal | None = None,
) -> Any:
    """Schedule every window (but those the journal has) and merge the partials in plan
    order by the plan's tree (`mpraster.fold`); the journal learns how far it got."""
    reduction = job.reduction
    key = reduction_key(reduction) if journal is not None else ""
    done, nodes = (journal and journal.resumed(key)) or (0, ())
    fold = PlanFold(reduction.merge, nodes)
    stats.windows_resumed += done
    merged = [done]

    def submit(task: WindowTask) -> Future:
        if reader is None:
            return backend.submit(task, None)
        start = time.perf_counter()
        arrays = reader.read(task)
        stats.read_seconds += time.perf_counter() - start
        stats.bytes_read += sum(a.nbytes for a in arrays)
        return backend.submit(task, arrays)

    def merge(task: WindowTask, result: WindowResult) -> None:
        start = time.perf_counter()
        fold.add(task.index, result.data)
        merged[0] += 1
        if result.slot is not None:
            backend.release(result)
        if journal is not None:
            journal.progress(key, merged[0], fold.nodes)
        stats.write_seconds += time.perf_counter() - start
        stats.windows += 1
        stats.pixels += task.pixels
        stats.read_seconds += result.read_seconds
        stats.compute_seconds += result.compute_seconds
        stats.bytes_read += result.bytes_read
        progress.advance(1, task.pixels)

    tasks = job.tasks[done:]
    progress.start(len(tasks), sum(t.pixels for t in tasks))
    try:
        schedule(tasks, submit, merge, job.in_flight, stats, stop, job.window_timeout)
    finally:
        # After a stop or a failure too: what was merged need not be merged again.
        if journal is not None and key in journal.passes:
            journal.save()
    return fold.result(reduction.start())
