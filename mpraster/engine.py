"""The one scheduling loop, written once against ``concurrent.futures.Executor``.

Threads and processes differ only in the executor the factory builds and in who reads
the windows (``io="main"``: the main process reads and ships arrays; ``io="workers"``:
every worker opens the inputs once and reads its own windows). Results are written by
the main process in plan order through a bounded reorder buffer, so the output file is
the same bytes whatever the mode, the I/O placement and the number of workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from mpraster import __version__
from mpraster.errors import (
    Interrupted,
    KernelNotFoundError,
    OptionError,
    ResumeError,
    UnfinishedRunError,
    WindowFailed,
    WindowTimeoutError,
    WorkerDied,
)
from mpraster.io import (
    Checkpoints,
    CogOptions,
    InputInfo,
    InputSpec,
    OutputWriter,
    WindowReader,
    check_creation_options,
    check_output,
    describe_window,
    gdal_env,
    inspect_inputs,
    network_config,
    open_raster,
    output_profile,
    parse_input,
    partial_path,
)
from mpraster.journal import (
    CHECKPOINT_BYTES,
    JournalState,
    checksum,
    fingerprint,
    input_identity,
    journal_path,
    read_journal,
)
from mpraster.kernels import (
    Kernel,
    KernelContext,
    as_kernel,
    importable,
    load_kernel,
    main_script,
    representable,
)
from mpraster.lock import OutputLock, check_not_locked
from mpraster.plan import (
    WindowTask,
    check_block_size,
    plan_windows,
    shard_path,
    shard_range,
    tasks_of_tiles,
    tile_windows,
)
from mpraster.progress import NullProgress, ProgressSink, RunStats, make_progress

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mpraster.transport import Slot

MODES = ("auto", "threads", "processes", "mpi")
# Worker threads are named WORKER_THREAD_PREFIX-<run>_<n>, so a stop can find its own.
WORKER_THREAD_PREFIX = "mpraster-worker"
# How long a stop waits for a worker thread to finish its window before leaving it behind.
_THREAD_JOIN_SECONDS = 2.0
COG_MIN_BLOCK = 128
IO_PLACEMENTS = ("main", "workers")


def default_jobs() -> int:
    """The CPUs this process may use: SLURM's or PBS's allocation, else the affinity mask.

    ``os.cpu_count()`` reports the whole node, which on a shared cluster node is far more
    than the job was given.
    """
    for variable in ("SLURM_CPUS_PER_TASK", "NCPUS"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_mode(mode: str, io: str | None, kernel: Kernel) -> tuple[str, str, str]:
    """Choose the mode and I/O placement; returns (mode, io, why).

    ``auto`` runs a GIL-releasing kernel in threads with main I/O, and one that holds the
    GIL in processes with worker I/O, so that neither the kernel nor the decoding is
    serialised by the GIL.

    Raises
    ------
    OptionError
        For an unknown mode or I/O placement.
    """
    if mode not in MODES:
        raise OptionError(f"unknown --mode '{mode}'; choose one of {', '.join(MODES)}")
    if io is not None and io not in IO_PLACEMENTS:
        raise OptionError(f"unknown --io '{io}'; choose one of {', '.join(IO_PLACEMENTS)}")
    if mode == "mpi":
        # Ranks may be on other nodes: each reads its own windows from the shared filesystem.
        return mode, io or "workers", "--mode mpi was given"
    if mode != "auto":
        return mode, io or "main", f"--mode {mode} was given"
    if kernel.releases_gil:
        return "threads", io or "main", f"kernel '{kernel.name}' releases the GIL"
    return "processes", io or "workers", f"kernel '{kernel.name}' holds the GIL"


def _check_count(value: Any, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{option} must be a whole number of at least 1, got {value!r}")
    return value


# ---------------------------------------------------------------- worker side


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, small and picklable (no arrays, no handles)."""

    run_id: int
    kernel_ref: str
    params: Mapping[str, Any]
    inputs: tuple[InputSpec, ...]
    infos: tuple[InputInfo, ...]
    fill: str
    halo: int
    dtype: str
    bands: int
    in_process: bool
    gdal_cache_bytes: int
    # GDAL configuration every worker process applies (network timeouts and retries).
    gdal_config: tuple[tuple[str, str], ...] = ()

    def context(self, task: WindowTask) -> KernelContext:
        """The `KernelContext` of one window."""
        return KernelContext(
            window=task.window,
            read=task.read,
            transform=window_transform(task.read, self.infos[0].transform),
            nodata=tuple(info.nodata for info in self.infos),
            halo=self.halo,
        )


@dataclass
class WindowResult:
    """One window's output and the time spent on it, sent back to the main process."""

    index: int
    data: np.ndarray | None
    read_seconds: float
    compute_seconds: float
    bytes_read: int
    # When the result travelled in shared memory: the slot, and the result's shape.
    slot: Slot | None = None
    shape: tuple[int, ...] = ()
    # The journal's checksum of a whole tile window's result, taken by the worker so that
    # the writer does not spend its time on it (None for a part of a tile).
    checksum: int | None = None


class _WorkerState:
    """A worker's kernel and, for worker I/O, its own dataset handles (opened lazily)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.kernel = load_kernel(spec.kernel_ref)
        self.reader: WindowReader | None = None
        self.thread = threading.current_thread()

    def read(self, task: WindowTask) -> list[np.ndarray]:
        if self.reader is None:
            self.reader = WindowReader(self.spec.inputs, self.spec.infos, self.spec.fill)
        return self.reader.read(task)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


_local = threading.local()
# Worker states of thread pools in this process, by run, so the main thread can close
# their dataset handles once the pool has shut down.
_thread_states: dict[int, list[_WorkerState]] = {}
_thread_states_lock = threading.Lock()


def _init_worker(spec: WorkerSpec) -> None:
    if spec.in_process:
        # The main process owns Ctrl-C and the batch system's SIGTERM: it stops dispatching
        # and cleans up; a worker that died of the signal first would look like a crash.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if spec.in_process and "GDAL_CACHEMAX" not in os.environ:
        # GDAL sizes its block cache at 5% of RAM per process unless told otherwise: 24
        # workers would reserve more than the node. Read once, at first use of the cache.
        os.environ["GDAL_CACHEMAX"] = str(spec.gdal_cache_bytes)
    if spec.in_process:
        # The main process's GDAL configuration (network timeouts) does not reach another
        # process; GDAL reads the environment whenever an option is not set otherwise.
        os.environ.update(spec.gdal_config)
        # The main process has said so once already, when it planned the run.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
    state = _WorkerState(spec)
    _local.state = state
    if not spec.in_process:
        with _thread_states_lock:
            _thread_states.setdefault(spec.run_id, []).append(state)


def _init_process_worker(spec: WorkerSpec, lifeline: Connection) -> None:
    """Set up a process worker that ends as soon as the main process is gone (see `_lifeline`)."""
    threading.Thread(
        target=_exit_with_main, args=(lifeline,), name="mpraster-lifeline", daemon=True
    ).start()
    _init_worker(spec)


def _exit_with_main(lifeline: Connection) -> None:
    """Wait for the end of the main process's lifeline, then end this worker at once.

    Nothing is ever sent on it: reading returns only once the main process is gone, even
    if it died before this thread started. A kernel that holds the GIL in compiled code
    delays this thread until it lets go of it (at the end of its window at the latest).
    """
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(1)


def _close_thread_states(run_id: int) -> None:
    with _thread_states_lock:
        states = _thread_states.pop(run_id, [])
    for state in states:
        # A thread still stuck inside GDAL (a stalled read) keeps its handles: closing a
        # dataset under a thread that is reading it would crash the process.
        if not state.thread.is_alive():
            state.close()


def apply_kernel(
    kernel: Kernel,
    params: Mapping[str, Any],
    task: WindowTask,
    arrays: Sequence[np.ndarray],
    dtype: np.dtype,
    bands: int,
    ctx: KernelContext,
) -> np.ndarray:
    """Run the kernel on one window's arrays, check its result and crop off the halo.

    The kernel may return the read window's size (the halo is cropped here) or the
    window's own size.

    Raises
    ------
    WindowFailed
        If the kernel raises, or returns something other than a (bands, rows, cols) array
        of the declared dtype, naming the window.
    """
    try:
        out = kernel.call(arrays, params, ctx)
    except Exception as err:
        raise WindowFailed(
            f"kernel '{kernel.name}' failed on window {describe_window(task)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    rows, cols = int(task.read.height), int(task.read.width)
    window_shape = (bands, int(task.window.height), int(task.window.width))
    if isinstance(out, np.ndarray) and out.ndim == 2 and bands == 1:
        out = out[np.newaxis]
    shapes = ((bands, rows, cols), window_shape)
    if not isinstance(out, np.ndarray) or out.shape not in shapes or out.dtype != dtype:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise WindowFailed(
            f"kernel '{kernel.name}' returned {got} on window {describe_window(task)}; "
            f"expected {dtype} {(bands, rows, cols)} (declare dtype= and bands= in "
            "@mpraster.kernel if they differ from the input's)"
        )
    if out.shape == window_shape:
        return out
    r0, r1, c0, c1 = task.crop
    return out[:, r0:r1, c0:c1]


def _compute(
    task: WindowTask, arrays: list[np.ndarray] | None, slot: Slot | None = None
) -> WindowResult:
    """Run the kernel on a window's arrays (or the ones in ``slot``); worker side."""
    # Imported here: shared memory is only for process workers, and costs start-up time.
    from mpraster.transport import put_result, slot_inputs

    state: _WorkerState = _local.state
    start = time.perf_counter()
    if arrays is None:
        arrays = slot_inputs(slot)
    spec = state.spec
    out = apply_kernel(
        state.kernel,
        spec.params,
        task,
        arrays,
        np.dtype(spec.dtype),
        spec.bands,
        spec.context(task),
    )
    tile_checksum = checksum(out) if task.parts == 1 else None
    if slot is None:
        elapsed = time.perf_counter() - start
        return WindowResult(task.index, out, 0.0, elapsed, 0, checksum=tile_checksum)
    put_result(slot, out)
    elapsed = time.perf_counter() - start
    return WindowResult(task.index, None, 0.0, elapsed, 0, slot, out.shape, tile_checksum)


def _ensure_worker(spec: WorkerSpec) -> None:
    """Set up this worker for ``spec``'s run unless it already is (MPI ranks)."""
    state = getattr(_local, "state", None)
    if state is None or state.spec.run_id != spec.run_id or state.spec != spec:
        if state is not None:
            state.close()
        _init_worker(spec)


def _compute_with_spec(
    spec: WorkerSpec, task: WindowTask, arrays: list[np.ndarray]
) -> WindowResult:
    _ensure_worker(spec)
    return _compute(task, arrays)


def _read_and_compute_with_spec(spec: WorkerSpec, task: WindowTask) -> WindowResult:
    _ensure_worker(spec)
    return _read_and_compute(task)


def _read_and_compute(task: WindowTask, slot: Slot | None = None) -> WindowResult:
    state: _WorkerState = _local.state
    start = time.perf_counter()
    arrays = state.read(task)
    read_seconds = time.perf_counter() - start
    result = _compute(task, arrays, slot)
    result.read_seconds = read_seconds
    result.bytes_read = sum(a.nbytes for a in arrays)
    return result


# ---------------------------------------------------------------- executors


def _thread_executor(jobs: int, spec: WorkerSpec) -> Executor:
    return ThreadPoolExecutor(
        max_workers=jobs,
        thread_name_prefix=f"{WORKER_THREAD_PREFIX}-{spec.run_id}",
        initializer=_init_worker,
        initargs=(spec,),
    )


# This process's lifeline to its process workers: (read end, write end).
_lifeline_ends: tuple[Connection, Connection] | None = None


def _lifeline() -> Connection:
    """The read end of a pipe whose write end only this process holds, for its workers.

    Without it, the workers of a main process killed outright (SIGKILL, the OOM killer)
    live on: their parent is the forkserver, not the main process, and each holds both
    ends of its call queue's pipe, so no end of file reaches it. They keep the forkserver
    alive (it waits for every holder of its "alive" pipe to close it) and the resource
    tracker (it waits for every holder of its pipe, and only then unlinks the run's shared
    memory and semaphores), and all of them keep the caller's stdout and stderr open.
    Whatever ends this process, the kernel closes the write end, and every worker's
    `_exit_with_main` thread sees end of file: how the forkserver itself learns that its
    clients are gone.
    """
    global _lifeline_ends
    if _lifeline_ends is None:
        import multiprocessing

        _lifeline_ends = multiprocessing.Pipe(duplex=False)
    return _lifeline_ends[0]


def _forget_lifeline() -> None:
    # A child forked from this process must not hold the write end: this process's workers
    # would outlive this process for as long as the child lives.
    global _lifeline_ends
    if _lifeline_ends is not None:
        for end in _lifeline_ends:
            end.close()
        _lifeline_ends = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lifeline)


def _process_executor(jobs: int, spec: WorkerSpec) -> Executor:
    # Imported here: multiprocessing costs start-up time that thread runs need not pay.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Never fork the main process: a forked child inherits GDAL's mutexes in whatever state
    # the parent's threads left them, and deadlocks. A forkserver is a fresh,
    # single-threaded process that has imported mpraster (and so GDAL) but never used it;
    # workers forked from it start in milliseconds instead of each importing rasterio
    # again. Where there is no forkserver (Windows), workers are spawned.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mpraster.engine"])
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_init_process_worker,
        initargs=(spec, _lifeline()),
    )


def _mpi_executor(jobs: int, spec: WorkerSpec) -> Executor:
    from mpraster.mpi import pool_executor

    return pool_executor(jobs)


EXECUTOR_FACTORIES: dict[str, Callable[[int, WorkerSpec], Executor]] = {
    "threads": _thread_executor,
    "processes": _process_executor,
    "mpi": _mpi_executor,
}
# Executors that take no initializer: their workers set themselves up from the spec that
# comes with each window (MPI ranks serve whatever rank 0 sends them).
_SPEC_PER_TASK = {"mpi"}


def _stop_executor(executor: Executor, run_id: int) -> None:
    """Stop at once after an error or an interrupt: cancel queued work, end process workers.

    Process workers ignore SIGTERM (see _init_worker), so they are killed outright, before
    shutdown: a worker busy on a long window would otherwise hold the run up. A worker
    thread cannot be killed: it is given `_THREAD_JOIN_SECONDS` to finish its window, and
    one stuck inside GDAL (a stalled read) is left behind rather than hanging the stop.
    """
    kill = getattr(executor, "kill_workers", None)  # process pools, Python >= 3.14
    if kill is not None:
        kill()
    else:
        # Before 3.14 a process pool offers no public way to reach its workers.
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()
    if not isinstance(executor, ThreadPoolExecutor):
        executor.shutdown(wait=True, cancel_futures=True)
        return
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + _THREAD_JOIN_SECONDS
    prefix = f"{WORKER_THREAD_PREFIX}-{run_id}_"
    for thread in threading.enumerate():
        if thread.name.startswith(prefix):
            thread.join(max(deadline - time.monotonic(), 0.0))


# ---------------------------------------------------------------- the loop

_run_ids = itertools.count(1)
# The smallest GDAL block cache a process gets, whatever the windows need: room for GDAL's
# own bookkeeping and a few blocks.
_MIN_CACHE_BYTES = 4 << 20


def _reuses_blocks(job: Job) -> bool:
    """Whether input blocks are read by more than one window.

    They are when windows overlap (a halo), when tiles are cut into row strips, or when an
    input's blocks do not fit the window grid (a striped file: each strip spans every
    window of its row). Then a row of windows' blocks is worth caching, so that each block
    is decoded once; otherwise a cached block is never used again.
    """
    if job.halo or any(task.parts > 1 for task in job.tasks):
        return True
    return any(
        (info.height > job.block_size and job.block_size % info.block_shape[0])
        or (info.width > job.block_size and job.block_size % info.block_shape[1])
        for info in job.infos
    )


def _reader_cache_bytes(job: Job) -> int:
    """GDAL cache one reader (one dataset handle per input) needs; see `_reuses_blocks`."""
    if not _reuses_blocks(job):
        window_in, _ = job.window_bytes()
        return job.in_flight * window_in
    total = 0
    for info in job.infos:
        rows_of_blocks, cols_of_blocks = info.block_shape
        rows = (-(-(job.block_size + 2 * job.halo) // rows_of_blocks) + 1) * rows_of_blocks
        cols = -(-info.width // cols_of_blocks) * cols_of_blocks
        total += rows * cols * info.count * np.dtype(info.dtype).itemsize
    return total


def _main_gdal_env(cache_bytes: int) -> contextlib.AbstractContextManager:
    """The main process's GDAL configuration: its cache (see `Job.main_cache_bytes`) and
    the network timeouts (see `gdal_env`).

    The writer's tiles stay in the cache until GDAL flushes them (compressing on its
    NUM_THREADS); bounding the cache bounds the main process's memory, whatever the
    raster's size. A GDAL_CACHEMAX the user set wins.
    """
    if "GDAL_CACHEMAX" in os.environ:
        return gdal_env()
    return gdal_env(GDAL_CACHEMAX=cache_bytes)


# Few tiles over many workers leave workers idle at the end of a run (4 tiles of unequal
# size cannot be split evenly over 2 workers); the planner cuts tiles into row strips until
# there are this many tasks per worker.
_TASKS_PER_WORKER = 32


class TileAssembly:
    """Hands results to the writer one whole tile window at a time, in plan order.

    A tile window cut into row strips is assembled here first, so the writer never writes
    part of a tile: GDAL would hold the part in its cache, and under cache pressure flush it
    early and rewrite it later, which would make the file's layout depend on timing.
    """

    def __init__(self, writer: OutputWriter, dtype: np.dtype, bands: int) -> None:
        self.writer = writer
        self.dtype = dtype
        self.bands = bands
        self._buffer: np.ndarray | None = None

    def _write(self, data: np.ndarray, task: WindowTask, known: int | None = None) -> None:
        if self.writer.checkpoints is None:
            self.writer.write(data, task.tile)
        else:
            self.writer.write(data, task.tile, checksum(data) if known is None else known)

    def add(self, task: WindowTask, data: np.ndarray, known: int | None = None) -> None:
        """Take one window's result; ``known``: its checksum, if it is a whole tile's."""
        if task.parts == 1:
            self._write(data, task, known)
            return
        if task.part == 0:
            shape = (self.bands, int(task.tile.height), int(task.tile.width))
            self._buffer = np.empty(shape, dtype=self.dtype)
        start, stop = task.rows_in_tile
        self._buffer[:, start:stop] = data
        if task.part == task.parts - 1:
            self._write(self._buffer, task)
            self._buffer = None


_STOP_POLL_SECONDS = 0.1


class StopSignal:
    """A request to stop a run, with the signal that asked for it.

    Windows in flight are given ``grace`` seconds to finish and be written (a batch system
    kills the job some 30 seconds after its SIGTERM); the rest are dropped and redone by
    ``--resume``. A second request stops at once.
    """

    def __init__(self, grace: float = 20.0) -> None:
        self._event = threading.Event()
        self.signum = int(signal.SIGINT)
        self.grace = grace
        self.deadline = float("inf")

    def set(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to stop: at once if it was asked before, else after the grace period."""
        self.signum = int(signum)
        if self._event.is_set():
            self.deadline = time.monotonic()
        else:
            self.deadline = time.monotonic() + self.grace
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


def _worker_died(err: BrokenExecutor, in_flight: Sequence[WindowTask]) -> WorkerDied:
    lost = ", ".join(describe_window(t) for t in sorted(in_flight, key=lambda t: t.index))
    during = f" while windows {lost} were in flight" if lost else ""
    return WorkerDied(
        f"a worker process died (crashed, killed or out of memory){during}; "
        "nothing was written to the output"
    )


def _schedule(
    tasks: Sequence[WindowTask],
    submit: Callable[[WindowTask], Future],
    write: Callable[[WindowTask, WindowResult], None],
    max_in_flight: int,
    stats: RunStats,
    stop: StopSignal | None = None,
    window_timeout: float | None = None,
) -> None:
    """Submit as results drain, keep at most ``max_in_flight`` windows, write in plan order.

    ``Executor.map`` would submit the whole plan at once, and memory would grow with the
    raster; here a window counts as in flight from submission until it is written, so
    finished windows waiting for an earlier one also count against the bound.

    Raises
    ------
    WindowTimeoutError
        If a window has been running (reading or computing in a worker) for longer than
        ``window_timeout`` seconds: a hung network filesystem or kernel.
    Interrupted
        Once ``stop`` is set: nothing more is submitted, the windows in flight are finished
        and written, and then it raises (never in the middle of starting a worker process,
        which would leave a half-spawned child behind).
    """
    pending: dict[Future, WindowTask] = {}
    ready: dict[int, WindowResult] = {}
    started: dict[Future, float] = {}  # when each pending window was first seen running
    submitted = written = 0
    while written < len(tasks):
        draining = stop is not None and stop.is_set()
        if draining and (written == submitted or stop.expired()):
            raise Interrupted(
                f"stopped by {signal.Signals(stop.signum).name} after {written} of {len(tasks)} "
                "windows; the partial output and its journal are kept: run the same command "
                "with --resume to finish",
                stop.signum,
            )
        while not draining and submitted < len(tasks) and submitted - written < max_in_flight:
            task = tasks[submitted]
            try:
                pending[submit(task)] = task
            except BrokenExecutor as err:
                # A worker died between two submissions: the pool refuses new work.
                raise _worker_died(err, list(pending.values())) from err
            submitted += 1
        start = time.perf_counter()
        # The timeout only bounds how long a stop request waits to be seen.
        done, _ = wait(pending, timeout=_STOP_POLL_SECONDS, return_when=FIRST_COMPLETED)
        stats.wait_seconds += time.perf_counter() - start
        # In plan order, so that of several failed windows the first is reported.
        for future in sorted(done, key=lambda f: pending[f].index):
            task = pending.pop(future)
            started.pop(future, None)
            try:
                ready[task.index] = future.result()
            except BrokenExecutor as err:
                raise _worker_died(err, [task, *pending.values()]) from err
        if window_timeout is not None:
            _check_window_times(pending, started, window_timeout)
        while written < len(tasks) and tasks[written].index in ready:
            write(tasks[written], ready.pop(tasks[written].index))
            written += 1


def _check_window_times(
    pending: Mapping[Future, WindowTask], started: dict[Future, float], timeout: float
) -> None:
    """Raise `WindowTimeoutError` for the first window running longer than ``timeout``.

    A window's clock starts when its future is first seen running (a process pool marks a
    window running when it queues it to a worker, so its clock may start a window early).
    """
    now = time.monotonic()
    for future, task in sorted(pending.items(), key=lambda item: item[1].index):
        if future.running():
            since = started.setdefault(future, now)
            if now - since > timeout:
                raise WindowTimeoutError(
                    f"window {describe_window(task)} ran for more than {timeout:g} s "
                    "(--window-timeout): a read or the kernel hung (a stalled network "
                    "filesystem?); check the input's storage, or give more time"
                )


@dataclass(frozen=True)
class Job:
    """A checked and planned run: everything decided before any pixel is read."""

    inputs: tuple[InputSpec, ...]
    output: str
    kernel: Kernel
    params: Mapping[str, Any]
    mode: str
    io: str
    why: str
    jobs: int
    prefetch: int
    block_size: int
    halo: int
    infos: tuple[InputInfo, ...]
    dtype: np.dtype
    bands: int
    profile: Mapping[str, Any]
    tasks: tuple[WindowTask, ...]
    overwrite: bool
    cog: CogOptions | None = None
    fingerprint: str = ""
    resume_from: JournalState | None = None
    checkpoint_bytes: int = CHECKPOINT_BYTES
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    window_timeout: float | None = None

    @property
    def tiles(self) -> list[Window]:
        """The tile windows the writer writes, in plan order."""
        return tile_windows(self.tasks)

    @property
    def checkpoint_every(self) -> int:
        """Tile windows between checkpoints (about ``checkpoint_bytes`` of output)."""
        tile_bytes = self.bands * self.dtype.itemsize * self.block_size**2
        return max(1, self.checkpoint_bytes // tile_bytes)

    @property
    def in_flight(self) -> int:
        """The most windows held at once (read, computing, or waiting to be written)."""
        return self.jobs * self.prefetch

    @property
    def main_cache_bytes(self) -> int:
        """GDAL block cache of the main process (see `_main_gdal_env`).

        The writer's tiles of the windows in flight, and the readers that share the main
        process: its own (``--io main``), or each thread's handles (threads with
        ``--io workers``; GDAL caches blocks per handle).
        """
        tile = self.bands * self.dtype.itemsize * self.block_size**2
        budget = 2 * self.in_flight * tile
        if self.io == "main":
            budget += _reader_cache_bytes(self)
        elif self.mode == "threads":
            budget += self.jobs * _reader_cache_bytes(self)
        return max(budget, _MIN_CACHE_BYTES)

    @property
    def worker_cache_bytes(self) -> int:
        """GDAL block cache of each worker process (processes and MPI modes)."""
        reader = _reader_cache_bytes(self) if self.io == "workers" else 0
        return max(reader, _MIN_CACHE_BYTES)

    def window_bytes(self, inputs: bool = True) -> tuple[int, int]:
        """Bytes of the largest window's inputs (as read, halo included) and output."""
        largest = max(self.tasks, key=lambda t: int(t.read.height) * int(t.read.width))
        read_pixels = int(largest.read.height) * int(largest.read.width)
        per_pixel = sum(i.count * np.dtype(i.dtype).itemsize for i in self.infos)
        # Each input's array is aligned in a slot; a little slack per input covers it.
        window_in = (per_pixel * read_pixels + 64 * len(self.infos)) if inputs else 0
        window_out = self.bands * self.dtype.itemsize * max(t.pixels for t in self.tasks)
        return window_in, window_out

    def memory_estimate(self) -> dict[str, int]:
        """Bytes of pixel data held at the peak: windows in flight and GDAL caches.

        The interpreter, NumPy and GDAL themselves add some 70 MiB per process on top.
        """
        window_in, window_out = self.window_bytes()
        # Process workers hold their own copy of what they read and return.
        copies = 2 if self.mode == "processes" else 1
        caches = self.main_cache_bytes
        if self.mode == "processes":
            caches += self.jobs * self.worker_cache_bytes
        windows = self.in_flight * (window_in + window_out) * copies
        return {"windows": windows, "gdal_cache": caches, "total": windows + caches}

    def describe(self) -> str:
        """The plan in a few lines, as ``--dry-run`` prints it."""
        first = self.infos[0]
        lines = ["inputs:"]
        for info in self.infos:
            lines.append(
                f"  {info.path}: {info.count} x {info.height} x {info.width} {info.dtype}, "
                f"nodata {info.nodata}, CRS {info.crs}"
            )
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items()) or "none"
        tiles = len({(t.tile.row_off, t.tile.col_off) for t in self.tasks})
        memory = self.memory_estimate()
        profile = ", ".join(
            f"{k}={v}" for k, v in self.profile.items() if k not in ("crs", "transform")
        )
        lines += [
            f"kernel: {self.kernel.name} ({params}); halo {self.halo}, "
            f"{'releases' if self.kernel.releases_gil else 'holds'} the GIL",
            f"mode: {self.mode}, io={self.io}, -j {self.jobs} ({self.why})",
            f"plan: {len(self.tasks)} windows over {tiles} tiles of {self.block_size}, "
            f"{first.height * first.width / 1e6:.2f} MPix; at most {self.in_flight} windows "
            "in flight",
            f"memory estimate: {memory['total'] / 2**20:.0f} MiB of pixel data at the peak "
            f"({memory['windows'] / 2**20:.1f} MiB windows in flight + GDAL caches capped at "
            f"{memory['gdal_cache'] / 2**20:.0f} MiB), plus ~70 MiB per process",
            f"output: {self.output} ({'COG, ' if self.cog else ''}{profile})",
        ]
        return "\n".join(lines)


def plan_job(
    inputs: str | os.PathLike | InputSpec | Sequence[str | os.PathLike | InputSpec],
    output: str | os.PathLike,
    kernel: str | Kernel | Callable[..., Any],
    *,
    mode: str = "auto",
    io: str | None = None,
    jobs: int | None = None,
    params: Mapping[str, Any] | None = None,
    bidx: str | None = None,
    dtype: str | None = None,
    nodata: float | None = None,
    prefetch: int = 2,
    block_size: int = 512,
    creation_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    cog: CogOptions | None = None,
    resume: bool = False,
    checkpoint_mb: float = CHECKPOINT_BYTES / 2**20,
    shard: tuple[int, int] | None = None,
    window_timeout: float | None = None,
) -> Job:
    """Check every input and option and plan the run, without reading any pixel.

    Takes the arguments of `run` (but ``progress`` and ``stop``) and raises the same errors
    a real run would raise for them.
    """
    if isinstance(inputs, (str, os.PathLike, InputSpec)):
        inputs = [inputs]
    specs = [parse_input(value, bidx) for value in inputs]
    if not specs:
        raise OptionError("no input given; pass at least one raster")
    output = os.fspath(output)
    kernel = as_kernel(kernel)
    raw_params = dict(params or {})
    if dtype is not None:
        if "dtype" not in kernel.params:
            raise OptionError(
                f"kernel '{kernel.name}' chooses its own output type; --dtype is for kernels "
                "with a dtype parameter (e.g. rescale)"
            )
        raw_params["dtype"] = dtype
    parsed = kernel.parse_params(raw_params)
    jobs_given = jobs is not None
    jobs = _check_count(jobs, "-j/--jobs") if jobs_given else default_jobs()
    if not checkpoint_mb > 0:
        raise OptionError(f"--checkpoint-mb must be more than 0, got {checkpoint_mb}")
    if window_timeout is not None and not window_timeout > 0:
        raise OptionError(f"--window-timeout must be more than 0 seconds, got {window_timeout}")
    prefetch = _check_count(prefetch, "--prefetch")
    check_block_size(block_size)
    if cog is not None and block_size < COG_MIN_BLOCK:
        raise OptionError(
            f"a COG needs --block-size of {COG_MIN_BLOCK} or more (GDAL's COG driver), "
            f"got {block_size}"
        )
    mode, io, why = resolve_mode(mode, io, kernel)
    if mode != "threads" and not importable(kernel.ref):
        raise KernelNotFoundError(
            f"kernel '{kernel.name}' ({kernel.ref}) is a lambda, defined inside a function or "
            f"in an interactive session: --mode {mode} workers cannot import it; define it "
            "at the top level of a module or script, or use --mode threads"
        )
    if not jobs_given:
        why += "; -j from the CPUs this process may use"
    with gdal_env():
        infos = inspect_inputs(specs)
    names = [str(spec) for spec in specs]
    kernel.check_inputs([i.count for i in infos], names)
    kernel.check_dtypes([i.dtype for i in infos], names)
    out_dtype = kernel.output_dtype([i.dtype for i in infos], parsed)
    bands = kernel.output_bands([i.count for i in infos], parsed)
    if nodata is None:
        nodata = kernel.output_nodata([i.nodata for i in infos], out_dtype, parsed)
    elif not representable(nodata, out_dtype):
        raise OptionError(f"--nodata {nodata} does not fit the output type {out_dtype}")
    profile = output_profile(infos[0], out_dtype, bands, block_size, creation_options, jobs, nodata)
    check_creation_options(profile, cog is not None)
    halo = kernel.halo(parsed)
    tasks = plan_windows(
        infos[0].height, infos[0].width, block_size, halo, _TASKS_PER_WORKER * jobs
    )
    job_fingerprint = fingerprint(
        {
            "inputs": [
                {**input_identity(s.path), "bands": i.bands}
                for s, i in zip(specs, infos, strict=True)
            ],
            "kernel": [kernel.name, kernel.ref],
            "params": parsed,
            "profile": {k: v for k, v in profile.items() if k != "num_threads"},
            "block": block_size,
            "cog": cog,
            # Where checkpoints fall shapes a compressed file's layout.
            "checkpoint_mb": checkpoint_mb,
            "version": __version__,
        }
    )
    tags: dict[str, str] = {}
    if shard is not None:
        # A shard is a job of its own, writing its share of the tiles to a file of its own;
        # `merge_shards` checks that all shards are of one job and assembles them.
        index, count = shard
        shard_tiles = shard_range(len(tile_windows(tasks)), index, count)
        tasks = tasks_of_tiles(tasks, shard_tiles)
        plan = {
            "creation_options": dict(creation_options or {}),
            "block_size": block_size,
            "checkpoint_mb": checkpoint_mb,
            "cog": cog and dataclasses.asdict(cog),
        }
        tags = {
            "MPRASTER_JOB": job_fingerprint,
            "MPRASTER_SHARD": f"{index}/{count}",
            "MPRASTER_PLAN": json.dumps(plan),
        }
        profile = {**profile, "sparse_ok": "TRUE"}
        output = shard_path(output, index, count)
        job_fingerprint = fingerprint({"job": job_fingerprint, "shard": [index, count]})
        cog = None
    # Before looking at leftovers: a running run's partial is not an interrupted one.
    check_not_locked(output)
    check_output(output, overwrite)
    resume_from = _previous_run(output, job_fingerprint, resume, overwrite)
    return Job(
        inputs=tuple(specs),
        output=output,
        kernel=kernel,
        params=parsed,
        mode=mode,
        io=io,
        why=why,
        jobs=jobs,
        prefetch=prefetch,
        block_size=block_size,
        halo=halo,
        infos=tuple(infos),
        dtype=out_dtype,
        bands=bands,
        profile=profile,
        tasks=tuple(tasks),
        overwrite=overwrite,
        cog=cog,
        fingerprint=job_fingerprint,
        resume_from=resume_from,
        checkpoint_bytes=int(checkpoint_mb * 2**20),
        tags=tags,
        window_timeout=window_timeout,
    )


def _previous_run(
    output: str, job_fingerprint: str, resume: bool, overwrite: bool
) -> JournalState | None:
    """The journal of an interrupted run of this output that ``resume`` may continue.

    Raises
    ------
    UnfinishedRunError
        If one exists and neither ``resume`` nor ``overwrite`` says what to do with it.
    ResumeError
        If ``resume`` is asked for an interrupted run of a different job.
    """
    state = read_journal(journal_path(output))
    if state is None or not os.path.exists(partial_path(output)):
        return None
    if not resume:
        if overwrite:
            return None
        raise UnfinishedRunError(
            f"an interrupted run of {output} exists ({len(state.done)} of {state.tiles} tile "
            "windows done); pass --resume to finish it, or --overwrite to start again"
        )
    if state.fingerprint != job_fingerprint:
        raise ResumeError(
            f"the interrupted run of {output} was a different job (its inputs, kernel, "
            "parameters or output options differ); run that job with --resume, or pass "
            "--overwrite instead of --resume to start this one afresh"
        )
    return state


def _check_previous_run_unchanged(job: Job) -> None:
    """Under the output's lock: the interrupted run the plan found (or not) is still so.

    Another run may have finished, continued or left one between `plan_job` and
    `execute` (a library caller may plan long before it executes).

    Raises
    ------
    ResumeError
        If the run to resume is gone or has changed.
    UnfinishedRunError
        If an interrupted run appeared that neither ``resume`` nor ``overwrite`` covers.
    """
    found = None
    if os.path.exists(partial_path(job.output)):
        found = read_journal(journal_path(job.output))
    if found == job.resume_from or (job.resume_from is None and job.overwrite):
        return
    if job.resume_from is None:
        raise UnfinishedRunError(
            f"an interrupted run of {job.output} was left after this run was planned; "
            "run the command again (with --resume to finish it)"
        )
    raise ResumeError(
        f"the interrupted run of {job.output} changed after this run was planned (another "
        "run finished or continued it); run the command again"
    )


class _ResumeSource:
    """The previous run's partial output: journaled tile windows are taken from it."""

    def __init__(self, job: Job) -> None:
        self.path = partial_path(job.output) + ".resume"
        os.replace(partial_path(job.output), self.path)
        self.done = job.resume_from.done
        self.index = {(t.row_off, t.col_off): i for i, t in enumerate(job.tiles)}
        self.dataset = open_raster(self.path)
        self._tile: tuple[int, np.ndarray] | None = None

    def has(self, task: WindowTask) -> bool:
        return self.index[(task.tile.row_off, task.tile.col_off)] < len(self.done)

    def read(self, task: WindowTask) -> np.ndarray:
        """The task's rows of its tile, read once per tile and checked against the journal."""
        number = self.index[(task.tile.row_off, task.tile.col_off)]
        if self._tile is None or self._tile[0] != number:
            data = self.dataset.read(window=task.tile)
            if checksum(data) != self.done[number]:
                raise ResumeError(
                    f"tile window {number} of {self.path} does not match its journal (the "
                    "file was damaged or changed); start again with --overwrite"
                )
            self._tile = (number, data)
        start, stop = task.rows_in_tile
        return self._tile[1][:, start:stop]

    def close(self, remove: bool) -> None:
        self.dataset.close()
        if remove:
            os.unlink(self.path)


def run(
    inputs: str | os.PathLike | InputSpec | Sequence[str | os.PathLike | InputSpec],
    output: str | os.PathLike,
    kernel: str | Kernel | Callable[..., Any],
    *,
    mode: str = "auto",
    io: str | None = None,
    jobs: int | None = None,
    params: Mapping[str, Any] | None = None,
    bidx: str | None = None,
    dtype: str | None = None,
    nodata: float | None = None,
    prefetch: int = 2,
    block_size: int = 512,
    creation_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    cog: CogOptions | None = None,
    resume: bool = False,
    checkpoint_mb: float = CHECKPOINT_BYTES / 2**20,
    shard: tuple[int, int] | None = None,
    window_timeout: float | None = None,
    progress: ProgressSink | str | None = None,
    stop: StopSignal | None = None,
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
    mode : {"auto", "threads", "processes", "mpi"}
        ``auto`` picks threads for a GIL-releasing kernel, processes otherwise; ``mpi``
        runs the windows on an ``MPIPoolExecutor`` (start the program with
        ``mpiexec -n N python -m mpi4py.futures``; see `mpraster.mpi`).
    io : {"main", "workers"}, optional
        Who reads the windows; default from the mode (see `resolve_mode`).
    jobs : int, optional
        Number of workers; default `default_jobs`.
    params : mapping, optional
        Kernel parameters, as strings or typed values.
    bidx : str, optional
        Bands to read (``"4,3"``, ``"1-3"``) from every input that names none, as rio's
        ``--bidx``.
    dtype : str, optional
        Output data type, for kernels with a ``dtype`` parameter (``rescale``).
    nodata : float, optional
        The output's nodata value, instead of the kernel's choice.
    prefetch : int
        Windows in flight per worker; at most ``jobs * prefetch`` are held at once.
    block_size : int
        Window and output tile size (a multiple of 16).
    creation_options : mapping, optional
        GDAL GTiff creation options (``COMPRESS=DEFLATE``, ``NUM_THREADS=2``, ...).
    overwrite : bool
        Replace an existing output (only once the new one is complete).
    cog : CogOptions, optional
        Write a Cloud-Optimized GeoTIFF (with overviews) instead of a plain tiled one.
    resume : bool
        Finish an interrupted run of the same job from its journal instead of refusing to
        start over it; windows it had written are not computed again.
    checkpoint_mb : float
        Output megabytes between checkpoints (a run killed outright loses at most the
        windows since the last one).
    shard : (int, int), optional
        Do only share ``i`` of ``n`` (0-based) of the tile windows, into
        ``OUTPUT.shardIIIIofNNNN.tif``; `merge_shards` assembles the shards.
    window_timeout : float, optional
        Fail the run (naming the window) when a window runs longer than this many seconds
        in a worker: a hung network filesystem then ends the job instead of stalling it.
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
    job = plan_job(
        inputs,
        output,
        kernel,
        mode=mode,
        io=io,
        jobs=jobs,
        params=params,
        bidx=bidx,
        dtype=dtype,
        nodata=nodata,
        prefetch=prefetch,
        block_size=block_size,
        creation_options=creation_options,
        overwrite=overwrite,
        cog=cog,
        resume=resume,
        checkpoint_mb=checkpoint_mb,
        shard=shard,
        window_timeout=window_timeout,
    )
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
    with OutputLock(job.output), _main_gdal_env(job.main_cache_bytes):
        _check_previous_run_unchanged(job)
        return _execute_locked(job, progress, stop, executor)


def _execute_locked(
    job: Job,
    progress: ProgressSink | None,
    stop: StopSignal | None,
    executor: Executor | None,
) -> RunStats:
    wall_start = time.perf_counter()
    stats = RunStats(
        mode=job.mode,
        io=job.io,
        jobs=job.jobs,
        kernel=job.kernel.name,
        compression=str(job.profile.get("compress") or "").upper(),
    )
    progress = progress or NullProgress()
    spec = WorkerSpec(
        run_id=next(_run_ids),
        kernel_ref=job.kernel.ref,
        params=job.params,
        inputs=job.inputs,
        infos=job.infos,
        fill=job.kernel.fill,
        halo=job.halo,
        dtype=job.dtype.name,
        bands=job.bands,
        in_process=job.mode in ("processes", "mpi"),
        gdal_cache_bytes=job.worker_cache_bytes,
        gdal_config=tuple(network_config().items()),
    )
    main_reader = WindowReader(job.inputs, job.infos, job.kernel.fill) if job.io == "main" else None
    slots = None
    if job.mode == "processes":
        from mpraster.transport import SlotPool

        slots = SlotPool(job.in_flight, *job.window_bytes(inputs=job.io == "main"))
    resumed = _ResumeSource(job) if job.resume_from is not None else None
    owned = executor is None
    if owned:
        executor = EXECUTOR_FACTORIES[job.mode](job.jobs, spec)
    per_task = job.mode in _SPEC_PER_TASK
    checkpoints = Checkpoints(job.fingerprint, len(job.tiles), job.checkpoint_every)
    finished = False
    try:
        with OutputWriter(
            job.output, job.profile, job.overwrite, job.cog, checkpoints, job.tags
        ) as writer:

            def submit(task: WindowTask) -> Future:
                if resumed is not None and resumed.has(task):
                    start = time.perf_counter()
                    future: Future = Future()
                    future.set_result(WindowResult(task.index, resumed.read(task), 0.0, 0.0, 0))
                    stats.read_seconds += time.perf_counter() - start
                    stats.windows_resumed += 1
                    return future
                if job.io == "workers":
                    if per_task:
                        return executor.submit(_read_and_compute_with_spec, spec, task)
                    slot = slots.acquire() if slots else None
                    return executor.submit(_read_and_compute, task, slot)
                start = time.perf_counter()
                arrays = main_reader.read(task)
                stats.read_seconds += time.perf_counter() - start
                stats.bytes_read += sum(a.nbytes for a in arrays)
                if per_task:
                    return executor.submit(_compute_with_spec, spec, task, arrays)
                if slots is None:
                    return executor.submit(_compute, task, arrays)
                return executor.submit(_compute, task, None, slots.acquire(arrays))

            assembly = TileAssembly(writer, job.dtype, job.bands)

            def write(task: WindowTask, result: WindowResult) -> None:
                start = time.perf_counter()
                data = result.data
                if result.slot is not None:
                    data = slots.result(result.slot, result.shape, job.dtype)
                assembly.add(task, data, result.checksum)
                if result.slot is not None:
                    slots.release(result.slot)
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
                _schedule(job.tasks, submit, write, job.in_flight, stats, stop, job.window_timeout)
            except (Interrupted, KeyboardInterrupt):
                writer.stop()
                raise
            start = time.perf_counter()
            writer.commit()
            stats.write_seconds += time.perf_counter() - start
        finished = True
    except KeyboardInterrupt as err:
        raise Interrupted(
            f"interrupted after {stats.windows} of {len(job.tasks)} windows; run the same "
            "command with --resume to finish",
            signal.SIGINT,
        ) from err
    finally:
        if resumed is not None:
            resumed.close(remove=finished)
        if not owned:
            pass  # its owner shuts it down, waiting for the windows still in flight
        elif finished:
            executor.shutdown(wait=True)
        else:
            _stop_executor(executor, spec.run_id)
        _close_thread_states(spec.run_id)
        if slots is not None:
            slots.close()
        if main_reader is not None:
            main_reader.close()
        progress.close()
    stats.wall_seconds = time.perf_counter() - wall_start
    progress.finish(stats)
    return stats
