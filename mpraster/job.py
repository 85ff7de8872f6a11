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
from rasterio.windows import Window

from mpraster import __version__, budget
from mpraster.creation_options import check_creation_options, output_profile
from mpraster.errors import KernelDefinitionError, OptionError
from mpraster.inputs import (
    InputInfo,
    InputSpec,
    gdal_env,
    inspect_inputs_and_metadata,
    parse_input,
)
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
from mpraster.output import CogOptions, check_output
from mpraster.resume import JournalState, fingerprint, input_identity, previous_run
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
class Job(budget.CacheBudget):
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
    checkpoint_bytes: int = int(CHECKPOINT_MB * 2**20)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    window_timeout: float | None = None
    gdal_config: Mapping[str, str] = dataclasses.field(default_factory=dict)
    validity: OutputValidity = dataclasses.field(default_factory=OutputValidity)
    metadata: OutputMetadata = dataclasses.field(default_factory=OutputMetadata)

    @property
    def tiles(self) -> list[Window]:
        """The tile windows the writer writes, in plan order."""
        return tile_windows(self.tasks)

    @property
    def checkpoint_every(self) -> int:
        """Tile windows between checkpoints (about ``checkpoint_bytes`` of output)."""
        tile_bytes = self.bands * self.dtype.itemsize * self.block_size**2
        return max(1, self.checkpoint_bytes // tile_bytes)

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
        window_out = self.bands * self.dtype.itemsize * max(t.pixels for t in self.tasks)
        if self.validity.writes_mask:
            window_out += max(t.pixels for t in self.tasks) + 64
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
            f"validity: {self.validity.describe()}; georeferenced by "
            f"{self.metadata.georeferencing.kind}",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class _OutputSpec:
    """What the kernel makes of the inputs: the output's type, bands, nodata and profile."""

    dtype: np.dtype
    bands: int
    profile: Mapping[str, Any]
    validity: OutputValidity
    metadata: OutputMetadata


def plan_job(
    inputs: InputsArg,
    output: str | os.PathLike,
    kernel: str | Kernel | Callable[..., Any],
    options: RunOptions | None = None,
    **changes: Any,
) -> Job:
    """Check every input and option and plan the run, without reading any pixel.

    Takes the arguments of `mpraster.run` (a `RunOptions`, or its fields as keywords; not
    ``progress`` or ``stop``) and raises the same errors a real run would raise for them.
    """
    options = RunOptions.of(options, **changes)
    check_output_format(output)
    specs = input_specs(inputs, options.bidx)
    kernel = as_kernel(kernel)
    params = _kernel_params(kernel, options)
    jobs = options.worker_count
    mode, io, why = options.placement(kernel)
    check_importable("kernel", kernel.name, kernel.ref, mode)
    with gdal_env(**options.gdal_config):
        infos, metadata = inspect_inputs_and_metadata(specs)
    out = _output_spec(kernel, specs, infos, metadata, params, options, jobs)
    halo = kernel.halo(params)
    tasks = plan_windows(
        infos[0].height, infos[0].width, options.block_size, halo, _TASKS_PER_WORKER * jobs
    )
    job = Job(
        inputs=tuple(specs),
        output=os.fspath(output),
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
        dtype=out.dtype,
        bands=out.bands,
        profile=out.profile,
        tasks=tuple(tasks),
        overwrite=options.overwrite,
        cog=options.cog,
        fingerprint=_fingerprint(specs, infos, kernel, params, out, options),
        checkpoint_bytes=int(options.checkpoint_mb * 2**20),
        window_timeout=options.window_timeout,
        gdal_config=dict(options.gdal_config),
        validity=out.validity,
        metadata=out.metadata,
    )
    if options.shard is not None:
        job = _shard(job, options)
    # Before looking at leftovers: a running run's partial is not an interrupted one.
    check_not_locked(job.output)
    check_output(job.output, options.overwrite)
    found = previous_run(job.output, job.fingerprint, options.resume, options.overwrite)
    return dataclasses.replace(job, resume_from=found)


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
    specs: Sequence[InputSpec],
    infos: Sequence[InputInfo],
    metadata: Sequence[InputMetadata],
    params: Mapping[str, Any],
    options: RunOptions,
    jobs: int,
) -> _OutputSpec:
    """Check the inputs against the kernel and decide the output; see `_OutputSpec`."""
    names = [str(spec) for spec in specs]
    kernel.check_inputs([i.count for i in infos], names)
    kernel.check_dtypes([i.dtype for i in infos], names)
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
    return _OutputSpec(dtype, bands, profile, validity, out_meta)


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
) -> str:
    """What makes two runs the same job, for the journal (see `mpraster.resume`)."""
    return fingerprint(
        {
            "inputs": [
                {**input_identity(s.path), "bands": i.bands}
                for s, i in zip(specs, infos, strict=True)
            ],
            "kernel": [kernel.name, kernel.ref],
            "params": params,
            "profile": {k: v for k, v in out.profile.items() if k != "num_threads"},
            "validity": dataclasses.asdict(out.validity),
            "metadata": out.metadata.to_json(),
            "block": options.block_size,
            "cog": options.cog,
            # Where checkpoints fall shapes a compressed file's layout.
            "checkpoint_mb": options.checkpoint_mb,
            "version": __version__,
        }
    )


def _shard(job: Job, options: RunOptions) -> Job:
    """Narrow ``job`` to its shard: a job of its own, writing its share of the tiles to a
    file of its own, tagged so that `mpraster.merge.merge_shards` can check and assemble."""
    index, count = options.shard
    shard_tiles = shard_range(len(job.tiles), index, count)
    plan = {
        "creation_options": dict(options.creation_options),
        "block_size": options.block_size,
        "checkpoint_mb": options.checkpoint_mb,
        "cog": options.cog and dataclasses.asdict(options.cog),
        "metadata": job.metadata.to_json(),
        "mask": job.validity.writes_mask,
    }
    tags = {
        "MPRASTER_JOB": job.fingerprint,
        "MPRASTER_SHARD": f"{index}/{count}",
        "MPRASTER_PLAN": json.dumps(plan),
    }
    return dataclasses.replace(
        job,
        tasks=tuple(tasks_of_tiles(job.tasks, shard_tiles)),
        profile={**job.profile, "sparse_ok": "TRUE"},
        output=shard_path(job.output, index, count),
        fingerprint=fingerprint({"job": job.fingerprint, "shard": [index, count]}),
        tags=tags,
        cog=None,
    )
