"""mpraster: run a compiled raster kernel over a GeoTIFF window by window, in parallel."""

import importlib
from typing import Any

__version__ = "0.1.0"

# ``execute`` and ``reduce`` are imported now: each is also the name of its module, which
# the import system binds on this package whenever a module imports it, hiding the
# function. Every run needs the first; the second adds little.
from mpraster.execute import execute, run
from mpraster.reduce import plan_reduction, reduce

# The other public names and the module each comes from, imported on first use (PEP 562):
# ``mpraster run`` does not pay for the statistics and shard modules it never touches (a
# whole run of a small raster is mostly start-up).
_LAZY = {
    "Block": "mpraster.reductions",
    "CogOptions": "mpraster.output",
    "Job": "mpraster.job",
    "Kernel": "mpraster.kernels",
    "MprasterError": "mpraster.errors",
    "Output": "mpraster.kernel_outputs",
    "Reduction": "mpraster.reductions",
    "RunOptions": "mpraster.options",
    "RunStats": "mpraster.stats",
    "StatsRequest": "mpraster.stats_command",
    "StopSignal": "mpraster.schedule",
    "compute_stats": "mpraster.stats_command",
    "default_jobs": "mpraster.options",
    "kernel": "mpraster.kernels",
    "load_kernel": "mpraster.kernels",
    "merge_stats_shards": "mpraster.stats_shards",
    "plan_job": "mpraster.job",
    "reduction": "mpraster.reductions",
    "stats_shard": "mpraster.stats_shards",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mpraster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
