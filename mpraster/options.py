"""How to run a job: one frozen options object, checked once, and the choices it leads to.

`RunOptions` holds every option of `mpraster.run` but the inputs, the output and the
kernel. The CLI builds one from its flags, the library from keyword arguments; the
planner (`mpraster.job`) reads it. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpraster.errors import OptionError
from mpraster.windows import check_block_size

if TYPE_CHECKING:
    from mpraster.inputs import InputInfo
    from mpraster.kernels import Kernel
    from mpraster.output import CogOptions

MODES = ("auto", "threads", "processes", "mpi")
IO_PLACEMENTS = ("main", "workers")
COG_MIN_BLOCK = 128
# Checkpoint about every this many megabytes of output (a whole number of tile windows).
CHECKPOINT_MB = 64.0
# The raster formats GDAL can write, other than GeoTIFF, and their file extensions: the
# union of GDAL's DMD_EXTENSIONS for drivers that can create files (as rasterio's
# raster_driver_extensions() reads them, so `rio convert` picks the same driver) on GDAL
# 3.10 and 3.12. A table, not a question to GDAL at run time: which drivers a GDAL has
# differs between builds and versions (3.12 dropped BLX, SGI, XPM, ...; plugins add
# others), and an output name must mean the same everywhere. tests/test_output_format.py
# checks it against the GDAL it runs on.
_OTHER_FORMATS = """
AAIGrid asc; ADRG gen; BAG bag; BLX blx; BMP bmp; BT bt; BYN byn err; CALS cal ct1;
DTED dt0 dt1 dt2; EHdr bil; ERS ers; GIF gif; GPKG gpkg gpkg.zip; GRIB grb grb2 grib2;
GTX gtx; HF2 hf2; HFA img; ILWIS mpl mpr; ISIS3 cub lbl; JP2OpenJPEG j2k jp2;
JPEG jpeg jpg; KMLSUPEROVERLAY kml kmz; KRO kro; LCP lcp; MBTiles mbtiles; MFF hdr;
MRF mrf; netCDF nc; NITF ntf; NTv2 gsb gvb; PCIDSK pix; PCRaster map; PDF pdf;
PDS4 xml; PNG png; PNM pgm pnm ppm; R rda; Rasterlite sqlite; RMF rsw; RRASTER grd;
RST rst; SAGA sdat sg-grd-z; SGI rgb; SIGDEM sigdem; SRTMHGT hgt; Terragen ter;
USGSDEM dem; VRT vrt; WEBP webp; XPM xpm; XYZ xyz; Zarr zarr; ZMap dat
"""
#: File extension (lower case, no dot) -> the GDAL driver it names, for other formats.
OTHER_FORMAT_EXTENSIONS = {
    ext: driver
    for entry in _OTHER_FORMATS.split(";")
    for driver, *extensions in [entry.split()]
    for ext in extensions
}


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, checked when made.

    Parameters
    ----------
    mode : {"auto", "threads", "processes", "mpi"}
        ``auto`` picks threads for a GIL-releasing kernel, processes otherwise; ``mpi``
        runs the windows on MPI ranks (see `mpraster.modes.mpi`).
    io : {"main", "workers"}, optional
        Who reads the windows; default from the mode (see `RunOptions.placement`).
    jobs : int, optional
        Number of workers; default `default_jobs`.
    params : mapping
        Kernel parameters, as strings (``-p name=value``) or typed values.
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
    creation_options : mapping
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
        ``OUTPUT.shardIIIIofNNNN.tif``; `mpraster.merge.merge_shards` assembles them.
    window_timeout : float, optional
        Fail the run (naming the window) when a window runs longer than this many seconds
        in a worker: a hung network filesystem then ends the job instead of stalling it.
    gdal_config : mapping
        GDAL configuration options for this run (``--config KEY=VALUE``, as GDAL's own
        tools spell it: ``GDAL_HTTP_TIMEOUT``, ``AWS_REGION``, ``GDAL_DISABLE_READDIR_ON_OPEN``
        ...), set in the main process and in every worker process and MPI rank.

    Raises
    ------
    OptionError
        For any value mpraster cannot use, naming the option.
    """

    mode: str = "auto"
    io: str | None = None
    jobs: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    bidx: str | None = None
    dtype: str | None = None
    nodata: float | None = None
    prefetch: int = 2
    block_size: int = 512
    creation_options: Mapping[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    cog: CogOptions | None = None
    resume: bool = False
    checkpoint_mb: float = CHECKPOINT_MB
    shard: tuple[int, int] | None = None
    window_timeout: float | None = None
    gdal_config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # None from a caller means "the default": a mapping is always there afterwards.
        object.__setattr__(self, "params", dict(self.params or {}))
        object.__setattr__(self, "creation_options", dict(self.creation_options or {}))
        object.__setattr__(
            self, "gdal_config", {str(k): str(v) for k, v in (self.gdal_config or {}).items()}
        )
        if self.mode not in MODES:
            raise OptionError(f"unknown --mode '{self.mode}'; choose one of {', '.join(MODES)}")
        if self.io is not None and self.io not in IO_PLACEMENTS:
            raise OptionError(f"unknown --io '{self.io}'; choose one of {', '.join(IO_PLACEMENTS)}")
        if self.jobs is not None:
            _check_count(self.jobs, "-j/--jobs")
        _check_count(self.prefetch, "--prefetch")
        check_block_size(self.block_size)
        if self.cog is not None and self.block_size < COG_MIN_BLOCK:
            raise OptionError(
                f"a COG needs --block-size of {COG_MIN_BLOCK} or more (GDAL's COG driver), "
                f"got {self.block_size}"
            )
        if not self.checkpoint_mb > 0:
            raise OptionError(f"--checkpoint-mb must be more than 0, got {self.checkpoint_mb}")
        if self.window_timeout is not None and not self.window_timeout > 0:
            raise OptionError(
                f"--window-timeout must be more than 0 seconds, got {self.window_timeout}"
            )

    @classmethod
    def of(cls, options: RunOptions | None = None, **changes: Any) -> RunOptions:
        """``options`` (or the defaults) with ``changes``, as `run` and `plan_job` take them.

        Raises
        ------
        TypeError
            For a keyword that is not an option.
        """
        if options is None:
            return cls(**changes)
        return dataclasses.replace(options, **changes) if changes else options

    @property
    def worker_count(self) -> int:
        """``jobs``, or the CPUs this process may use (`default_jobs`)."""
        return self.jobs if self.jobs is not None else default_jobs()

    def placement(
        self,
        kernel: Kernel,
        infos: Sequence[InputInfo] | None = None,
        halo: int = 0,
    ) -> tuple[str, str, str]:
        """Choose the mode and I/O placement for ``kernel``; returns (mode, io, why).

        ``auto`` runs a GIL-releasing kernel in threads and one that holds the GIL in
        processes with worker I/O, so that the GIL serialises neither the kernel nor the
        decoding. MPI ranks may be on other nodes: each reads its own windows from the
        shared filesystem. Without ``--io``, threads and processes read in the main process
        unless `worker_reads` says the workers should (``infos``: the inputs' headers,
        ``halo``: the kernel's); without ``infos`` (a reduction), in the main process.
        """
        mode, io = self.mode, self.io
        if mode == "mpi":
            mode, io, why = mode, io or "workers", "--mode mpi was given"
        elif mode == "auto" and not kernel.releases_gil:
            mode, io, why = "processes", io or "workers", f"kernel '{kernel.name}' holds the GIL"
        else:
            if mode == "auto":
                mode, why = "threads", f"kernel '{kernel.name}' releases the GIL"
            else:
                why = f"--mode {mode} was given"
            if io is None and infos is None:
                io = "main"
            elif io is None:
                io, reason = worker_reads(infos, halo)
                why += f"; io={io}: {reason}"
        if self.jobs is None:
            why += "; -j from the CPUs this process may use"
        return mode, io, why


def worker_reads(infos: Sequence[InputInfo], halo: int) -> tuple[str, str]:
    """Who should read the windows of a job whose kernel releases the GIL, and why.

    Decoding a compressed input is the part of reading worth spreading: with worker I/O
    every worker decodes its own windows while the main process only writes, instead of
    the main process decoding every window before a worker can start on it. A halo makes
    neighbouring windows share their edge tiles: workers, each with a block cache of its
    own, would decode those again (8-23% more CPU for slope on a DEFLATE DEM), while the
    main process's one cache decodes each tile once. An uncompressed input costs little to
    read: the main process reads it, and workers start on arrays at once. Whether the
    output is compressed does not change the choice: a DEFLATE output makes the run
    writer-bound, and both placements then run within a few percent of each other
    (BENCHMARKS.md, "Who reads by default").
    """
    compressed = [i for i in infos if i.compression is not None]
    if not compressed:
        return "main", "no input to decode"
    if halo:
        return "main", (
            f"a halo of {halo}: one reader decodes the tiles windows share once, in bands "
            "of whole rows on GDAL's threads"
        )
    return "workers", f"each worker decodes its own windows ({compressed[0].compression} input)"


def check_output_format(output: str | os.PathLike) -> None:
    """Refuse an output named for another raster format than the GeoTIFF mpraster writes.

    ``.tif``, ``.tiff``, no extension and extensions no raster format claims (``.out``)
    are GeoTIFF; one in `OTHER_FORMAT_EXTENSIONS` (``.png``, ``.nc``, ``.vrt``, ...) would
    be a GeoTIFF that every tool takes for something else.

    Raises
    ------
    OptionError
        Naming the format and how to get it from a GeoTIFF.
    """
    path = os.fspath(output)
    name = os.path.basename(path).lower()
    # Longest first: "x.gpkg.zip" is GPKG's, not an unknown ".zip".
    for ext in sorted(OTHER_FORMAT_EXTENSIONS, key=len, reverse=True):
        if name.endswith(f".{ext}") and len(name) > len(ext) + 1:
            driver = OTHER_FORMAT_EXTENSIONS[ext]
            tif = f"{path[: -len(ext) - 1]}.tif"
            raise OptionError(
                f"output {path} is named for the {driver} format, but mpraster writes "
                f"GeoTIFF (--driver GTiff or COG): write {tif}, then convert it with "
                f"`gdal_translate -of {driver} {tif} {path}` (or `rio convert {tif} {path}`)"
            )


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


def _check_count(value: Any, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{option} must be a whole number of at least 1, got {value!r}")
    return value
