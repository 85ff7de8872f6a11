"""mpraster: run a compiled raster kernel over a GeoTIFF window by window, in parallel."""

__version__ = "0.1.0"

from mpraster.errors import MprasterError
from mpraster.execute import execute, run
from mpraster.job import Job, plan_job
from mpraster.kernel_outputs import Output
from mpraster.kernels import Kernel, kernel, load_kernel
from mpraster.options import RunOptions, default_jobs
from mpraster.output import CogOptions
from mpraster.reduce import plan_reduction, reduce
from mpraster.reductions import Block, Reduction, reduction
from mpraster.schedule import StopSignal
from mpraster.stats import RunStats
from mpraster.stats_command import StatsRequest, compute_stats
from mpraster.stats_shards import merge_stats_shards, stats_shard

__all__ = [
    "Block",
    "CogOptions",
    "Job",
    "Kernel",
    "MprasterError",
    "Output",
    "Reduction",
    "RunOptions",
    "RunStats",
    "StatsRequest",
    "StopSignal",
    "compute_stats",
    "default_jobs",
    "execute",
    "kernel",
    "load_kernel",
    "merge_stats_shards",
    "plan_job",
    "plan_reduction",
    "reduce",
    "reduction",
    "run",
    "stats_shard",
]
