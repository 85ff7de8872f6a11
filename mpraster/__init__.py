"""mpraster: run a compiled raster kernel over a GeoTIFF window by window, in parallel."""

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# The public names and the module each comes from, imported on first use (PEP 562):
# ``import mpraster`` costs nothing, so that the command can set up its process before
# NumPy loads (`mpraster.command`), and ``mpraster run`` does not pay for the statistics
# and shard modules it never touches (a whole run of a small raster is mostly start-up).
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
    "execute": "mpraster.execute",
    "kernel": "mpraster.kernels",
    "load_kernel": "mpraster.kernels",
    "merge_stats_shards": "mpraster.stats_shards",
    "plan_job": "mpraster.job",
    "plan_reduction": "mpraster.reduce",
    "reduce": "mpraster.reduce",
    "reduction": "mpraster.reductions",
    "run": "mpraster.execute",
    "stats_shard": "mpraster.stats_shards",
}


class _Package(types.ModuleType):
    """This package, which keeps a function's public name when a module of the same name
    is imported: ``mpraster.execute`` and ``mpraster.reduce`` are functions, and the
    import system would otherwise bind the modules ``mpraster/execute.py`` and
    ``mpraster/reduce.py`` over them (their modules stay in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
