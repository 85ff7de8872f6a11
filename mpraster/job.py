"""A job: a run checked and planned before any pixel is read.

`plan_job` reads the inputs' headers, checks them against the kernel and the options,
decides the output (type, bands, nodata, GDAL profile), cuts the grid into windows, takes
the job's fingerprint for the journal, narrows it to a shard if asked, and finds an
interrupted run to resume. It runs nothing; `mpraster.execute` runs the `Job` it returns.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.windows import Window

from mpraster import __version__, budget
from mpraster.creation_options import check_creation_options, followed_codec, output_profile
from mpraster.errors import KernelDefinitionError, OptionError
from mpraster.inputs import (
    InputInfo,
    InputSpec,
    gdal_env,
    inspect_inputs_and_metadata,
    parse_input,
)
from mpraster.kernel_params import closest, did_you_mean, name_key
from mpraster.kernels import Kernel, as_kernel, check_importable, representable
from mpraster.lock import check_not_locked
from mpraster.metadata import (
    InputMetadata,
    OutputMetadata,
    alpha_band,
    band_sources,
    output_metadata,
)
from mpraster.options import CHECKPOINT_MB, RunOptions, check_output_format
from mpraster.output import CogOptions, check_output, writer_profiles
from mpraster.resume import JournalState, fingerprint, input_identity, previous_run
from mpraster.tiles import placement_problem, tiles_described
from mpraster.validity import OutputValidity, plan_validity
from mpraster.validity import band_nodata as nodata_per_band
from mpraster.windows import (
    WindowTask,
    plan_windows,
    shard_path,
    shard_range,
    tasks_of_tiles,
    tile_windows,
)

# Few tiles over many workers leave workers idle at the end of a run (4 tiles of unequal
# size cannot be split evenly over 2 workers); the planner cuts tiles into row strips until
# there are this many tasks per worker.
_TASKS_PER_WORKER = 32

InputsArg = str | os.PathLike | InputSpec | Sequence[str | os.PathLike | InputSpec]


@dataclass(frozen=True)
class OutputPlan:
    """One file a job writes: the kernel's output ``name`` (None for a kernel with one
    output), and its type, bands, GDAL profile, validity, metadata and journal."""

    path: str
    name: str | None
    dtype: np.dtype
    bands: int
    profile: Mapping[str, Any]
    validity: OutputValidity = dataclasses.field(default_factory=OutputValidity)
    metadata: OutputMetadata = dataclasses.field(default_factory=OutputMetadata)
    fingerprint: str = ""
    resume_from: JournalState | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Why the output has its codec (see `mpraster.creation_options.followed_codec`).
    codec_why: str = ""


@dataclass(frozen=True)
class Job(budget.CacheBudget):
    """A checked and planned run: everything decided before any pixel is read."""

    inputs: tuple[InputSpec, ...]
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
    outputs: tuple[OutputPlan, ...]
    tasks: tuple[WindowTask, ...]
    overwrite: bool
    cog: CogOptions | None = None
    checkpoint_bytes: int = int(CHECKPOINT_MB * 2**20)
    window_timeout: float | None = None
    gdal_config: Mapping[str, str] = dataclasses.field(default_factory=dict)

    # The first output's, for a job with one (most jobs, and the library's callers).
    output = property(lambda self: self.outputs[0].path, doc="The first output's path.")
    dtype = property(lambda self: self.outputs[0].dtype, doc="The first output's type.")
    bands = property(lambda self: self.outputs[0].bands, doc="The first output's bands.")
    profile = property(lambda self: self.outputs[0].profile, doc="The first output's profile.")
    validity = property(lambda self: self.outputs[0].validity, doc="The first output's.")
    metadata = property(lambda self: self.outputs[0].metadata, doc="The first output's.")
    resume_from = property(lambda self: self.outputs[0].resume_from, doc="The first output's.")

    @property
    def tiles(self) -> list[Window]:
        """The tile windows the writer writes, in plan order."""
        return tile_windows(self.tasks)

    def checkpoint_every(self, output: OutputPlan) -> int:
        """Tile windows between checkpoints of ``output`` (about ``checkpoint_bytes`` of
        it): where a single-output run of it would put them, so its bytes are the same."""
        tile_bytes = output.bands * output.dtype.itemsize * self.block_size**2
        return max(1, self.checkpoint_bytes // tile_bytes)

    @property
    def tile_bytes(self) -> int:
        """Bytes of one whole tile window of every output."""
        return sum(o.bands * o.dtype.itemsize for o in self.outputs) * self.block_size**2

    def window_bytes(self, inputs: bool = True) -> tuple[int, int]:
        """Bytes of the largest window's inputs (as read, halo included) and output."""
        largest = max(self.tasks, key=lambda t: int(t.read.height) * int(t.read.width))
        read_pixels = int(largest.read.height) * int(largest.read.width)
        per_pixel = sum(i.count * np.dtype(i.dtype).itemsize for i in self.infos)
        # Masks travel beside the arrays, a byte a pixel.
        masks = sum(1 for i in self.infos if i.has_mask)
        per_pixel += masks
        # Each array is aligned in a slot; a little slack per array covers it.
        window_in = (per_pixel * read_pixels + 64 * (len(self.infos) + masks)) if inputs else 0
        pixels = max(t.pixels for t in self.tasks)
        window_out = 0
        for out in self.outputs:
            # Each output's array is aligned in a slot, after the one before.
            window_out += out.bands * out.dtype.itemsize * pixels + 64
            if out.validity.writes_mask:
                window_out += pixels + 64
        return window_in, window_out

    def memory_estimate(self) -> dict[str, int]:
        """Bytes of pixel data held at the peak (see `mpraster.budget.memory_estimate`)."""
        return budget.memory_estimate(self)

    def describe(self) -> str:
        """The plan in a few lines, as ``--dry-run`` prints it."""
        first = self.infos[0]
        lines = ["inputs:"]
        for info in self.infos:
            nodata = info.nodata if len(set(map(str, info.band_nodata))) == 1 else info.band_nodata
            mask = ", a mask" if info.has_mask else ""
            lines.append(
                f"  {info.path}: {info.count} x {info.height} x {info.width} {info.dtype}, "
                f"nodata {nodata}{mask}, CRS {info.crs}"
            )
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items()) or "none"
        tiles = len({(t.tile.row_off, t.tile.col_off) for t in self.tasks})
        memory = self.memory_estimate()
        lines += [
            f"kernel: {self.kernel.name} ({params}); halo {self.halo}, "
            f"{'releases' if self.kernel.releases_gil else 'holds'} the GIL",
            f"mode: {self.mode}, io={self.io}, -j {self.jobs} ({self.why})",
            f"plan: {len(self.tasks)} windows over {tiles} tiles of {self.block_size}, "
            f"{first.height * first.width / 1e6:.2f} MPix; at most {self.in_flight} windows "
            "in flight",
            f"memory estimate: {memory['total'] / 2**20:.0f} MiB of pixel data at the peak "
            f"({memory['windows'] / 2**20:.1f} MiB windows in flight + "
            + (
                f"{memory['reader_rows'] / 2**20:.0f} MiB of whole rows read + "
                if memory["reader_rows"]
                else ""
            )
            + f"GDAL caches capped at {memory['gdal_cache'] / 2**20:.0f} MiB), plus ~70 MiB "
            "per process",
        ]
        for out in self.outputs:
            profile = ", ".join(
                f"{k}={v}" for k, v in out.profile.items() if k not in ("crs", "transform")
            )
            name = f" [{out.name}]" if out.name else ""
            codec = str(out.profile.get("compress") or "none").upper()
            why = out.codec_why
            if self.cog and "compress" not in out.profile:
                codec, why = "LZW", f"GDAL's COG driver's default; {why.split(';')[0]}"
            if out.profile.get("predictor"):
                codec += f", PREDICTOR={out.profile['predictor']}"
            lines += [
                f"output{name}: {out.path} ({'COG, ' if self.cog else ''}{profile})",
                f"  codec: {codec} ({why})",
                f"  tiles: {self._who_encodes(out)}",
                f"  validity: {out.validity.describe()}; georeferenced by "
                f"{out.metadata.georeferencing.kind}",
            ]
        return "\n".join(lines)

    def placement_problem(self, out: OutputPlan) -> str | None:
        """Why ``out``'s tiles are not encoded apart and placed (None if they are), as
        its writer decides (`mpraster.tiles.placement_problem`)."""
        return placement_problem(out.profile, self.cog is not None, out.validity.writes_mask)

    def workers_encode(self, out: OutputPlan) -> bool:
        """Whether the workers encode ``out``'s tiles: placed, and several workers (a lone
        worker leaves them to the writer's pool: the kernel and the encoder then run at
        once, on two threads)."""
        return self.jobs > 1 and self.placement_problem(out) is None

    def _who_encodes(self, out: OutputPlan) -> str:
        """Who encodes ``out``'s tiles and how they reach the file (`mpraster.tiles`)."""
        cog = self.cog is not None
        problem = self.placement_problem(out)
        if problem:
            if writer_profiles(out.profile, cog)[1]:
                return (
                    f"GDAL writes them to an uncompressed working file and compresses a copy "
                    f"at the end ({problem})"
                )
            threads = out.profile.get("num_threads")
            on = f" on {threads} threads" if threads and out.profile.get("compress") else ""
            return f"GDAL encodes and writes every tile{on} ({problem})"
        # Uncompressed tiles are laid out as stored, without GDAL (`mpraster.tiles`).
        raw = str(out.profile.get("compress") or "NONE").upper() == "NONE"
        encoded, encodes = ("laid out", "lays out") if raw else ("encoded", "encodes")
        if self.jobs == 1:
            return f"{encoded} on a thread beside the lone worker; the writer places them"
        if any(task.parts > 1 for task in self.tasks):
            return (
                f"put back together from row strips and {encoded} on a pool of {self.jobs} "
                "threads; the writer places them"
            )
        return f"each worker {encodes} the tiles it computes; the writer places them as they are"


@dataclass(frozen=True)
class _OutputSpec:
    """What the kernel makes of the inputs: the output's type, bands, nodata and profile."""

    dtype: np.dtype
    bands: int
    profile: Mapping[str, Any]
    validity: OutputValidity
    metadata: OutputMetadata
    codec_why: str = ""


def plan_job(
    inputs: InputsArg,
    output: str | os.PathLike | Mapping[str, str | os.PathLike],
    kernel: str | Kernel | Callable[..., Any],
    options: RunOptions | None = None,
    **changes: Any,
) -> Job:
    """Check every input and option and plan the run, without reading any pixel.

    Takes the arguments of `mpraster.run` (a `RunOptions`, or its fields as keywords; not
    ``progress`` or ``stop``) and raises the same errors a real run would raise for them.
    ``output`` is a path, or for a kernel with several outputs a mapping from output name
    to path (the outputs to write).
    """
    options = RunOptions.of(options, **changes)
    for path in output.values() if isinstance(output, Mapping) else [output]:
        check_output_format(path)
    specs = input_specs(inputs, options.bidx)
    kernel = as_kernel(kernel)
    targets = output_targets(kernel, output)
    params = _kernel_params(kernel, options)
    jobs = options.worker_count
    # The mode needs no input's header: a kernel the mode cannot import fails first.
    check_importable("kernel", kernel.name, kernel.ref, options.placement(kernel)[0])
    with gdal_env(**options.gdal_config):
        infos, metadata = inspect_inputs_and_metadata(specs)
    names = [str(spec) for spec in specs]
    kernel.check_inputs([i.count for i in infos], names)
    kernel.check_dtypes([i.dtype for i in infos], names)
    outputs = []
    for name, path in targets.items():
        view = kernel if name is None else kernel.for_output(name)
        out = _output_spec(view, infos, metadata, params, options, jobs)
        print_ = _fingerprint(specs, infos, kernel, params, out, options, name, targets)
        outputs.append(
            OutputPlan(
                os.fspath(path), name, out.dtype, out.bands, out.profile, out.validity,
                out.metadata, print_, codec_why=out.codec_why,
            )
        )  # fmt: skip
    halo = kernel.halo(params)
    mode, io, why = options.placement(kernel, infos, halo)
    tasks = plan_windows(
        infos[0].height, infos[0].width, options.block_size, halo, _TASKS_PER_WORKER * jobs
    )
    job = Job(
        inputs=tuple(specs),
        kernel=kernel,
        params=params,
        mode=mode,
        io=io,
        why=why,
        jobs=jobs,
        prefetch=options.prefetch,
        block_size=options.block_size,
        halo=halo,
        infos=tuple(infos),
        outputs=tuple(outputs),
        tasks=tuple(tasks),
        overwrite=options.overwrite,
        cog=options.cog,
        checkpoint_bytes=int(options.checkpoint_mb * 2**20),
        window_timeout=options.window_timeout,
        gdal_config=dict(options.gdal_config),
    )
    if options.shard is not None:
        job = _shard(job, options)
    # Before looking at leftovers: a running run's partial is not an interrupted one.
    for out in job.outputs:
        check_not_locked(out.path)
    for out in job.outputs:
        check_output(out.path, options.overwrite)
    found = [
        previous_run(out.path, out.fingerprint, options.resume, options.overwrite)
        for out in job.outputs
    ]
    return _with_outputs(
        job,
        [dataclasses.replace(o, resume_from=f) for o, f in zip(job.outputs, found, strict=True)],
    )


def _with_outputs(job: Job, outputs: Sequence[OutputPlan], **changes: Any) -> Job:
    return dataclasses.replace(job, outputs=tuple(outputs), **changes)


def output_targets(
    kernel: Kernel, output: str | os.PathLike | Mapping[str, str | os.PathLike]
) -> dict[str | None, str]:
    """The files to write, by the kernel's output name (None for a kernel with one output).

    Raises
    ------
    OptionError
        If ``output`` does not suit the kernel: one path for a kernel with several outputs,
        names for one with one, an unknown name, none, or one path given twice.
    """
    declared = kernel.outputs
    if not isinstance(output, Mapping):
        if declared:
            raise OptionError(
                f"kernel '{kernel.name}' makes several outputs ({', '.join(declared)}): name "
                f"the ones to write with -o NAME=FILE, e.g. -o {declared[0]}={declared[0]}.tif"
            )
        return {None: os.fspath(output)}
    if not declared:
        raise OptionError(
            f"kernel '{kernel.name}' makes one output: give its file as the last argument, "
            "without -o NAME="
        )
    if not output:
        raise OptionError(f"no output named; kernel '{kernel.name}' makes {', '.join(declared)}")
    targets: dict[str | None, str] = {}
    for name, path in output.items():
        found = next((d for d in declared if name_key(d) == name_key(name)), None)
        if found is None:
            raise OptionError(
                f"kernel '{kernel.name}' has no output '{name}'"
                f"{did_you_mean(closest(name, declared))}; its outputs: {', '.join(declared)}"
            )
        targets[found] = os.fspath(path)
    paths = [os.path.abspath(p) for p in targets.values()]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise OptionError(f"two outputs would be written to {twice[0]}; give each its own file")
    # Declared order: the order the files are written and reported in, whatever was typed.
    return {d: targets[d] for d in declared if d in targets}


def input_specs(inputs: InputsArg, bidx: str | None) -> list[InputSpec]:
    """The inputs as given to `plan_job` (one or several; ``PATH:BANDS``), parsed."""
    if isinstance(inputs, (str, os.PathLike, InputSpec)):
        inputs = [inputs]
    specs = [parse_input(value, bidx) for value in inputs]
    if not specs:
        raise OptionError("no input given; pass at least one raster")
    return specs


def _kernel_params(kernel: Kernel, options: RunOptions) -> dict[str, Any]:
    """The kernel's parameters from ``-p`` and ``--dtype``, converted and checked."""
    raw = dict(options.params)
    if options.dtype is not None:
        if "dtype" not in kernel.params:
            raise OptionError(
                f"kernel '{kernel.name}' chooses its own output type; --dtype is for kernels "
                "with a dtype parameter (e.g. rescale)"
            )
        raw["dtype"] = options.dtype
    return kernel.parse_params(raw)


def _output_spec(
    kernel: Kernel,
    infos: Sequence[InputInfo],
    metadata: Sequence[InputMetadata],
    params: Mapping[str, Any],
    options: RunOptions,
    jobs: int,
) -> _OutputSpec:
    """Decide the output of ``kernel`` (for a kernel with several, the view of one of
    them: `Kernel.for_output`); see `_OutputSpec`."""
    dtype = kernel.output_dtype([i.dtype for i in infos], params)
    bands = kernel.output_bands([i.count for i in infos], params)
    if options.nodata is not None and not representable(options.nodata, dtype):
        raise OptionError(f"--nodata {options.nodata} does not fit the output type {dtype}")
    out_meta, sources = _output_metadata(kernel, infos, metadata, params, bands)
    validity = _output_validity(kernel, infos, sources, out_meta, dtype, params, options)
    profile = output_profile(
        infos[0], dtype, bands, options.block_size, options.creation_options, jobs,
        validity.nodata,
    )  # fmt: skip
    if out_meta.georeferencing.kind != "transform":
        # No transform to go with a CRS: GCPs with theirs, RPCs, or nothing.
        profile.update(out_meta.georeferencing.profile())
    check_creation_options(profile, options.cog is not None)
    codec_why = followed_codec(infos[0], dtype, options.creation_options)[1]
    return _OutputSpec(dtype, bands, profile, validity, out_meta, codec_why)


def _output_metadata(
    kernel: Kernel,
    infos: Sequence[InputInfo],
    metadata: Sequence[InputMetadata],
    params: Mapping[str, Any],
    bands: int,
) -> tuple[OutputMetadata, tuple[tuple[int, int] | None, ...]]:
    """The output's metadata, and the source band of each output band (see `kernel`'s
    ``bands_from``)."""
    try:
        sources = band_sources(kernel.spec.bands_from, [i.count for i in infos], bands, params)
        return output_metadata(metadata, sources, kernel.spec.band_meta, params), sources
    except (TypeError, ValueError) as err:
        raise KernelDefinitionError(f"kernel '{kernel.name}': {err}") from err


def _output_validity(
    kernel: Kernel,
    infos: Sequence[InputInfo],
    sources: Sequence[tuple[int, int] | None],
    metadata: OutputMetadata,
    dtype: np.dtype,
    params: Mapping[str, Any],
    options: RunOptions,
) -> OutputValidity:
    """How the output says which pixels are valid (see `mpraster.validity`)."""
    rule = kernel.spec.nodata
    fixed = None if rule is None or callable(rule) else rule
    band_nodata = [i.band_nodata for i in infos]
    out_nodata = nodata_per_band(
        band_nodata, sources, lambda view: kernel.output_nodata(view, dtype, params), fixed
    )
    return plan_validity(
        [i.has_mask for i in infos],
        band_nodata,
        out_nodata,
        kernel.spec.valid,
        options.nodata,
        alpha_band(metadata),
        dtype,
    )


def _fingerprint(
    specs: Sequence[InputSpec],
    infos: Sequence[InputInfo],
    kernel: Kernel,
    params: Mapping[str, Any],
    out: _OutputSpec,
    options: RunOptions,
    name: str | None = None,
    targets: Mapping[str | None, str] | None = None,
) -> str:
    """What makes two runs the same job, for an output's journal (see `mpraster.resume`).

    An output of a kernel with several is journaled with the others written beside it:
    a run resumes them together, or not at all.
    """
    description = {
        "inputs": [
            {**input_identity(s.path), "bands": i.bands} for s, i in zip(specs, infos, strict=True)
        ],
        "kernel": [kernel.name, kernel.ref],
        "params": params,
        "profile": {k: _described(v) for k, v in out.profile.items() if k != "num_threads"},
        "validity": dataclasses.asdict(out.validity),
        "metadata": out.metadata.to_json(),
        "block": options.block_size,
        "cog": options.cog,
        # Placed tiles (`mpraster.tiles`) lay the file out, and are journaled, otherwise.
        "placed": placement_problem(out.profile, options.cog is not None, out.validity.writes_mask)
        is None,
        # Where checkpoints fall shapes a compressed file's layout.
        "checkpoint_mb": options.checkpoint_mb,
        "version": __version__,
    }
    if name is not None:
        together = {n: os.path.abspath(p) for n, p in (targets or {}).items()}
        description["outputs"] = {"this": name, "together": together}
    return fingerprint(description)


def _described(value: Any) -> Any:
    """A profile value as the fingerprint describes it: a CRS by its WKT. Its ``str`` would
    first look for an authority code in PROJ's database (tens of milliseconds for a CRS
    without one, and PROJ may print an error on the way)."""
    return value.to_wkt() if isinstance(value, CRS) else value


def _shard(job: Job, options: RunOptions) -> Job:
    """Narrow ``job`` to its shard: a job of its own, writing its share of the tiles of
    each output to a file of its own, tagged so that `mpraster.merge.merge_shards` can
    check and assemble each output's shards."""
    index, count = options.shard
    shard_tiles = shard_range(len(job.tiles), index, count)
    outputs = []
    for out in job.outputs:
        plan = {
            "creation_options": dict(options.creation_options),
            "block_size": options.block_size,
            "checkpoint_mb": options.checkpoint_mb,
            "cog": options.cog and dataclasses.asdict(options.cog),
            "metadata": out.metadata.to_json(),
            "mask": out.validity.writes_mask,
        }
        if placement_problem(out.profile, False, out.validity.writes_mask) is None:
            # How the shard's tiles are encoded: merge copies them as they are when its
            # output would encode them so too.
            plan["tiles"] = tiles_described(out.profile)
        tags = {
            "MPRASTER_JOB": out.fingerprint,
            "MPRASTER_SHARD": f"{index}/{count}",
            "MPRASTER_PLAN": json.dumps(plan),
        }
        outputs.append(
            dataclasses.replace(
                out,
                profile={**out.profile, "sparse_ok": "TRUE"},
                path=shard_path(out.path, index, count),
                fingerprint=fingerprint({"job": out.fingerprint, "shard": [index, count]}),
                tags=tags,
            )
        )
    return _with_outputs(
        job, outputs, tasks=tuple(tasks_of_tiles(job.tasks, shard_tiles)), cog=None
    )
