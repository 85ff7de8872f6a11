"""``mpraster stats``: per-band statistics, histograms, percentiles and zonal statistics.

One pass of the engine (`mpraster.reduce`) gives counts, min, max, sum, mean and std of
every band (`mpraster.summary`), histograms over a given range, exact counts of every
value of types of 16 bits or fewer, and zonal figures (`mpraster.zonal`). A histogram
over the observed range of a wider type takes a second pass, and its percentiles a few
more, each over the whole raster (`mpraster.percentiles`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpraster.errors import EmptyHistogramError, OptionError, ZonesTypeError
from mpraster.inputs import parse_input
from mpraster.job import InputsArg, input_specs
from mpraster.options import RunOptions
from mpraster.percentiles import (
    GATHER_LIMIT,
    RankSearch,
    interpolate,
    ranks_of,
    search_ranks,
    value_of_rank_from_counts,
)
from mpraster.progress import NullProgress, ProgressSink
from mpraster.reduce import ReductionJob, execute_reduction, plan_reduction
from mpraster.reduce_journal import ReductionJournal
from mpraster.reductions import Reduction, Together
from mpraster.schedule import StopSignal
from mpraster.stats import RunStats
from mpraster.summary import (
    BandSummary,
    HistogramSpec,
    band_figures,
    counts_every_value,
    histogram_of_values,
)
from mpraster.zonal import ZonalSummary


@dataclass(frozen=True)
class StatsRequest:
    """What to compute beyond the figures every band gets.

    Parameters
    ----------
    histogram : int, optional
        Bins of a histogram per band, over ``range`` or the band's observed range.
    range : (float, float), optional
        The histogram's range, as ``np.histogram``'s (values outside are not counted).
    percentiles : sequence of float
        Percentiles (0 to 100) per band, exact, as ``np.percentile`` (linear).
    zones : str, optional
        An integer raster on the same grid: figures per zone id and band.
    """

    histogram: int | None = None
    range: tuple[float, float] | None = None
    percentiles: tuple[float, ...] = ()
    zones: str | None = None

    def __post_init__(self) -> None:
        if self.histogram is not None and self.histogram < 1:
            raise OptionError(f"--histogram needs 1 bin or more, got {self.histogram}")
        if self.range is not None and not (
            all(map(math.isfinite, self.range)) and self.range[0] < self.range[1]
        ):
            raise OptionError(f"--range must be MIN,MAX with MIN < MAX, got {self.range}")
        for q in self.percentiles:
            if not 0 <= q <= 100:
                raise OptionError(f"--percentiles must be between 0 and 100, got {q:g}")


def parse_numbers(text: str, option: str) -> tuple[float, ...]:
    """``"2,50,98"`` to numbers; `OptionError` naming ``option`` otherwise."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as err:
        raise OptionError(f"{option} takes numbers separated by commas, got '{text}'") from err


@dataclass(frozen=True)
class StatsPlan:
    """A checked stats job: its planned first pass, and what the report calls each input.

    ``job.inputs`` are the data inputs, then the zones raster if any (``data`` inputs of
    data); ``names`` are the data inputs as given, as the report shows them.
    """

    job: ReductionJob
    request: StatsRequest
    data: int
    names: tuple[str, ...]

    @property
    def dtypes(self) -> list[np.dtype]:
        return [np.dtype(info.dtype) for info in self.job.infos[: self.data]]

    def first_pass(self) -> Reduction:
        """The first pass: every band's figures (and exact value counts, fixed-range
        histograms, zonal tables as asked)."""
        return _first_pass(self.job, self.request, self.data)


def plan_stats(
    inputs: InputsArg,
    request: StatsRequest,
    options: RunOptions,
    names: Sequence[str] | None = None,
) -> StatsPlan:
    """Check the inputs (and zones) and plan the first pass; ``names`` for the report
    (the inputs as given, by default).

    Raises
    ------
    ZonesTypeError
        If the zones raster is not of an integer type.
    InputMismatchError
        If an input or the zones raster is on another grid.
    """
    specs = input_specs(inputs, options.bidx)
    data = len(specs)
    if request.zones is not None:
        specs.append(parse_input(request.zones))
    job = plan_reduction(specs, Reduction(), options)
    _check_zones(job, request)
    names = tuple(names) if names is not None else tuple(str(s) for s in specs[:data])
    return StatsPlan(job, request, data, names)


class _PassProgress(NullProgress):
    """The job's progress sink, told which pass starts (`ProgressSink.stage`); a pass's
    own end is not the job's: its figures go to the sink once, for every pass."""

    def __init__(self, sink: ProgressSink, name: str) -> None:
        self.sink, self.name = sink, name

    def start(self, windows: int, pixels: int) -> None:
        stage = getattr(self.sink, "stage", None)
        if stage is not None:
            stage(self.name)
        self.sink.start(windows, pixels)

    def advance(self, windows: int, pixels: int) -> None:
        self.sink.advance(windows, pixels)

    def close(self) -> None:
        self.sink.close()


class StatsPasses:
    """Runs the passes of one stats job through the engine, each with a labelled
    progress, and keeps each pass's figures (`RunStats.of_passes`).

    ``number`` is the number of the first pass it runs (a merge of shards starts at 2).
    """

    def __init__(
        self,
        plan: StatsPlan,
        progress: ProgressSink | None,
        stop: StopSignal | None,
        executor: Any,
        journal: ReductionJournal | None,
        number: int = 1,
    ) -> None:
        self.plan = plan
        self.progress = progress or NullProgress()
        self.stop, self.executor, self.journal = stop, executor, journal
        self.number = number
        self.done: list[tuple[str, RunStats]] = []
        self.started = time.perf_counter()

    def run(self, reduction: Reduction, what: str) -> Any:
        """The result of one pass of ``reduction`` over every window."""
        name = f"pass {self.number} ({what})"
        self.number += 1
        job = dataclasses.replace(self.plan.job, reduction=reduction)
        sink = _PassProgress(self.progress, name)
        result, stats = execute_reduction(job, sink, self.stop, self.executor, self.journal)
        self.done.append((name, stats))
        return result

    def stats(self) -> RunStats:
        """The figures of every pass run, summed; tells the progress sink the job ended."""
        wall = time.perf_counter() - self.started
        if self.done:
            total = RunStats.of_passes(self.done, wall)
        else:
            job = self.plan.job
            total = RunStats(mode=job.mode, io=job.io, jobs=job.jobs, kernel="stats")
            total.wall_seconds = wall
        self.progress.finish(total)
        return total


def compute_stats(
    inputs: InputsArg,
    request: StatsRequest | None = None,
    options: RunOptions | None = None,
    *,
    progress: ProgressSink | None = None,
    stop: StopSignal | None = None,
    executor: Any = None,
    gather_limit: int = GATHER_LIMIT,
    journal: str | None = None,
    **changes: Any,
) -> tuple[dict[str, Any], RunStats]:
    """Statistics of every band of ``inputs``; returns the report and the run's figures
    (every pass's, summed; each pass's in ``passes``).

    ``options`` (or its fields as keywords: ``jobs=2, mode="processes"``) say how to run
    it, as for `mpraster.run`; ``gather_limit`` is the most values a percentile search
    gathers and sorts in memory (`mpraster.percentiles.GATHER_LIMIT`). With ``journal``
    (a path), each pass records how far it got there; ``resume=True`` continues from it
    (see `mpraster.reduce_journal`); it is removed once every figure is known. For
    ``shard=(i, n)`` see `mpraster.stats_shards.stats_shard`.

    Raises
    ------
    ZonesTypeError
        If the zones raster is not of an integer type.
    InputMismatchError
        If an input or the zones raster is on another grid.
    EmptyHistogramError
        If ``request.range`` excludes every valid value of every band.
    """
    request = request or StatsRequest()
    options = RunOptions.of(options, **changes)
    if options.shard is not None:
        raise OptionError(
            "compute_stats runs every window: for shard=(I, N) call "
            "mpraster.stats_shard(..., output=FILE), then mpraster.merge_stats_shards(FILE)"
        )
    plan = plan_stats(inputs, request, options)
    passes = _journal(journal, plan.job.inputs, request, options)
    runner = StatsPasses(plan, progress, stop, executor, passes)
    first = runner.run(plan.first_pass(), "statistics")
    report = finish_report(plan, first, runner.run, gather_limit)
    if passes is not None:
        passes.remove()
    return report, runner.stats()


def finish_report(
    plan: StatsPlan,
    first: Any,
    run_pass: Callable[[Reduction, str], Any],
    gather_limit: int = GATHER_LIMIT,
) -> dict[str, Any]:
    """The report, from the first pass's result ``first``: the later passes a histogram
    over the observed range or percentiles need run through ``run_pass(reduction, what)``.

    Raises
    ------
    EmptyHistogramError
        If ``request.range`` excludes every valid value of every band.
    """
    request, dtypes = plan.request, plan.dtypes
    partials, *zonal = first
    _check_finite(partials, plan.job, request)
    histograms = _histograms(partials, dtypes, request, lambda r: run_pass(r, "histogram"))
    by_rank = _percentile_passes(run_pass)
    percentiles = _percentiles(partials, dtypes, request, by_rank, gather_limit)
    extras = {"histogram": histograms, "percentiles": percentiles}
    if not request.percentiles:
        del extras["percentiles"]
    if zonal:
        extras["zones"] = [[table.figures() for table in tables] for tables in zonal[0]]
    return _report(plan.job, plan.names, partials, dtypes, extras)


def _percentile_passes(run_pass: Callable[[Reduction, str], Any]) -> Callable[[Reduction], Any]:
    """``run_pass`` for `search_ranks`, each pass named by what it asks of the values."""
    doing = {"count": "counting into bins", "bounds": "narrowing bins", "gather": "gathering"}

    def run(search: RankSearch) -> Any:
        kinds = sorted({r.kind for r in search.requests})
        return run_pass(search, "percentiles: " + ", ".join(doing[k] for k in kinds))

    return run


def description(specs: Sequence[Any], request: StatsRequest, options: RunOptions) -> dict:
    """What, besides the inputs' content, makes two stats runs the same job (a journal's
    or a shard's fingerprint)."""
    return {
        "request": dataclasses.asdict(request),
        "bands": [s.bands for s in specs],
        "block": options.block_size,
    }


def _journal(
    path: str | None, specs: Sequence[Any], request: StatsRequest, options: RunOptions
) -> ReductionJournal | None:
    if path is None:
        if options.resume:
            raise OptionError("--resume needs -o FILE: the stats journal is kept beside it")
        return None
    return ReductionJournal(
        path, [s.path for s in specs], description(specs, request, options), options.resume
    )


def _report(
    job: ReductionJob,
    names: Sequence[str],
    partials: list,
    dtypes: Sequence[np.dtype],
    extras: dict[str, list[list[Any]]],
) -> dict[str, Any]:
    """The report: per input, per band, its figures and ``extras`` (by input and band)."""
    report: dict[str, Any] = {"inputs": []}
    for i, name in enumerate(names):
        bands = []
        for b, part in enumerate(partials[i]):
            band = {"band": job.infos[i].bands[b], **band_figures(part, dtypes[i])}
            for key, values in extras.items():
                if values[i][b] is not None:
                    band[key] = values[i][b]
            bands.append(band)
        report["inputs"].append({"path": name, "dtype": str(dtypes[i]), "bands": bands})
    return report


def _check_zones(job: ReductionJob, request: StatsRequest) -> None:
    if request.zones is None:
        return
    zones = job.infos[-1]
    if not np.issubdtype(np.dtype(zones.dtype), np.integer):
        raise ZonesTypeError(
            f"zones raster {zones.path} is {zones.dtype}; zones must be an integer type "
            "(rasterise them with an integer --ot, or rio convert --dtype int32)"
        )
    if zones.count != 1:
        raise OptionError(
            f"zones raster {zones.path} has {zones.count} bands; name one: {zones.path}:1"
        )


def _check_finite(partials: list, job: ReductionJob, request: StatsRequest) -> None:
    """Percentiles and a histogram over the observed range need finite extremes."""
    if not (request.percentiles or (request.histogram and not request.range)):
        return
    for info, bands in zip(job.infos, partials, strict=False):
        for band, part in zip(info.bands, bands, strict=True):
            if part.count and not np.isfinite([part.min, part.max]).all():
                raise OptionError(
                    f"band {band} of {info.path} holds infinite values: percentiles and a "
                    "histogram over the observed range need finite ones; give the histogram "
                    "a --range, or set the infinities to nodata"
                )


def _first_pass(job: ReductionJob, request: StatsRequest, data: int) -> Reduction:
    dtypes = [info.dtype for info in job.infos]
    counts = [info.count for info in job.infos]
    fixed = None
    if request.histogram and request.range:
        spec = HistogramSpec(request.histogram, *request.range)
        fixed = [[spec] * n for n in counts[:data]]
    need_values = bool(request.percentiles or request.histogram)
    summary = BandSummary(dtypes[:data], counts[:data], need_values, fixed)
    if request.zones is None:
        return Together(summary)
    return Together(summary, ZonalSummary(data, counts))


def _histograms(
    partials: list, dtypes: Sequence[np.dtype], request: StatsRequest, run_pass: Callable
) -> list[list[dict | None]]:
    """Each band's histogram (edges and counts); a pass for those it needs.

    Raises
    ------
    EmptyHistogramError
        If a fixed range excludes every valid value of every band.
    """
    if not request.histogram:
        return [[None] * len(bands) for bands in partials]
    specs, later = [], False
    for dtype, bands in zip(dtypes, partials, strict=True):
        specs.append([])
        for part in bands:
            low, high = request.range or (part.min, part.max)
            spec = HistogramSpec(request.histogram, low, high) if part.count else None
            specs[-1].append(spec)
            if spec and part.histogram is None and not counts_every_value(dtype):
                later = True
    done = run_pass(BandSummary(dtypes, [len(s) for s in specs], False, specs)) if later else None
    out = [[None] * len(bands) for bands in partials]
    for i, bands in enumerate(partials):
        for b, part in enumerate(bands):
            spec = specs[i][b]
            if spec is None:
                continue
            if part.histogram is not None:
                hist = part.histogram
            elif counts_every_value(dtypes[i]):
                hist = histogram_of_values(part.values, dtypes[i], spec)
            else:
                hist = done[i][b].histogram
            edges = np.histogram_bin_edges([], spec.bins, (spec.low, spec.high))
            out[i][b] = {"edges": edges.tolist(), "counts": np.asarray(hist).tolist()}
    _check_not_empty(out, partials, request)
    return out


def _check_not_empty(out: list, partials: list, request: StatsRequest) -> None:
    valid = [p for bands in partials for p in bands if p.count]
    hists = [h for bands in out for h in bands if h is not None]
    if request.range and valid and not any(sum(h["counts"]) for h in hists):
        low = min(p.min for p in valid).item()
        high = max(p.max for p in valid).item()
        raise EmptyHistogramError(
            f"--range {request.range[0]:g},{request.range[1]:g} excludes every valid value "
            f"(they lie between {low:g} and {high:g}); give a range that overlaps them"
        )


def _percentiles(
    partials: list,
    dtypes: Sequence[np.dtype],
    request: StatsRequest,
    run_pass: Callable,
    gather_limit: int,
) -> list[list[dict]]:
    """Each band's percentiles, exact: from counts of every value, or by `search_ranks`."""
    qs = request.percentiles
    targets, wanted = [], []
    for i, bands in enumerate(partials):
        for b, part in enumerate(bands):
            if not part.count:
                continue
            for k in sorted({r for lo, hi, _ in ranks_of(part.count, qs) for r in (lo, hi)}):
                if not counts_every_value(dtypes[i]):
                    low, high = float(part.min), float(part.max)
                    targets.append((i, b, k, low, high, part.count))
                wanted.append((i, b, k))
    values = search_ranks(targets, run_pass, gather_limit) if targets else {}
    for i, b, k in wanted:
        part = partials[i][b]
        if counts_every_value(dtypes[i]):
            low = int(np.iinfo(dtypes[i]).min)
            values[(i, b, k)] = float(value_of_rank_from_counts(part.values, low, k))
    out = []
    for i, bands in enumerate(partials):
        out.append([])
        for b, part in enumerate(bands):
            figures = {}
            for q, (lo, hi, gamma) in zip(qs, ranks_of(part.count, qs), strict=True):
                key = f"{q:g}"
                if not part.count:
                    figures[key] = None
                else:
                    figures[key] = interpolate(values[(i, b, lo)], values[(i, b, hi)], gamma)
            out[-1].append(figures)
    return out


# Figures in the order the table and CSV show them.
FIGURES = ("count", "invalid", "min", "max", "sum", "mean", "std")


def format_report(report: dict[str, Any], fmt: str) -> str:
    """The report as ``"json"``, ``"csv"`` (a row per band, or per zone and band) or a
    ``"table"`` for people."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    rows = list(_rows(report))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["input"])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    return _table(report)


def _rows(report: dict[str, Any]):
    for entry in report["inputs"]:
        for band in entry["bands"]:
            base = {"input": entry["path"], "band": band["band"]}
            if "zones" in band:
                for zone in band["zones"]:
                    yield {**base, **zone}
                continue
            row = {**base, **{k: band[k] for k in FIGURES}}
            for q, value in band.get("percentiles", {}).items():
                row[f"p{q}"] = value
            yield row


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(report: dict[str, Any]) -> str:
    lines = []
    for entry in report["inputs"]:
        lines.append(f"{entry['path']} ({entry['dtype']})")
        for band in entry["bands"]:
            figures = "  ".join(f"{k} {_show(band[k])}" for k in FIGURES)
            lines.append(f"  band {band['band']}: {figures}")
            if band.get("percentiles"):
                shown = "  ".join(f"p{q} {_show(v)}" for q, v in band["percentiles"].items())
                lines.append(f"    percentiles: {shown}")
            if band.get("histogram"):
                hist = band["histogram"]
                lines.append(
                    f"    histogram: {len(hist['counts'])} bins over "
                    f"[{_show(hist['edges'][0])}, {_show(hist['edges'][-1])}]: "
                    + " ".join(map(str, hist["counts"]))
                )
            for zone in band.get("zones", []):
                shown = "  ".join(f"{k} {_show(v)}" for k, v in zone.items() if k != "zone")
                lines.append(f"    zone {zone['zone']}: {shown}")
    return "\n".join(lines) + "\n"


def write_report(text: str, path: str) -> None:
    """Write ``text`` to ``path`` atomically: a file beside it, renamed into place."""
    partial = f"{path}.partial"
    with open(partial, "w") as fh:
        fh.write(text)
    os.replace(partial, path)
