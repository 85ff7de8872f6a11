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

import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from mpraster.assembly import TileAssembly
from mpraster.budget import main_gdal_env
from mpraster.errors import Interrupted, WorkerDied
from mpraster.inputs import WindowReader, network_config
from mpraster.job import InputsArg, Job, plan_job
from mpraster.kernels import Kernel, main_script
from mpraster.lock import OutputLock
from mpraster.modes import Backend, make_backend
from mpraster.options import RunOptions
from mpraster.output import Checkpoints, OutputWriter
from mpraster.progress import NullProgress, ProgressSink, make_progress
from mpraster.resume import ResumeSource, check_previous_run_unchanged
from mpraster.schedule import StopSignal, schedule
from mpraster.stats import RunStats
from mpraster.windows import WindowTask
from mpraster.worker import WindowResult, WorkerSpec


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
    job = plan_job(inputs, output, kernel, options, **changes)
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
    with OutputLock(job.output), main_gdal_env(job.main_cache_bytes, job.gdal_config):
        check_previous_run_unchanged(job.output, job.resume_from, job.overwrite)
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
        dtype=job.dtype.name,
        bands=job.bands,
        in_process=in_process,
        gdal_cache_bytes=job.worker_cache_bytes,
        # What GDAL is told in the main process, for worker processes and MPI ranks.
        gdal_config=tuple({**network_config(), **job.gdal_config}.items()),
        # Threads get the kernel itself; other processes import it by its ref.
        kernel=None if in_process else job.kernel,
        validity=job.validity,
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
    )
    finished = False
    resumed = reader = backend = None
    try:
        if job.resume_from is not None:
            resumed = ResumeSource.take(
                job.output, job.resume_from, job.tiles, job.validity.writes_mask
            )
        if job.io == "main":
            reader = WindowReader(job.inputs, job.infos, job.kernel.fill)
        backend = make_backend(job, _worker_spec(job), executor)
        _write_output(job, _Feeder(backend, reader, resumed, stats), progress, stop, stats)
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
        if resumed is not None:
            resumed.close()
        progress.close()
    stats.wall_seconds = time.perf_counter() - wall_start
    progress.finish(stats)
    return stats


class _Feeder:
    """Where each window's result comes from: the interrupted run's partial (journaled
    windows), or the back end, given the arrays the main process read (``--io main``) or
    none (the worker reads)."""

    def __init__(
        self,
        backend: Backend,
        reader: WindowReader | None,
        resumed: ResumeSource | None,
        stats: RunStats,
    ) -> None:
        self.backend = backend
        self.reader = reader
        self.resumed = resumed
        self.stats = stats

    def submit(self, task: WindowTask) -> Future:
        start = time.perf_counter()
        if self.resumed is not None and self.resumed.has(task):
            future: Future = Future()
            data, mask = self.resumed.read(task)
            future.set_result(WindowResult(task.index, data, 0.0, 0.0, 0, mask=mask))
            self.stats.read_seconds += time.perf_counter() - start
            self.stats.windows_resumed += 1
            return future
        arrays = None
        if self.reader is not None:
            arrays = self.reader.read(task)
            self.stats.read_seconds += time.perf_counter() - start
            self.stats.bytes_read += sum(a.nbytes for a in arrays)
        return self.backend.submit(task, arrays)


def _write_output(
    job: Job, feeder: _Feeder, progress: ProgressSink, stop: StopSignal | None, stats: RunStats
) -> None:
    """Schedule every window and write the results in plan order, then commit the output.

    After a stop, what was written is made durable and journaled for ``--resume``.
    """
    checkpoints = Checkpoints(job.fingerprint, len(job.tiles), job.checkpoint_every)
    with OutputWriter(
        job.output,
        job.profile,
        job.overwrite,
        job.cog,
        checkpoints,
        job.tags,
        job.metadata,
        job.validity.writes_mask,
    ) as writer:
        assembly = TileAssembly(writer, job.dtype, job.bands)

        def write(task: WindowTask, result: WindowResult) -> None:
            start = time.perf_counter()
            data, mask = result.data, result.mask
            if result.slot is not None:
                data = feeder.backend.result_array(result)
                mask = feeder.backend.result_mask(result)
            assembly.add(task, data, result.checksum, mask)
            if result.slot is not None:
                feeder.backend.release(result)
            stats.write_seconds += time.perf_counter() - start
            stats.windows += 1
            stats.pixels += task.pixels
            stats.bytes_written += data.nbytes
            stats.read_seconds += result.read_seconds
            stats.compute_seconds += result.compute_seconds
            stats.bytes_read += result.bytes_read
            progress.advance(1, task.pixels)

        progress.start(len(job.tasks), sum(t.pixels for t in job.tasks))
        try:
            schedule(
                job.tasks, feeder.submit, write, job.in_flight, stats, stop, job.window_timeout
            )
        except (Interrupted, KeyboardInterrupt):
            writer.stop()
            raise
        start = time.perf_counter()
        writer.commit()
        stats.write_seconds += time.perf_counter() - start
