"""The worker side: what runs in a worker thread, process or MPI rank for one window.

A worker is set up once from a `WorkerSpec` (its kernel and, for ``--io workers``, its own
dataset handles), then computes windows: read them (or take the arrays it was given), run
the kernel, check and crop the result, and send back a `WindowResult` with its timings.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import transform as window_transform

from mpraster.errors import WindowFailed
from mpraster.inputs import InputInfo, InputSpec, WindowReader, split_arrays
from mpraster.kernel_outputs import split_result
from mpraster.kernels import Kernel, KernelContext, load_kernel
from mpraster.resume import checksum
from mpraster.tiles import EncodedTile, TileEncoder
from mpraster.validity import OutputValidity, window_validity
from mpraster.windows import WindowTask, describe_window

if TYPE_CHECKING:
    from mpraster.block_reader import BlockReader
    from mpraster.modes.transport import Slot
    from mpraster.reductions import Reduction


@dataclass(frozen=True)
class WorkerOutput:
    """One output a worker returns: the kernel's output ``name`` (None for a kernel with
    one), its type and bands, and how it carries validity (with a mask or alpha, every
    result comes with its mask); ``tiles``: how its tiles are encoded, when the writer
    only places them (`mpraster.tiles.tile_options`; such a tile is journaled by its
    stored bytes, so the worker takes no checksum of its pixels); ``encode``: whether the
    worker encodes them itself."""

    name: str | None
    dtype: str
    bands: int
    validity: OutputValidity = field(default_factory=OutputValidity)
    tiles: tuple[tuple[str, Any], ...] | None = None
    encode: bool = False


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, small and picklable (no arrays, no handles).

    ``kernel`` is the kernel object itself for worker threads; process workers and MPI
    ranks get it as None and import it by ``kernel_ref``.
    """

    run_id: str
    kernel_ref: str
    params: Mapping[str, Any]
    inputs: tuple[InputSpec, ...]
    infos: tuple[InputInfo, ...]
    fill: str
    halo: int
    in_process: bool
    gdal_cache_bytes: int
    # The outputs to return, in the order the writer writes them (none for a reduction).
    outputs: tuple[WorkerOutput, ...] = ()
    # GDAL configuration every worker process applies (network timeouts and retries).
    gdal_config: tuple[tuple[str, str], ...] = ()
    kernel: Kernel | None = field(default=None, compare=False)
    # A reduction's run (`mpraster.reduce`): windows give partials, not tiles. Pickled
    # with the spec (its parameters are its attributes); no kernel then.
    reduction: Reduction | None = field(default=None, compare=False)

    def context(self, task: WindowTask, masks: tuple[np.ndarray | None, ...] = ()) -> KernelContext:
        """The `KernelContext` of one window (``masks``: per input, its mask or None)."""
        return KernelContext(
            window=task.window,
            read=task.read,
            transform=window_transform(task.read, self.infos[0].transform),
            nodata=tuple(info.nodata for info in self.infos),
            halo=self.halo,
            band_nodata=tuple(info.band_nodata for info in self.infos),
            masks=masks or (None,) * len(self.infos),
        )


@dataclass
class WindowResult:
    """One window's output and the time spent on it, sent back to the main process."""

    index: int
    # Per output, its array, or its tile as the output stores it (`EncodedTile`); None
    # when they travelled in shared memory. A reduction's window sends its partial here.
    data: Any
    read_seconds: float
    compute_seconds: float
    bytes_read: int
    # When the results travelled in shared memory: the slot, and the window's rows, cols.
    slot: Slot | None = None
    shape: tuple[int, ...] = ()
    # Per output, the journal's checksum of a whole tile window's result, taken by the
    # worker so that the writer does not spend its time on it (None for a part of a tile).
    checksum: tuple[int | None, ...] | None = None
    # Per output, its mask over the window (uint8, 0 where invalid) or None; in shared
    # memory with the results when they travelled there (``mask`` is then None).
    mask: tuple[np.ndarray | None, ...] | None = None

    def parts(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per output, its array and mask, for a result that did not travel in a slot."""
        masks = self.mask or (None,) * len(self.data)
        return list(zip(self.data, masks, strict=True))


class WorkerState:
    """A worker's kernel and, for worker I/O, its own dataset handles (opened lazily)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.reduction = spec.reduction
        if self.reduction is None:
            self.kernel = spec.kernel or load_kernel(spec.kernel_ref)
        self.reader: WindowReader | BlockReader | None = None
        self.thread = threading.current_thread()
        # Whole tile windows of the outputs whose writer only places them are encoded
        # here (None for the others: GDAL's writer encodes them).
        self.encoders: list[TileEncoder | None] | None = None
        if any(out.encode for out in spec.outputs):
            self.encoders = [TileEncoder(o.tiles) if o.encode else None for o in spec.outputs]

    def read(self, task: WindowTask) -> list[np.ndarray]:
        if self.reader is None and self.reduction is not None:
            # Imported here: a run that writes a raster needs none of the reductions' code.
            from mpraster.block_reader import BlockReader

            self.reader = BlockReader(self.spec.inputs, self.spec.infos)
        elif self.reader is None:
            self.reader = WindowReader(self.spec.inputs, self.spec.infos, self.spec.fill)
        return self.reader.read(task)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


# Each worker thread's (or process's, or rank's) own state: a pool thread finds it here.
_local = threading.local()


def init_worker(spec: WorkerSpec, states: list[WorkerState] | None = None) -> None:
    """Set this worker up for ``spec``'s run; ``states`` collects a thread pool's states."""
    if spec.in_process:
        # The main process owns Ctrl-C and the batch system's SIGTERM: it stops dispatching
        # and cleans up; a worker that died of the signal first would look like a crash.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if "GDAL_CACHEMAX" not in os.environ:
            # GDAL sizes its block cache at 5% of RAM per process unless told otherwise:
            # 24 workers would reserve more than the node. Read once, at first use.
            os.environ["GDAL_CACHEMAX"] = str(spec.gdal_cache_bytes)
        # The main process's GDAL configuration (network timeouts) does not reach another
        # process; GDAL reads the environment whenever an option is not set otherwise.
        os.environ.update(spec.gdal_config)
        # The main process has said so once already, when it planned the run.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
    state = WorkerState(spec)
    _local.state = state
    if states is not None:
        states.append(state)  # list.append is atomic: pool threads start concurrently


def apply_kernel(
    kernel: Kernel,
    params: Mapping[str, Any],
    task: WindowTask,
    arrays: Sequence[np.ndarray],
    dtype: np.dtype,
    bands: int,
    ctx: KernelContext,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run a kernel with one output on one window's arrays, check its result and crop off
    the halo; see `apply_kernel_outputs`."""
    return apply_kernel_outputs(kernel, params, task, arrays, [(None, dtype, bands)], ctx)[0]


def apply_kernel_outputs(
    kernel: Kernel,
    params: Mapping[str, Any],
    task: WindowTask,
    arrays: Sequence[np.ndarray],
    outputs: Sequence[tuple[str | None, np.dtype, int]],
    ctx: KernelContext,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Run the kernel on one window's arrays, check each wanted output and crop off the
    halo: per ``(name, dtype, bands)`` of ``outputs``, the array and its validity.

    The kernel may return the read window's size (the halo is cropped here) or the
    window's own size; a kernel declared ``valid="kernel"`` returns ``(array, valid)``,
    and the validity comes back cropped too (else None). A kernel with several outputs
    returns them by name (see `mpraster.kernel_outputs.split_result`).

    Raises
    ------
    WindowFailed
        If the kernel raises, or returns something other than a (bands, rows, cols) array
        of the declared dtype (per output), naming the window.
    """
    try:
        result = kernel.call(arrays, params, ctx)
    except Exception as err:
        raise WindowFailed(
            f"kernel '{kernel.name}' failed on window {describe_window(task)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if kernel.outputs:
        parts = split_result(result, kernel.outputs, [name for name, _, _ in outputs])
        if isinstance(parts, str):
            raise WindowFailed(
                f"kernel '{kernel.name}' returned {parts} (on window {describe_window(task)})"
            )
    else:
        parts = [result]
    return [
        _checked(kernel if name is None else kernel.for_output(name), task, out, dtype, bands)
        for (name, dtype, bands), out in zip(outputs, parts, strict=True)
    ]


def _checked(
    kernel: Kernel, task: WindowTask, out: Any, dtype: np.dtype, bands: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """One output's result checked and cropped to the window, with its validity."""
    valid = None
    if kernel.spec.valid == "kernel":
        out, valid = _split_validity(kernel, task, out)
    window_shape = (bands, int(task.window.height), int(task.window.width))
    if isinstance(out, np.ndarray) and out.ndim == 2 and bands == 1:
        out = out[np.newaxis]
    problem = _wrong_result(kernel, out, dtype, bands, task)
    if problem:
        raise WindowFailed(problem)
    if valid is not None and valid.shape != out.shape[1:]:
        raise WindowFailed(
            f"kernel '{kernel.name}' returned validity of shape {valid.shape} on window "
            f"{describe_window(task)}; expected {out.shape[1:]}, the array's rows and cols"
        )
    if out.shape == window_shape:
        return out, valid
    r0, r1, c0, c1 = task.crop
    return out[:, r0:r1, c0:c1], None if valid is None else valid[r0:r1, c0:c1]


def _split_validity(kernel: Kernel, task: WindowTask, result: Any) -> tuple[Any, np.ndarray]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise WindowFailed(
            f"kernel '{kernel.name}' returned {type(result).__name__} on window "
            f"{describe_window(task)}; a kernel declared valid='kernel' returns (array, valid)"
        )
    return result[0], np.asarray(result[1])


def _wrong_result(
    kernel: Kernel, out: Any, dtype: np.dtype, bands: int, task: WindowTask
) -> str | None:
    """What is wrong with a kernel's result on ``task`` and how to fix it; None if nothing.

    The fix never asks for what the kernel already declares: a kernel that declares
    ``dtype=`` (or ``bands=``) and returns another is told what it returned and declared.
    """
    read_shape = (bands, int(task.read.height), int(task.read.width))
    window_shape = (bands, int(task.window.height), int(task.window.width))
    start = f"kernel '{kernel.name}' returned"
    where = f"on window {describe_window(task)}"
    if not isinstance(out, np.ndarray):
        got = "None (does it return its result?)" if out is None else type(out).__name__
        return f"{start} {got} {where}; expected a {dtype} array {read_shape}"
    if out.dtype == dtype and out.shape in (read_shape, window_shape):
        return None
    fixes = []
    if out.dtype != dtype:
        fixes.append(_declared_fix(kernel, "dtype", str(out.dtype), str(dtype)))
    if out.ndim not in (2, 3):
        fixes.append("return a (bands, rows, cols) array, or (rows, cols) for one band")
    else:
        got_bands = out.shape[0] if out.ndim == 3 else 1
        if got_bands != bands:
            fixes.append(_declared_fix(kernel, "bands", got_bands, bands))
        if out.shape[-2:] not in (read_shape[1:], window_shape[1:]):
            fixes.append(f"return rows and cols {_sizes(read_shape, window_shape)}")
    expected = f"expected {dtype} {read_shape}"
    return f"{start} {out.dtype} {out.shape} {where}; {expected}: {'; '.join(fixes)}"


def _declared_fix(kernel: Kernel, what: str, got: str | int, expected: str | int) -> str:
    """How to fix a result whose ``what`` (``dtype`` or ``bands``) is not the output's,
    saying what the kernel declares when it declares it."""
    wanted = f"{expected} band{'s' if expected != 1 else ''}" if what == "bands" else expected
    rule = getattr(kernel.spec, what)
    if rule is None:
        default = "the input's data type" if what == "dtype" else "the first input's bands"
        return (
            f"the output has {default} unless the kernel declares others: declare "
            f"@mpraster.kernel({what}={got!r}), or return {wanted}"
        )
    if callable(rule):
        return f"its {what} rule gives {expected!r} for these inputs, so return {wanted}"
    return f"it declares {what}={expected!r}, so return {wanted}"


def _sizes(read_shape: tuple[int, ...], window_shape: tuple[int, ...]) -> str:
    """The rows and cols a kernel may return: the read window's, or the window's own."""
    if read_shape == window_shape:
        return str(read_shape[1:])
    return f"{read_shape[1:]} (the read window: the halo is cropped for you) or {window_shape[1:]}"


def compute(
    task: WindowTask, arrays: list[np.ndarray] | None, slot: Slot | None = None
) -> WindowResult:
    """Run the kernel on a window's arrays (or the ones in ``slot``): the inputs', then
    their masks (see `mpraster.inputs.WindowReader.read`)."""
    state: WorkerState = _local.state
    start = time.perf_counter()
    if arrays is None:
        # Imported here: shared memory is only for process workers, and costs start-up.
        from mpraster.modes.transport import slot_inputs

        arrays = slot_inputs(slot)
    if state.reduction is not None:
        return reduce_window(state.reduction, task, arrays, slot, start)
    spec = state.spec
    inputs, masks = split_arrays(arrays, spec.infos)
    results = apply_kernel_outputs(
        state.kernel,
        spec.params,
        task,
        inputs,
        [(o.name, np.dtype(o.dtype), o.bands) for o in spec.outputs],
        spec.context(task, masks),
    )
    outs, out_masks, sums = [], [], []
    for output, (out, valid) in zip(spec.outputs, results, strict=True):
        mask = None
        if output.validity.per_dataset:
            if output.validity.carrier == "alpha" and not out.flags.writeable:
                out = out.copy()  # its alpha band is set to 0 where invalid
            mask = window_validity(output.validity, inputs, masks, task.crop, out, valid)
        outs.append(out)
        out_masks.append(mask)
        placed = output.tiles is not None  # journaled by its bytes, taken by the writer
        sums.append(checksum(out, mask) if task.parts == 1 and not placed else None)
    if state.encoders is not None and task.parts == 1:
        # The slot, if any, held only the inputs: it goes back with the result, and the
        # tiles travel pickled (an output GDAL encodes, with them, as its array).
        encoded = tuple(
            out if enc is None else _encode(enc, out, task)
            for enc, out in zip(state.encoders, outs, strict=True)
        )
        elapsed = time.perf_counter() - start
        return WindowResult(
            task.index, encoded, 0.0, elapsed, 0, slot, checksum=tuple(sums), mask=tuple(out_masks)
        )
    if slot is None:
        elapsed = time.perf_counter() - start
        return WindowResult(
            task.index, tuple(outs), 0.0, elapsed, 0, checksum=tuple(sums), mask=tuple(out_masks)
        )
    from mpraster.modes.transport import put_results

    put_results(slot, list(zip(outs, out_masks, strict=True)))
    elapsed = time.perf_counter() - start
    shape = tuple(outs[0].shape[1:])
    return WindowResult(task.index, None, 0.0, elapsed, 0, slot, shape, tuple(sums))


def _encode(encoder: TileEncoder, out: np.ndarray, task: WindowTask) -> EncodedTile:
    from rasterio.errors import RasterioError

    try:
        return encoder.encode(out)
    except RasterioError as err:
        raise WindowFailed(
            f"encoding the output's tile of window {describe_window(task)} failed: {err}"
        ) from err


def reduce_window(
    reduction: Reduction,
    task: WindowTask,
    arrays: Sequence[np.ndarray],
    slot: Slot | None,
    start: float,
) -> WindowResult:
    """One window's partial of ``reduction``, sent back pickled as the result's ``data``.

    ``arrays`` are a `BlockReader`'s (values and validity, input by input). The slot, if
    any, held only the inputs; it goes back with the result so that the main process
    hands it out again.

    Raises
    ------
    WindowFailed
        If the reduction raises, naming the window.
    """
    from mpraster.reductions import Block

    block = Block(task.index, task.window, tuple(arrays[0::2]), tuple(arrays[1::2]))
    try:
        partial = reduction.update(reduction.start(), block)
    except Exception as err:
        raise WindowFailed(
            f"reduction '{reduction.name}' failed on window {describe_window(task)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    elapsed = time.perf_counter() - start
    return WindowResult(task.index, partial, 0.0, elapsed, 0, slot)


def read_and_compute(task: WindowTask, slot: Slot | None = None) -> WindowResult:
    """Read a window with this worker's own handles, then `compute` it."""
    state: WorkerState = _local.state
    start = time.perf_counter()
    arrays = state.read(task)
    read_seconds = time.perf_counter() - start
    result = compute(task, arrays, slot)
    result.read_seconds = read_seconds
    result.bytes_read = sum(a.nbytes for a in arrays)
    return result


def _ensure_worker(spec: WorkerSpec) -> None:
    """Set up this worker for ``spec``'s run unless it already is (MPI ranks)."""
    state = getattr(_local, "state", None)
    if state is None or state.spec != spec:
        if state is not None:
            state.close()
        init_worker(spec)


def compute_with_spec(spec: WorkerSpec, task: WindowTask, arrays: list[np.ndarray]) -> WindowResult:
    """`compute`, for a worker that serves any run (an MPI rank): set up from ``spec``."""
    _ensure_worker(spec)
    return compute(task, arrays)


def read_and_compute_with_spec(spec: WorkerSpec, task: WindowTask) -> WindowResult:
    """`read_and_compute`, for a worker that serves any run (an MPI rank)."""
    _ensure_worker(spec)
    return read_and_compute(task)
