"""Running a job: the pipeline, as a summary.

::

    plan_job ─► Job ─► execute:
                        lock the output
        main process    │                                    workers (modes/)
        ─────────────   ▼                                    ────────────────────
        journaled?  ─► ResumeSource ──────────────┐
        --io main:  ─► WindowReader ─► arrays ─► Backend.submit ─► [read] ─► kernel
        --io workers:                  (none) ─►                    (own handles)
                                                  │                      │
        schedule(): at most jobs * prefetch windows in flight ◄─ WindowResult ◄┘
            reorder buffer (plan order) ─► TileAssembly ─► OutputWriter ─► journal
                                                     (OUTPUT.partial, checkpoints)
        commit: close, check, rename into place; unlock

Threads, processes and MPI differ only in the `mpraster.modes.Backend` built for the job
(who computes, and how arrays travel) and in who reads (``io``). One writer writes every
result in plan order, so the output is the same bytes whatever the mode, ``io`` and ``-j``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from mpraster.assembly import TileAssembly, WholeTile
from mpraster.budget import main_gdal_env, reads_in_bands
from mpraster.errors import Interrupted, MprasterError, WorkerDied
from mpraster.inputs import WindowReader, network_config
from mpraster.job import InputsArg, Job, OutputPlan, plan_job
from mpraster.kernels import Kernel, as_kernel, main_script
from mpraster.lock import OutputLock
from mpraster.modes import Backend, make_backend
from mpraster.options import RunOptions
from mpraster.output import Checkpoints, OutputWriter
from mpraster.progress import NullProgress, ProgressSink, make_progress
from mpraster.resume import ResumeSource, check_previous_run_unchanged
from mpraster.schedule import StopSignal, schedule
from mpraster.stats import RunStats
from mpraster.tiles import tile_grid, tile_options
from mpraster.windows import WindowTask
from mpraster.worker import WindowResult, WorkerOutput, WorkerSpec
from mpraster.write_thread import WriteThread


def run(
    inputs: InputsArg,
    output: str | os.PathLike,
    kernel: str | Kernel | Callable[..., Any],
    options: RunOptions | None = None,
    *,
    progress: ProgressSink | str | None = None,
    stop: StopSignal | None = None,
    **changes: Any,
) -> RunStats:
    """Run ``kernel`` over ``inputs`` window by window and write ``output``.

    Parameters
    ----------
    inputs : path, InputSpec, or a sequence of them
        The input rasters; the kernel receives one (bands, rows, cols) array per input.
        ``PATH:BANDS`` (``stack.tif:4,3``, ``B5.tif:1``) reads only those bands.
    output : path
        The GeoTIFF to write; it appears only once complete.
    kernel : str, Kernel or function
        A built-in or plugin kernel name, ``package.module:function``,
        ``path/to/file.py:function``, or the function itself (declared with
        `mpraster.kernel`, or plain: then it holds the GIL and keeps its input's type).
    options : RunOptions, optional
        How to run it; or give its fields as keywords (``jobs=2, mode="threads"``), which
        also change those of ``options``. See `RunOptions` for each.
    progress : ProgressSink or str, optional
        Where to report progress: a sink, or ``"auto"``, ``"bar"``, ``"log"``, ``"json"``
        or ``"none"`` as the CLI's ``--progress`` (on stderr); default none.
    stop : StopSignal, optional
        Set it (from a signal handler, another thread) to stop the run cleanly; the CLI
        sets it on SIGINT and SIGTERM.

    Returns
    -------
    RunStats

    Raises
    ------
    MprasterError
        A precise subclass for every bad input, failed window or dead worker; the target
        is untouched and no partial file is left.
    """
    wall_start = time.perf_counter()
    if isinstance(progress, str):
        progress = make_progress(progress)
    options = RunOptions.of(options, **changes)
    job = plan_job(inputs, output, start_workers_early(kernel, options), options)
    try:
        stats = execute(job, progress, stop)
    except WorkerDied as err:
        script = main_script()
        if job.mode != "processes" or script is None:
            raise
        # The classic cause in a script: worker processes re-run the main script, and an
        # unguarded call to run() there makes each worker die while it starts.
        raise WorkerDied(
            f"{err}. If {os.path.basename(script)} calls mpraster.run outside "
            '`if __name__ == "__main__":`, every worker re-runs it and dies: guard the call'
        ) from err
    stats.wall_seconds = time.perf_counter() - wall_start
    return stats


def start_workers_early(
    kernel: str | Kernel | Callable[..., Any], options: RunOptions
) -> str | Kernel | Callable[..., Any]:
    """Before a run is planned: in processes mode, start the forkserver that workers are
    forked from, so that it imports rasterio, NumPy and mpraster while the main process
    opens and checks the inputs (`plan_job`), not after.

    Returns the kernel as a `Kernel`, so that planning does not load it again; or as
    given if it cannot be found, for `plan_job` to report in its order.
    """
    try:
        resolved = as_kernel(kernel)
        mode = options.placement(resolved)[0]
    except MprasterError:
        return kernel
    if mode == "processes":
        from mpraster.modes.processes import start_forkserver

        start_forkserver()
    return resolved


def execute(
    job: Job,
    progress: ProgressSink | None = None,
    stop: StopSignal | None = None,
    executor: Executor | None = None,
) -> RunStats:
    """Run a planned `Job`; see `run`.

    The output's lock is held from before anything touches the partial, the journal or
    an interrupted run's leftovers until the output is in place and they are cleaned up.

    ``executor``, if given, is used instead of one made for the job's mode, and is left
    running (its owner shuts it down): MPI mode's, which every rank entered together.

    Raises
    ------
    OutputLockedError
        At once, if another run is writing the same output; nothing of it is touched.
    """
    with contextlib.ExitStack() as held:
        # In one order (sorted paths), so two runs sharing outputs never wait on each other.
        for path in sorted(out.path for out in job.outputs):
            held.enter_context(OutputLock(path))
        held.enter_context(main_gdal_env(job.main_cache_bytes, job.gdal_config))
        for out in job.outputs:
            check_previous_run_unchanged(out.path, out.resume_from, job.overwrite)
        return _run_pipeline(job, progress or NullProgress(), stop, executor)


def _worker_spec(job: Job) -> WorkerSpec:
    in_process = job.mode in ("processes", "mpi")
    return WorkerSpec(
        run_id=uuid.uuid4().hex[:8],
        kernel_ref=job.kernel.ref,
        params=job.params,
        inputs=job.inputs,
        infos=job.infos,
        fill=job.kernel.fill,
        halo=job.halo,
        outputs=tuple(_worker_output(job, out) for out in job.outputs),
        in_process=in_process,
        gdal_cache_bytes=job.worker_cache_bytes,
        # What GDAL is told in the main process, for worker processes and MPI ranks.
        gdal_config=tuple({**network_config(), **job.gdal_config}.items()),
        # Threads get the kernel itself; other processes import it by its ref.
        kernel=None if in_process else job.kernel,
    )


def _worker_output(job: Job, out: OutputPlan) -> WorkerOutput:
    """What a worker returns of ``out``; ``tiles``, for a placed output, how its tiles
    are encoded (the same bytes whoever encodes them)."""
    placed = job.placement_problem(out) is None
    return WorkerOutput(
        out.name,
        out.dtype.name,
        out.bands,
        out.validity,
        tile_options(out.profile) if placed else None,
        job.workers_encode(out),
    )


def _run_pipeline(
    job: Job, progress: ProgressSink, stop: StopSignal | None, executor: Executor | None
) -> RunStats:
    wall_start = time.perf_counter()
    stats = RunStats(
        mode=job.mode,
        io=job.io,
        jobs=job.jobs,
        kernel=job.kernel.name,
        compression=str(job.profile.get("compress") or "").upper(),
        bands_read=reads_in_bands(job),
    )
    finished = False
    resumed: list[ResumeSource] = []
    reader = backend = None
    try:
        for out in job.outputs:
            if out.resume_from is not None:
                resumed.append(
                    ResumeSource.take(
                        out.path,
                        out.resume_from,
                        job.tiles,
                        out.validity.writes_mask,
                        None if job.placement_problem(out) else tile_grid(out.profile),
                    )
                )
        if job.io == "main":
            # Where windows share blocks, bands of whole rows, -j blocks decoded at a time
            # on GDAL's threads (more would take the cores of the workers).
            reader = WindowReader(
                job.inputs,
                job.infos,
                job.kernel.fill,
                job.block_size if reads_in_bands(job) else None,
                job.jobs,
            )
        backend = make_backend(job, _worker_spec(job), executor)
        feeder = _Feeder(
            backend, reader, resumed if len(resumed) == len(job.outputs) else [], stats
        )
        _write_outputs(job, feeder, progress, stop, stats)
        finished = True
    except KeyboardInterrupt as err:
        raise Interrupted(
            f"interrupted after {stats.windows} of {len(job.tasks)} windows; run the same "
            "command with --resume to finish",
            signal.SIGINT,
        ) from err
    finally:
        if backend is not None:
            backend.close(finished)
        if reader is not None:
            reader.close()
        for source in resumed:
            source.close()
        progress.close()
    stats.wall_seconds = time.perf_counter() - wall_start
    progress.finish(stats)
    return stats


class _Feeder:
    """Where each window's results come from: the interrupted run's partials (windows
    journaled in every output), or the back end, given the arrays the main process read
    (``--io main``) or none (the worker reads)."""

    def __init__(
        self,
        backend: Backend,
        reader: WindowReader | None,
        resumed: list[ResumeSource],
        stats: RunStats,
    ) -> None:
        self.backend = backend
        self.reader = reader
        self.resumed = resumed
        self.stats = stats

    def submit(self, task: WindowTask) -> Future:
        start = time.perf_counter()
        if self.resumed and all(source.has(task) for source in self.resumed):
            future: Future = Future()
            parts = [source.read(task) for source in self.resumed]
            data = tuple(part[0] for part in parts)
            masks = tuple(part[1] for part in parts)
            sums = tuple(source.checksum(task) for source in self.resumed)
            future.set_result(
                WindowResult(task.index, data, 0.0, 0.0, 0, checksum=sums, mask=masks)
            )
            self.stats.read_seconds += time.perf_counter() - start
            self.stats.windows_resumed += 1
            return future
        arrays = None
        if self.reader is not None:
            arrays = self.reader.read(task)
            self.stats.read_seconds += time.perf_counter() - start
            self.stats.bytes_read += sum(a.nbytes for a in arrays)
        return self.backend.submit(task, arrays)


def _write_outputs(
    job: Job, feeder: _Feeder, progress: ProgressSink, stop: StopSignal | None, stats: RunStats
) -> None:
    """Schedule every window and write the results in plan order, each output by its own
    writer; then finish every output, and only then move them into place.

    After a stop, what was written is made durable and journaled for ``--resume``.
    """
    with contextlib.ExitStack() as writers_open:
        # Encodes the tiles of placed outputs that reach the writer as pixels (strips
        # assembled into tiles, or every tile with -j 1), on as many threads as workers:
        # threads start only when a tile needs them. Shut down after the writer's thread
        # (entered later, left earlier), which may wait on its tiles.
        pool = ThreadPoolExecutor(job.jobs, thread_name_prefix="mpraster-encode")
        writers_open.callback(pool.shutdown, wait=True, cancel_futures=True)
        assemblies = []
        writers = []
        for out in job.outputs:
            checkpoints = Checkpoints(out.fingerprint, len(job.tiles), job.checkpoint_every(out))
            writer = OutputWriter(
                out.path,
                out.profile,
                job.overwrite,
                job.cog,
                checkpoints,
                out.tags,
                out.metadata,
                out.validity.writes_mask,
            )
            writers.append(writers_open.enter_context(writer))
            assemblies.append(TileAssembly(writer, out.dtype, out.bands, pool))

        def write_tiles(task: WindowTask, tiles: list[WholeTile | None]) -> None:
            start = time.perf_counter()  # in the writer's thread
            for assembly, tile in zip(assemblies, tiles, strict=True):
                if tile is not None:
                    assembly.write(tile)
            stats.write_seconds += time.perf_counter() - start
            progress.advance(1, task.pixels)  # written, as a stopped run journals it

        def write(task: WindowTask, result: WindowResult) -> None:
            if result.slot is not None and result.data is None:
                # Out of the slot, which goes back for the next window at once.
                parts = [
                    (data.copy(), None if mask is None else mask.copy())
                    for data, mask in feeder.backend.result_arrays(result)
                ]
                feeder.backend.release(result)
            else:  # a thread's, an MPI rank's, encoded tiles, or an interrupted run's
                if result.slot is not None:  # it held the inputs only
                    feeder.backend.release(result)
                parts = result.parts()
            known = result.checksum or (None,) * len(parts)
            tiles = [
                assembly.add(task, data, checked, mask)
                for assembly, (data, mask), checked in zip(assemblies, parts, known, strict=True)
            ]
            writes.put(write_tiles, task, tiles)
            stats.bytes_written += sum(data.nbytes for data, _ in parts)
            stats.windows += 1
            stats.pixels += task.pixels
            stats.read_seconds += result.read_seconds
            stats.compute_seconds += result.compute_seconds
            stats.bytes_read += result.bytes_read

        progress.start(len(job.tasks), sum(t.pixels for t in job.tasks))
        # Results wait for the writer's thread in plan order; as many as there are workers
        # (the memory estimate counts them), so that none waits for the writer needlessly.
        writes = writers_open.enter_context(WriteThread(job.jobs))
        try:
            schedule(
                job.tasks, feeder.submit, write, job.in_flight, stats, stop, job.window_timeout
            )
            writes.finish()
        except (Interrupted, KeyboardInterrupt):
            # What was handed over is written, then made durable and journaled.
            writes.finish()
            for writer in writers:
                writer.stop()
            raise
        start = time.perf_counter()
        # Every output finished and checked before any is moved into place: a full disk
        # on the last one leaves none of them at its target.
        for writer in writers:
            writer.finish()
        for writer in writers:
            writer.place()
        stats.write_seconds += time.perf_counter() - start
