"""``mpraster stats --shard I/N -o FILE`` and ``mpraster merge FILE`` for its shards.

A shard runs the first pass of a stats job (every band's figures, exact value counts,
fixed-range histograms, zonal tables) over its contiguous share of the plan's windows
(`mpraster.windows.shard_range`), journaled as any stats run (`mpraster.reduce_journal`),
and leaves that journal, finished, at ``FILE.shardIIIIofNNNN.stats``: the nodes of the
plan's merge tree (`mpraster.fold`) its windows make, and what the merge needs to know of
the job (``about``). The merge completes the tree from the shards' nodes with the same
merges an unsharded run makes, so the first pass's figures are the same bits; what needs
the whole raster's first pass (a histogram over the observed range of a type wider than
16 bits, percentiles refined over it) it runs itself, through the engine, over the
inputs the shards recorded, and writes the report an unsharded ``stats -o FILE`` writes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mpraster.errors import OptionError, ShardMergeError
from mpraster.fold import PlanFold
from mpraster.inputs import InputSpec, is_local_path
from mpraster.job import InputsArg
from mpraster.lock import OutputLock
from mpraster.merge import finished_shards, shard_files
from mpraster.options import RunOptions
from mpraster.percentiles import GATHER_LIMIT
from mpraster.progress import ProgressSink
from mpraster.reduce_journal import (
    ReductionJournal,
    job_fingerprint,
    read_journal_file,
    reduction_key,
)
from mpraster.resume import input_identity, journal_path
from mpraster.schedule import StopSignal
from mpraster.stats import RunStats
from mpraster.stats_command import (
    StatsPasses,
    StatsRequest,
    description,
    finish_report,
    format_report,
    plan_stats,
    write_report,
)
from mpraster.windows import shard_path, shard_range

SUFFIX = ".stats"
# What ``about`` says a stats shard's file is.
KIND = "mpraster stats shard"


def stats_shard_path(output: str, index: int, count: int) -> str:
    """Where shard ``index`` of ``count`` of a stats job writing ``output`` leaves its part."""
    return shard_path(output, index, count, SUFFIX)


def _readable(spec: InputSpec) -> InputSpec:
    """``spec`` with an absolute path if it is a local file: a merge may run elsewhere."""
    if not is_local_path(spec.path):
        return spec
    return InputSpec(os.path.abspath(spec.path), spec.bands)


def stats_shard(
    inputs: InputsArg,
    request: StatsRequest | None,
    options: RunOptions,
    output: str | os.PathLike | None,
    fmt: str = "table",
    *,
    progress: ProgressSink | None = None,
    stop: StopSignal | None = None,
    executor: Any = None,
) -> RunStats:
    """Run shard ``options.shard`` of a stats job whose report goes to ``output`` (in
    ``fmt``, once `merge_stats_shards` has every shard); returns the run's figures.

    The shard's partial results go to ``stats_shard_path(output, i, n)``, written
    atomically once its windows are done; until then its journal is beside it, and
    ``resume=True`` continues from it. The shard file is locked as a run's output.

    Raises
    ------
    OptionError
        If ``output`` is not given.
    OutputLockedError
        If another run of this shard is going on.
    UnfinishedRunError, ResumeError
        As `mpraster.compute_stats` with a journal.
    """
    if options.shard is None:
        raise OptionError("stats_shard needs shard=(I, N)")
    if output is None:
        raise OptionError(
            "--shard needs -o FILE: shard I of N writes FILE.shardIIIIofNNNN.stats, and "
            "`mpraster merge FILE` writes the report"
        )
    output = os.fspath(output)
    index, count = options.shard
    request = request or StatsRequest()
    plan = plan_stats(inputs, request, options)
    specs = plan.job.inputs
    share = shard_range(len(plan.job.tasks), index, count)
    shard_plan = dataclasses.replace(
        plan, job=dataclasses.replace(plan.job, tasks=plan.job.tasks[share.start : share.stop])
    )
    first = plan.first_pass()
    paths = [s.path for s in specs]
    job_description = {**description(specs, request, options), "format": fmt, "names": plan.names}
    readable = [_readable(s) for s in specs]
    about = {
        "kind": KIND,
        "job": job_fingerprint(paths, job_description),
        "description": job_description,
        "shard": [index, count],
        "windows": [share.start, share.stop, len(plan.job.tasks)],
        "inputs": [(r.path, r.bands) for r in readable],
        "identities": [input_identity(p) for p in paths],
        "names": plan.names,
        "request": dataclasses.asdict(request),
        "block": options.block_size,
        "format": fmt,
        "key": reduction_key(first),
    }
    path = stats_shard_path(output, index, count)
    with OutputLock(path):
        journal = ReductionJournal(
            journal_path(path),
            paths,
            {**job_description, "shard": [index, count]},
            options.resume,
            about,
        )
        runner = StatsPasses(shard_plan, progress, stop, executor, journal)
        if share:
            runner.run(first, "statistics")
        journal.passes.setdefault(about["key"], (0, []))
        journal.save(path)
        journal.remove()
    return runner.stats()


def shards_kind(output: str | os.PathLike) -> str:
    """``"stats"`` if ``output`` has stats shards (finished or not), else ``"raster"``.

    Raises
    ------
    ShardMergeError
        If it has both: two jobs wrote shards of the same name.
    """
    output = os.fspath(output)
    stats = {**shard_files(output, SUFFIX), **shard_files(output, SUFFIX + ".journal")}
    if not stats:
        return "raster"
    rasters = shard_files(output, ".tif")
    if rasters:
        raise ShardMergeError(
            f"{output} has both raster shards ({len(rasters)} .tif) and stats shards "
            f"({len(stats)} .stats) from two jobs: remove the shards of the one not to merge"
        )
    return "stats"


def merge_stats_shards(
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    progress: ProgressSink | None = None,
    stop: StopSignal | None = None,
    executor: Any = None,
    gather_limit: int = GATHER_LIMIT,
) -> tuple[dict[str, Any], RunStats]:
    """Merge the stats shards of ``output`` and write its report, the same bytes as one
    unsharded ``stats -o output`` writes; returns the report and the later passes' figures.

    The passes a histogram over the observed range or percentiles need after the first
    run here, over the inputs the shards recorded (unchanged since), as ``options`` say
    (mode, ``-j``, ...); they are journaled at ``output.journal`` (``resume=True``).

    Raises
    ------
    ShardMergeError
        If a shard is missing or unfinished (named), the shards are of different jobs
        (named), or an input changed since they ran.
    OutputLockedError
        If another merge or run is writing ``output``.
    """
    output = os.fspath(output)
    options = options or RunOptions()
    with OutputLock(output):
        paths = finished_shards(output, SUFFIX, journal_path)
        records = [read_journal_file(p) for p in paths]
        about = _check_same_job(output, paths, [r[2] for r in records])
        specs = [InputSpec(path, bands) for path, bands in about["inputs"]]
        request = StatsRequest(**about["request"])
        data = len(about["names"])
        if request.zones is not None:
            request = dataclasses.replace(request, zones=str(specs[data]))
        options = dataclasses.replace(options, block_size=about["block"], bidx=None, shard=None)
        plan = plan_stats(specs[:data], request, options, about["names"])
        _check_unchanged(output, plan.job.inputs, about)
        first = plan.first_pass()
        fold = PlanFold(first.merge)
        for path, (_, passes, shard) in zip(paths, records, strict=True):
            done, nodes = passes[about["key"]]
            first_window, end, total = shard["windows"]
            if total != len(plan.job.tasks) or done != end - first_window:
                raise ShardMergeError(f"{path} is not finished: run its shard again with --resume")
            for node in nodes:
                fold.add_node(node)
        journal = ReductionJournal(
            journal_path(output),
            [s.path for s in plan.job.inputs],
            about["description"],
            options.resume,
        )
        runner = StatsPasses(plan, progress, stop, executor, journal, number=2)
        result = first.finish(fold.result(first.start()))
        report = finish_report(plan, result, runner.run, gather_limit)
        write_report(format_report(report, about["format"]), output)
        journal.remove()
    return report, runner.stats()


def _check_same_job(output: str, paths: list[str], abouts: list[dict]) -> dict[str, Any]:
    """The shards' common ``about``.

    Raises
    ------
    ShardMergeError
        If a file is not a stats shard, is another shard's, or is of another job than
        shard 0.
    """
    for i, (path, about) in enumerate(zip(paths, abouts, strict=True)):
        if not isinstance(about, dict) or about.get("kind") != KIND:
            raise ShardMergeError(f"{path} is not a shard of mpraster stats: remove it")
        if about["shard"] != [i, len(paths)]:
            shard = "/".join(map(str, about["shard"]))
            raise ShardMergeError(f"{path} holds shard {shard}, not {i}/{len(paths)}: remove it")
    others = [i for i, about in enumerate(abouts) if about["job"] != abouts[0]["job"]]
    if others:
        raise ShardMergeError(
            f"shards {', '.join(map(str, others))} of {output} are of another job than shard "
            "0 (other inputs or options): run every shard with the same command"
        )
    return abouts[0]


def _check_unchanged(output: str, specs: tuple[InputSpec, ...], about: dict[str, Any]) -> None:
    """Refuse to merge shards of inputs that changed since (their figures would not be
    the inputs' now, and the later passes would mix the two)."""
    paths = [s.path for s in specs]
    if job_fingerprint(paths, about["description"]) == about["job"]:
        return
    changed = [
        p
        for p, before in zip(paths, about["identities"], strict=True)
        if input_identity(p) != before
    ]
    raise ShardMergeError(
        f"{', '.join(changed) or 'an input'} changed since the shards of {output} ran: run "
        "every shard again"
    )
