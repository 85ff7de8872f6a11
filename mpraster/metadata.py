"""What a raster carries besides its pixels: band metadata, georeferencing, dataset tags.

Read from each input when the job is planned. The output's band metadata follows the
kernel's band mapping (`mpraster.kernels.KernelSpec.bands_from`): a band's colour
interpretation, description, scale, offset and units go to the output band the kernel
makes from it; an output band with no source band has none of them, never the input's
band at the same position. The output's georeferencing is the first input's: a transform
with its CRS, or ground control points (GCPs) with theirs, and RPCs; a CRS never goes
without a transform or GCPs (an identity transform with a CRS is a wrong georeference,
not a missing one). Dataset tags that describe the data are kept, those that describe the
file (``TIFFTAG_*``, mpraster's own shard tags) are not; per-band tags (statistics) are
not, as the kernel changes the values they describe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC

# Colour interpretations a band may carry to the output. A palette needs its colour table
# and a one-band file, YCbCr and the like a photometric layout: those are not carried.
_CARRIED_COLORS = {
    "gray",
    "red",
    "green",
    "blue",
    "alpha",
    "cyan",
    "magenta",
    "yellow",
    "black",
    "hue",
    "saturation",
    "lightness",
}
# Dataset tags that describe the file, not the data.
_FILE_TAG_PREFIXES = ("TIFFTAG_", "MPRASTER_")


@dataclass(frozen=True)
class BandMeta:
    """One band's metadata: colour interpretation (a `rasterio.enums.ColorInterp` name),
    description, scale and offset (value = raw * scale + offset) and units."""

    colorinterp: str | None = None
    description: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    units: str | None = None


@dataclass(frozen=True)
class Georeferencing:
    """Where the pixel grid lies: a transform, or GCPs (rows of ``GroundControlPoint``
    fields), with their CRS; and RPCs (GDAL's ``RPC`` metadata items), or none."""

    crs: str | None = None  # WKT
    transform: tuple[float, ...] | None = None  # Affine's six coefficients
    gcps: tuple[tuple[Any, ...], ...] = ()
    rpcs: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        if self.transform is not None:
            return "transform"
        if self.gcps:
            return "GCPs"
        return "RPCs" if self.rpcs else "none"

    def profile(self) -> dict[str, Any]:
        """The ``crs`` and ``transform`` of the output's profile."""
        return {
            "crs": CRS.from_wkt(self.crs) if self.crs else None,
            "transform": Affine(*self.transform) if self.transform else None,
        }

    def open_kwargs(self) -> dict[str, Any]:
        """What ``rasterio.open(..., "w")`` takes besides the profile: GCPs and RPCs."""
        kwargs: dict[str, Any] = {}
        if self.gcps:
            names = ("row", "col", "x", "y", "z", "id", "info")
            kwargs["gcps"] = [
                GroundControlPoint(**dict(zip(names, g, strict=True))) for g in self.gcps
            ]
        if self.rpcs:
            kwargs["rpcs"] = RPC.from_gdal(dict(self.rpcs))
        return kwargs


@dataclass(frozen=True)
class InputMetadata:
    """An input's band metadata (for its chosen bands), georeferencing and dataset tags."""

    bands: tuple[BandMeta, ...]
    georeferencing: Georeferencing
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OutputMetadata:
    """The output's band metadata (None: nothing known of that band), georeferencing and
    dataset tags, decided when the job is planned and written by the one writer."""

    bands: tuple[BandMeta | None, ...] = ()
    georeferencing: Georeferencing = field(default_factory=Georeferencing)
    tags: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        """As text, for a shard's plan (see `mpraster.merge`)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OutputMetadata:
        data = json.loads(text)
        geo = data["georeferencing"]
        return cls(
            bands=tuple(None if b is None else BandMeta(**b) for b in data["bands"]),
            georeferencing=Georeferencing(
                crs=geo["crs"],
                transform=tuple(geo["transform"]) if geo["transform"] else None,
                gcps=tuple(tuple(g) for g in geo["gcps"]),
                rpcs=tuple(tuple(r) for r in geo["rpcs"]),
            ),
            tags=tuple(tuple(t) for t in data["tags"]),
        )


def read_band_meta(src, band: int) -> BandMeta:
    """The metadata of ``band`` (1-based) of the open dataset ``src``."""
    color = src.colorinterp[band - 1].name
    units = src.units[band - 1]
    return BandMeta(
        colorinterp=color if color in _CARRIED_COLORS else None,
        description=src.descriptions[band - 1] or None,
        scale=float(src.scales[band - 1]),
        offset=float(src.offsets[band - 1]),
        units=units or None,
    )


def read_georeferencing(src) -> Georeferencing:
    """The open dataset's georeferencing, as `Georeferencing` (see the module's rules).

    GDAL reports a dataset without a geotransform as having the identity transform: that
    is taken as no transform.
    """
    transform = src.transform
    rpcs = src.tags(ns="RPC")
    rpc_items = tuple(sorted(rpcs.items())) if rpcs else ()
    if not transform.is_identity:
        crs = src.crs.to_wkt() if src.crs else None
        return Georeferencing(crs, tuple(transform)[:6], rpcs=rpc_items)
    gcps, gcps_crs = src.gcps
    if gcps:
        rows = tuple((g.row, g.col, g.x, g.y, g.z, g.id, g.info) for g in gcps)
        crs = gcps_crs.to_wkt() if gcps_crs else None
        return Georeferencing(crs, None, rows, rpc_items)
    return Georeferencing(None, None, (), rpc_items)


def read_input_metadata(src, bands: Sequence[int]) -> InputMetadata:
    """An open input's metadata for its chosen ``bands`` (1-based)."""
    tags = tuple(
        sorted(
            (key, value)
            for key, value in src.tags().items()
            if not key.startswith(_FILE_TAG_PREFIXES)
        )
    )
    return InputMetadata(
        bands=tuple(read_band_meta(src, b) for b in bands),
        georeferencing=read_georeferencing(src),
        tags=tags,
    )


BandMetaRule = (
    Sequence[Mapping[str, Any] | None]
    | Callable[[tuple[BandMeta | None, ...], Mapping[str, Any]], Sequence[Any]]
    | None
)


def output_metadata(
    inputs: Sequence[InputMetadata],
    sources: Sequence[tuple[int, int] | None],
    rule: BandMetaRule = None,
    params: Mapping[str, Any] | None = None,
) -> OutputMetadata:
    """The output's metadata: each band's from its source band (``sources``: per output
    band, the (input, band) it is made from, 0-based, or None), then the kernel's ``rule``
    (per output band, a mapping of fields to set, or a function of the mapped metadata and
    the parameters); the first input's georeferencing; the tags all inputs share."""
    mapped = tuple(None if s is None else inputs[s[0]].bands[s[1]] for s in sources)
    bands = _apply_rule(mapped, rule, params or {})
    shared = set(inputs[0].tags)
    for other in inputs[1:]:
        shared &= set(other.tags)
    tags = tuple(t for t in inputs[0].tags if t in shared)
    return OutputMetadata(bands, inputs[0].georeferencing, tags)


def _apply_rule(
    mapped: tuple[BandMeta | None, ...], rule: BandMetaRule, params: Mapping[str, Any]
) -> tuple[BandMeta | None, ...]:
    if rule is None:
        return mapped
    given = rule(mapped, params) if callable(rule) else rule
    if len(given) != len(mapped):
        raise ValueError(f"band metadata for {len(given)} bands, but the output has {len(mapped)}")
    bands = []
    for meta, new in zip(mapped, given, strict=True):
        if new is None and not callable(rule):
            new = meta  # nothing to set: what the mapping brought
        elif isinstance(new, Mapping):
            new = dataclasses.replace(meta or BandMeta(), **new)
        elif new is not None and not isinstance(new, BandMeta):
            raise TypeError(f"band metadata must be a BandMeta, a mapping or None, got {new!r}")
        bands.append(new)
    return tuple(bands)


def band_sources(
    rule: str | Sequence[Any] | Callable[..., Sequence[Any]] | None,
    counts: Sequence[int],
    bands: int,
    params: Mapping[str, Any],
) -> tuple[tuple[int, int] | None, ...]:
    """Per output band, the (input, band) it is made from, 0-based as a kernel's arrays,
    or None: a kernel's ``bands_from`` (see `mpraster.kernels.kernel`) for inputs of
    ``counts`` bands and ``bands`` output bands.

    Raises
    ------
    ValueError
        If the mapping does not fit the inputs and the output.
    """
    if rule is None:
        return (None,) * bands
    if rule in ("same", "reverse"):
        last = counts[0] - 1
        raw = [(j if rule == "same" else last - j) if j <= last else None for j in range(bands)]
    else:
        raw = list(rule(counts, params) if callable(rule) else rule)
    sources = tuple((0, s) if isinstance(s, int) else None if s is None else tuple(s) for s in raw)
    if len(sources) != bands or not all(
        s is None or (0 <= s[0] < len(counts) and 0 <= s[1] < counts[s[0]]) for s in sources
    ):
        raise ValueError(
            f"bands_from gives {raw} for {bands} output bands from inputs of {list(counts)} "
            "bands; give one band (0-based), (input, band) or None per output band"
        )
    return sources


def alpha_band(meta: OutputMetadata) -> int | None:
    """The output band (0-based) marked alpha, if exactly one is."""
    alphas = [i for i, b in enumerate(meta.bands) if b is not None and b.colorinterp == "alpha"]
    return alphas[0] if len(alphas) == 1 else None


def write_metadata(dst, meta: OutputMetadata) -> None:
    """Write ``meta``'s band metadata and tags to a dataset just created (``dst``)."""
    bands = meta.bands
    if any(b is not None and b.colorinterp for b in bands):
        dst.colorinterp = [
            ColorInterp[b.colorinterp] if b is not None and b.colorinterp else ColorInterp.undefined
            for b in bands
        ]
    for number, band in enumerate(bands, start=1):
        if band is not None and band.description:
            dst.set_band_description(number, band.description)
    known = [b or BandMeta() for b in bands]
    if any(b.scale != 1.0 or b.offset != 0.0 for b in known):
        dst.scales = [b.scale for b in known]
        dst.offsets = [b.offset for b in known]
    if any(b.units for b in known):
        dst.units = [b.units or "" for b in known]
    if meta.tags:
        dst.update_tags(**dict(meta.tags))


@contextlib.contextmanager
def quiet_about_georeferencing() -> Iterator[None]:
    """Opening the output: its georeferencing is its inputs' (none, perhaps), told about
    when they were read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield
