"""mpraster: run a compiled raster kernel over a GeoTIFF window by window, in parallel."""

from mpraster.engine import default_jobs, run
from mpraster.errors import MprasterError
from mpraster.kernels import Kernel, kernel, load_kernel
from mpraster.progress import RunStats

__all__ = ["Kernel", "MprasterError", "RunStats", "default_jobs", "kernel", "load_kernel", "run"]
__version__ = "0.1.0"
