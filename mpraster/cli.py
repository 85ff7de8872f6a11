"""The ``mpraster`` command line: a thin click layer over `mpraster.run`.

Every `MprasterError` becomes a one-line message and its own exit code; a traceback is
shown only with ``--verbose``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any, NoReturn

import click
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rio import options as rio_options  # rio's own --co/--profile and --overwrite

from mpraster.errors import MprasterError
from mpraster.execute import execute, start_workers_early
from mpraster.job import plan_job
from mpraster.kernels import builtin_kernels, load_kernel, plugin_kernels
from mpraster.options import IO_PLACEMENTS, MODES, RunOptions
from mpraster.output import RESAMPLING_METHODS, CogOptions, parse_overviews
from mpraster.progress import PROGRESS_KINDS, make_progress
from mpraster.signals import SignalWatch, flush_and_exit
from mpraster.windows import parse_shard

# The merge, stats and MPI modules are imported by the commands that use them: `mpraster
# run` of a small raster is mostly start-up, and it needs none of them.

# Options that more than one command takes (rio's own --co and --overwrite come from
# rasterio.rio.options).
progress_opt = click.option(
    "--progress",
    type=click.Choice(PROGRESS_KINDS),
    default="auto",
    show_default=True,
    help="auto: a bar on a terminal, log lines otherwise; json: one JSON event per line.",
)
quiet_opt = click.option("-q", "--quiet", is_flag=True, help="No summary line.")


def _key_value_pairs(option: str) -> Callable[[click.Context, click.Parameter, Any], dict]:
    """A click callback parsing repeated ``KEY=VALUE`` options into a dict."""

    def parse(ctx: click.Context, param: click.Parameter, values: Any) -> dict:
        pairs = {}
        for item in values or ():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
            pairs[key.strip()] = value.strip()
        return pairs

    return parse


def _fail(err: MprasterError, verbose: bool = False) -> NoReturn:
    """Report an error in one line (with the traceback under --verbose) and exit with its code."""
    if verbose:
        traceback.print_exception(err, file=sys.stderr)
    click.echo(f"Error: {err}", err=True)
    flush_and_exit(err.exit_code)


# Warnings that are about rasterio's or affine's own code, not about the user's data.
_QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """One line per distinct warning that concerns the user, in the order first seen."""
    lines: dict[str, None] = {}
    for record in caught:
        if issubclass(record.category, _QUIET_CATEGORIES):
            continue
        if issubclass(record.category, NotGeoreferencedWarning):
            line = (
                "an input has no georeferencing (no geotransform, GCPs or RPCs); "
                "the output has none either"
            )
        else:
            line = " ".join(str(record.message).split())
        lines.setdefault(line)
    return list(lines)


def _one_line_warnings(command: Callable[..., None]) -> Callable[..., None]:
    """Run a command with its warnings gathered and shown once each, in one line, at its end.

    rasterio warns once per dataset opened (every window reader, every worker) and Python
    echoes the source line under each: a raster without georeferencing would fill the
    terminal. A command that fails shows its error line alone.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            command(*args, **kwargs)
        for line in _warning_lines(caught):
            click.echo(f"mpraster: warning: {line}", err=True)

    return wrapper


@click.group("mpraster", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mpraster")
def main() -> None:
    """Run a raster kernel over GeoTIFFs window by window, in parallel."""


@main.command("run")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--kernel",
    "-k",
    "kernel_ref",
    required=True,
    help="Kernel name, module:function or file.py:function.",
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    callback=_key_value_pairs("-p"),
    help="Kernel parameter NAME=VALUE (repeatable).",
)
@click.option(
    "-b",
    "--bidx",
    default=None,
    metavar="BANDS",
    help="Bands to read from every input that names none (4 or 4,3 or 1-3), as in rio; "
    "or give PATH:BANDS per input.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="NAME=FILE",
    callback=_key_value_pairs("-o"),
    help="For a kernel with several outputs: write output NAME to FILE (repeatable); every "
    "FILE is then an output and every argument an INPUT.",
)
@rio_options.dtype_opt
@rio_options.nodata_opt
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="Run windows in threads or processes; auto picks from the kernel.",
)
@click.option(
    "--io",
    "io",
    type=click.Choice(IO_PLACEMENTS),
    default=None,
    help="Who reads windows: the main process or each worker. [default: from the mode]",
)
@click.option(
    "-j",
    "--jobs",
    type=int,
    default=None,
    help="Number of workers. [default: CPUs this job may use]",
)
@click.option(
    "--prefetch", type=int, default=2, show_default=True, help="Windows in flight per worker."
)
@click.option(
    "--block-size",
    type=int,
    default=512,
    show_default=True,
    help="Window and output tile size (multiple of 16).",
)
@rio_options.creation_options
@click.option(
    "--driver",
    type=click.Choice(["GTiff", "COG"], case_sensitive=False),
    default="GTiff",
    show_default=True,
    help="Output format: a tiled GeoTIFF, or a Cloud-Optimized GeoTIFF.",
)
@click.option("--cog", is_flag=True, help="Same as --driver COG.")
@click.option(
    "--overviews",
    default="auto",
    show_default=True,
    help="COG overviews: auto, none, or factors like 2,4,8.",
)
@click.option(
    "--resampling",
    type=click.Choice(RESAMPLING_METHODS),
    default="nearest",
    show_default=True,
    help="Resampling for COG overviews.",
)
@rio_options.overwrite_opt
@progress_opt
@click.option(
    "--log-interval",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between progress log lines.",
)
@click.option(
    "--stats", "show_stats", is_flag=True, help="Print where the time went and what bounds the run."
)
@click.option(
    "--stats-json",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the run's figures to this JSON file.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an interrupted run of this job from its journal (starts afresh if none).",
)
@click.option(
    "--shard",
    default=None,
    metavar="I/N|auto",
    help="Do only share I of N (0-based) into OUTPUT.shardIIIIofNNNN.tif, for `mpraster "
    "merge`; auto takes it from a SLURM job array.",
)
@click.option(
    "--checkpoint-mb",
    type=float,
    default=64.0,
    show_default=True,
    help="Output megabytes between checkpoints (what a killed run can lose at most).",
)
@click.option(
    "--stop-grace",
    type=float,
    default=20.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds to let windows in flight finish before stopping.",
)
@click.option(
    "--config",
    "gdal_config",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_key_value_pairs("--config"),
    help="GDAL configuration option for this run, in every worker too (repeatable).",
)
@click.option(
    "--window-timeout",
    type=float,
    default=None,
    metavar="S",
    help="Fail the run when a window takes longer than S seconds (a hung filesystem).",
)
@click.option(
    "--dry-run", is_flag=True, help="Check everything and print the plan; read no pixels."
)
@quiet_opt
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks (a worker's too) on error.")
@_one_line_warnings
def run_command(
    files: tuple[str, ...],
    outputs: dict[str, str],
    kernel_ref: str,
    progress: str,
    log_interval: float,
    show_stats: bool,
    stats_json: str | None,
    stop_grace: float,
    dry_run: bool,
    quiet: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Run a kernel over INPUT... and write OUTPUT.

    An INPUT may name bands: PATH:BANDS (stack.tif:4,3). The kernel gets one array per
    INPUT.

    \b
    $ mpraster run RGB.byte.tif reversed.tif --kernel reverse -p cost=500 -j 2
    $ mpraster run in.tif out.tif -k reverse-py --mode processes --io workers
    $ mpraster run landsat.tif:5,4 ndvi.tif --kernel ndvi
    $ mpraster run dem.tif shade.tif --kernel hillshade -p azimuth=300 -p z-factor=2
    $ mpraster run in.tif scaled.tif -k rescale -p scale=0.0001 --dtype float32
    $ mpraster run dem.tif -k terrain -o slope=slope.tif -o hillshade=shade.tif
    """
    if outputs:
        inputs, output = list(files), outputs
    elif len(files) < 2:
        raise click.UsageError("give at least one INPUT and an OUTPUT")
    else:
        *inputs, output = files
    with _watched(stop_grace, verbose) as watch, _mpi_ranks(flags) as (worker_rank, executor):
        if worker_rank:
            return  # an MPI worker rank: it served windows until rank 0 was done
        options = _run_options(**flags)
        if not dry_run:
            kernel_ref = start_workers_early(kernel_ref, options)
        job = plan_job(inputs, output, kernel_ref, options)
        if dry_run:
            click.echo(job.describe())
            return
        sink = make_progress(progress, sys.stderr, log_interval)
        stats = execute(job, sink, watch.stop, executor)
    if stats_json:
        with open(stats_json, "w") as fh:
            json.dump(stats.as_dict(), fh, indent=2)
    _say_done(stats, quiet, show_stats)


@contextlib.contextmanager
def _watched(stop_grace: float, verbose: bool) -> Iterator[SignalWatch]:
    """The signal watch of a command that runs the engine, ended however the command ends;
    an `MprasterError` inside ends the command with its one line and exit code."""
    watch = SignalWatch(stop_grace)
    try:
        yield watch
    except MprasterError as err:
        watch.done()
        _fail(err, verbose)
    finally:
        watch.done()


def _say_done(stats: Any, quiet: bool, show_stats: bool, summary: str | None = None) -> None:
    """What a command that ran the engine says at its end: a summary line, and with
    ``--stats`` where the time went."""
    if not quiet:
        click.echo(f"mpraster: {summary or stats.summary()}", err=True)
    if show_stats:
        click.echo(stats.report(), err=True)


@contextlib.contextmanager
def _mpi_ranks(flags: dict[str, Any]) -> Iterator[tuple[bool, Executor | None]]:
    """With ``--mode mpi``, enter MPI mode on every rank first, so that no rank waits for
    one that failed; yields (is this a worker rank, rank 0's executor). ``-j`` defaults to
    the worker ranks. Without MPI: (False, None)."""
    if flags["mode"] != "mpi":
        yield False, None
        return
    from mpraster.modes.mpi import comm_executor
    from mpraster.modes.mpi import worker_count as mpi_worker_count

    with comm_executor() as executor:
        if executor is not None:
            flags["jobs"] = flags["jobs"] or mpi_worker_count()
        yield executor is None, executor


def _run_options(
    *,
    dtype: str | None,
    driver: str,
    cog: bool,
    overviews: str,
    resampling: str,
    shard: str | None,
    **fields: Any,
) -> RunOptions:
    """The `RunOptions` of ``mpraster run``'s flags; the rest of its flags are its fields."""
    return RunOptions(
        dtype="uint8" if dtype == "ubyte" else dtype,  # rio's --dtype spells uint8 "ubyte"
        cog=CogOptions(parse_overviews(overviews), resampling)
        if cog or driver.upper() == "COG"
        else None,
        shard=parse_shard(shard) if shard else None,
        **fields,
    )


@main.command("merge")
@click.argument("output", type=click.Path())
@rio_options.overwrite_opt
@click.option(
    "--resume", is_flag=True, help="Stats shards: finish a stopped merge from its journal."
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="Stats shards: how to run the passes the merge itself makes.",
)
@click.option("--io", "io", type=click.Choice(IO_PLACEMENTS), default=None)
@click.option("-j", "--jobs", type=int, default=None, help="Stats shards: number of workers.")
@click.option("--prefetch", type=int, default=2, show_default=True)
@progress_opt
@click.option("--stats", "show_stats", is_flag=True, help="Print where the time went.")
@click.option("--stop-grace", type=float, default=20.0, show_default=True)
@quiet_opt
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on error.")
@_one_line_warnings
def merge_command(
    output: str,
    overwrite: bool,
    progress: str,
    show_stats: bool,
    stop_grace: float,
    quiet: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Assemble the shards of a --shard run into OUTPUT.

    The result is the same bytes as one unsharded run. A missing or unfinished shard is
    named, and nothing is written. The shards of `mpraster stats --shard` are merged into
    its report; the passes that need the whole raster's first pass (a histogram over the
    observed range, percentiles of types wider than 16 bits) run here, over the inputs,
    with --mode, -j and --resume as for `mpraster stats`.

    \b
    $ mpraster run in.tif out.tif -k focal-mean --shard 0/2   # and 1/2, anywhere
    $ mpraster merge out.tif
    $ mpraster stats dem.tif --percentiles 2,98 -o dem.json --shard 0/2   # and 1/2
    $ mpraster merge dem.json -j 4
    """
    from mpraster.merge import merge_shards
    from mpraster.stats_shards import shards_kind

    try:
        kind = shards_kind(output)
    except MprasterError as err:
        _fail(err)
    if kind == "stats":
        _merge_stats(output, progress, show_stats, stop_grace, quiet, verbose, flags)
        return
    try:
        stats = merge_shards(output, overwrite=overwrite, progress=make_progress(progress))
    except MprasterError as err:
        _fail(err)
    if not quiet:
        click.echo(
            f"mpraster: merged {stats.windows} tile windows into {output} in "
            f"{stats.wall_seconds:.2f} s",
            err=True,
        )


def _merge_stats(
    output: str,
    progress: str,
    show_stats: bool,
    stop_grace: float,
    quiet: bool,
    verbose: bool,
    flags: dict[str, Any],
) -> None:
    """`mpraster merge` of the shards of `mpraster stats --shard`."""
    from mpraster.stats_shards import merge_stats_shards

    with _watched(stop_grace, verbose) as watch, _mpi_ranks(flags) as (worker_rank, executor):
        if worker_rank:
            return  # an MPI worker rank: it served windows until rank 0 was done
        _, stats = merge_stats_shards(
            output,
            RunOptions(**flags),
            progress=make_progress(progress, sys.stderr),
            stop=watch.stop,
            executor=executor,
        )
    _say_done(stats, quiet, show_stats, f"merged the stats shards into {output}; {stats.summary()}")


@main.command("stats")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("-b", "--bidx", default=None, metavar="BANDS", help="Bands to read (4 or 4,3).")
@click.option("--histogram", type=int, default=None, metavar="BINS", help="Histogram bins.")
@click.option(
    "--range", "value_range", default=None, metavar="MIN,MAX", help="The histogram's range."
)
@click.option("--percentiles", default=None, metavar="Q,...", help="Exact percentiles, 0-100.")
@click.option("--zones", default=None, metavar="ZONES.tif", help="Integer zones, same grid.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False))
@click.option(
    "--resume", is_flag=True, help="Finish a stopped run from its journal (OUTPUT.journal)."
)
@click.option(
    "--shard",
    default=None,
    metavar="I/N|auto",
    help="Do only share I of N (0-based) of the windows into OUTPUT.shardIIIIofNNNN.stats "
    "(needs -o), for `mpraster merge OUTPUT`; auto takes it from a SLURM job array.",
)
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True)
@click.option("--io", "io", type=click.Choice(IO_PLACEMENTS), default=None)
@click.option("-j", "--jobs", type=int, default=None, help="Number of workers.")
@click.option("--prefetch", type=int, default=2, show_default=True)
@click.option("--block-size", type=int, default=512, show_default=True)
@progress_opt
@click.option("--stats", "show_stats", is_flag=True, help="Print where the time went.")
@click.option("--stop-grace", type=float, default=20.0, show_default=True)
@quiet_opt
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on error.")
@_one_line_warnings
def stats_command(
    files: tuple[str, ...],
    histogram: int | None,
    value_range: str | None,
    percentiles: str | None,
    zones: str | None,
    fmt: str,
    output: str | None,
    progress: str,
    show_stats: bool,
    stop_grace: float,
    quiet: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Statistics of every band of INPUT...: counts, min, max, sum, mean, std, histograms,
    exact percentiles and, with --zones, the same per zone.

    \b
    $ mpraster stats dem.tif --percentiles 2,50,98 -j 2
    $ mpraster stats RGB.byte.tif --histogram 8 --format json -o stats.json
    $ mpraster stats landsat.tif:4 --zones parcels.tif --format csv
    $ mpraster stats dem.tif --percentiles 50 -o dem.json --shard 0/4   # ... 3/4, then:
    $ mpraster merge dem.json
    """
    from mpraster.stats_command import (
        StatsRequest,
        compute_stats,
        format_report,
        parse_numbers,
        write_report,
    )
    from mpraster.stats_shards import stats_shard

    with _watched(stop_grace, verbose) as watch, _mpi_ranks(flags) as (worker_rank, executor):
        if worker_rank:
            return  # an MPI worker rank: it served windows until rank 0 was done
        request = StatsRequest(
            histogram=histogram,
            range=parse_numbers(value_range, "--range") if value_range else None,
            percentiles=parse_numbers(percentiles, "--percentiles") if percentiles else (),
            zones=zones,
        )
        sink = make_progress(progress, sys.stderr)
        shard = flags.pop("shard")
        if shard is not None:
            # `mpraster merge OUTPUT` writes the report once every shard is done.
            options = RunOptions(**flags, shard=parse_shard(shard))
            stats = stats_shard(
                files, request, options, output, fmt, progress=sink, stop=watch.stop,
                executor=executor,
            )  # fmt: skip
        else:
            report, stats = compute_stats(
                files,
                request,
                RunOptions(**flags),
                progress=sink,
                stop=watch.stop,
                executor=executor,
                journal=f"{output}.journal" if output else None,
            )
            text = format_report(report, fmt)
            if output:
                write_report(text, output)
            else:
                click.echo(text, nl=False)
    _say_done(stats, quiet, show_stats)


def _kernel_summary(k) -> str:
    defaults = {name: p.default for name, p in k.params.items()}
    halo = k.halo(defaults)
    halo_text = f"halo {halo}" + (" (from parameters)" if callable(k.spec.halo) else "")
    params = ", ".join(p.describe() for p in k.params.values()) or "no parameters"
    gil = "releases the GIL" if k.releases_gil else "holds the GIL"
    aliases = f" (alias {', '.join(k.spec.aliases)})" if k.spec.aliases else ""
    return f"{k.name}{aliases}: {k.spec.inputs}; {halo_text}; {gil}; {params}"


@main.command("kernels")
@click.argument("name", required=False)
def kernels_command(name: str | None) -> None:
    """List the kernels (built-in and plugins), or show one in full.

    \b
    $ mpraster kernels
    $ mpraster kernels focal-mean
    """
    if name:
        try:
            k = load_kernel(name)
        except MprasterError as err:
            _fail(err)
        click.echo(_kernel_summary(k))
        click.echo(f"input dtypes: {', '.join(k.dtypes) if k.dtypes else 'any'}")
        click.echo(f"fill past the edge: {k.fill}")
        for declared in k.spec.outputs:
            click.echo(f"output {declared.name} (-o {declared.name}=FILE): {declared.doc}")
        click.echo()
        click.echo(inspect.getdoc(k.func) or "")
        return
    seen = set()
    for k in builtin_kernels().values():
        if k.name in seen:
            continue
        seen.add(k.name)
        click.echo(f"{_kernel_summary(k)}\n    {k.doc}")
    for plugin in plugin_kernels():
        try:
            k = load_kernel(plugin)
        except MprasterError as err:
            click.echo(f"{plugin} (plugin): cannot load: {err}")
            continue
        click.echo(f"{_kernel_summary(k)} [plugin]\n    {k.doc}")


if __name__ == "__main__":
    main()
