"""mpraster: run a compiled raster kernel over a GeoTIFF window by window, in parallel."""

__version__ = "0.1.0"

from mpraster.errors import MprasterError
from mpraster.execute import execute, run
from mpraster.job import Job, plan_job
from mpraster.kernels import Kernel, kernel, load_kernel
from mpraster.options import RunOptions, default_jobs
from mpraster.output import CogOptions
from mpraster.schedule import StopSignal
from mpraster.stats import RunStats

__all__ = [
    "CogOptions",
    "Job",
    "Kernel",
    "MprasterError",
    "RunOptions",
    "RunStats",
    "StopSignal",
    "default_jobs",
    "execute",
    "kernel",
    "load_kernel",
    "plan_job",
    "run",
]
