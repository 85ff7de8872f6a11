"""mpraster: run a compiled raster kernel over a GeoTIFF window by window, in parallel."""

__version__ = "0.1.0"

from mpraster.engine import Job, default_jobs, execute, plan_job, run
from mpraster.errors import MprasterError
from mpraster.io import CogOptions
from mpraster.kernels import Kernel, kernel, load_kernel
from mpraster.progress import RunStats

__all__ = [
    "CogOptions",
    "Job",
    "Kernel",
    "MprasterError",
    "RunStats",
    "default_jobs",
    "execute",
    "kernel",
    "load_kernel",
    "plan_job",
    "run",
]
