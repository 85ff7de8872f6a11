"""Errors raised by mpraster, each with the exit code the CLI gives it.

Every subclass also inherits the matching built-in exception, as rasterio's errors do,
so callers that catch ``OSError`` or ``ValueError`` keep working.
"""


class MprasterError(Exception):
    """Base class of every error mpraster raises on purpose."""

    exit_code = 1


class OptionError(MprasterError, ValueError):
    """An option has a value mpraster cannot use (jobs, block size, mode, ...)."""

    exit_code = 2


class InputNotFoundError(MprasterError, FileNotFoundError):
    """An input file does not exist."""

    exit_code = 3


class NotARasterError(MprasterError, OSError):
    """An input exists but GDAL cannot open it as a raster."""

    exit_code = 4


class MixedBandTypesError(NotARasterError):
    """The bands asked of an input are of different data types."""


class RasterReadError(MprasterError, OSError):
    """Reading a window of an input failed (a truncated or corrupt file)."""

    exit_code = 5


class KernelNotFoundError(MprasterError, LookupError):
    """No kernel has the given name or reference."""

    exit_code = 6


class KernelDefinitionError(KernelNotFoundError):
    """A kernel cannot be used as declared (a parameter without a default or a usable type)."""


class KernelParameterError(MprasterError, ValueError):
    """A kernel parameter is unknown, of the wrong type, or out of range."""

    exit_code = 7


class KernelDtypeError(MprasterError, TypeError):
    """An input's data type is not one the kernel takes."""

    exit_code = 8


class OutputExistsError(MprasterError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""

    exit_code = 9


class OutputPathError(MprasterError, OSError):
    """The output cannot be created: its folder is missing or not writable."""

    exit_code = 10


class WindowFailed(MprasterError, RuntimeError):
    """The kernel raised, or returned a wrong array, on one window."""

    exit_code = 11


class WorkerDied(MprasterError, RuntimeError):
    """A worker process died (crash, kill, out of memory) before finishing its windows."""

    exit_code = 12


class InputMismatchError(MprasterError, ValueError):
    """The inputs do not share a grid (size, transform or CRS)."""

    exit_code = 13


class KernelInputError(MprasterError, ValueError):
    """The inputs (their number or bands) do not suit the kernel."""

    exit_code = 14


class ResumeError(MprasterError, RuntimeError):
    """A run cannot be resumed: another job's journal, a damaged partial, or none to resume."""

    exit_code = 16


class ShardMergeError(ResumeError):
    """The shards of a ``--shard`` run cannot be merged: missing, unfinished or of other jobs."""


class MissingDependencyError(MprasterError, ImportError):
    """MPI is not available: mpi4py or an MPI library is missing, or no MPI launcher started us."""

    exit_code = 15


class UnfinishedRunError(MprasterError, FileExistsError):
    """An interrupted run of the same output exists; resume it or start again."""

    exit_code = 17


class OutputWriteError(MprasterError, OSError):
    """Writing the output failed (disk full, quota, I/O error, a codec refusing the data)."""

    exit_code = 18


class OutputLockedError(MprasterError, BlockingIOError):
    """Another run is writing the same output (it holds the output's lock)."""

    exit_code = 19


class WindowTimeoutError(MprasterError, TimeoutError):
    """A window took longer than ``--window-timeout`` (a hung read or kernel)."""

    exit_code = 20


class InputUnreachableError(MprasterError, ConnectionError):
    """A remote input cannot be reached: connection, name resolution, timeout or access."""

    exit_code = 21


class Interrupted(MprasterError):
    """The run was stopped by a signal (SIGINT, SIGTERM) before it finished."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        # The shell's convention for "ended by signal N".
        self.exit_code = 128 + signum

    def __reduce__(self):
        return type(self), (str(self), self.signum)


class ZonesTypeError(KernelDtypeError):
    """The zones raster of zonal statistics is not of an integer type."""


class EmptyHistogramError(OptionError):
    """A histogram's range (``--range``) excludes every valid value."""
