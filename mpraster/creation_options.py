"""The output's GDAL profile and its creation options, decided by mpraster, not by GDAL's version.

GDAL only warns about an unknown creation option or value and writes the file without
it, refuses some combinations only while encoding (on its compression threads, where no
error reaches the caller), and words all this differently from one version to the next.
Here every option is checked against mpraster's own table first, with mpraster's own
messages; then a probe writes one real tile the way the writer will, as a backstop.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from mpraster.errors import OptionError
from mpraster.gdal_errors import GDAL_MESSAGES, GDAL_RAISES, gdal_reason, one_line
from mpraster.inputs import InputInfo
from mpraster.output import COG_OPTIONS, PROFILE_KEYS, CogOptions, copy_final, writer_profiles

# Creation options that would break the tile-aligned plan; --block-size owns them.
_RESERVED_CREATION_OPTIONS = {"tiled", "blockxsize", "blockysize", "driver"}


def output_profile(
    first: InputInfo,
    dtype: np.dtype,
    count: int,
    block: int,
    creation_options: Mapping[str, Any] | None = None,
    compress_threads: int = 1,
    nodata: float | None = None,
) -> dict[str, Any]:
    """The output's profile: the input's grid, the kernel's dtype and bands, tiled at ``block``.

    Without ``COMPRESS`` in ``creation_options`` the output takes the first input's codec
    (see `followed_codec`). A compressed output compresses on ``compress_threads`` GDAL
    threads unless the creation options set NUM_THREADS: the single writer would otherwise
    compress every tile itself and bound an I/O-bound run (GDAL writes the tiles in order
    either way).

    Raises
    ------
    OptionError
        If a creation option would change the tiling (use ``block_size``) or the driver.
    """
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": dtype.name,
        "count": count,
        "height": first.height,
        "width": first.width,
        "crs": first.crs,
        "transform": first.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "bigtiff": "IF_SAFER",
    }
    # The first input's codec unless the creation options choose one (`followed_codec`).
    profile.update(followed_codec(first, dtype, creation_options or {})[0])
    for key, value in (creation_options or {}).items():
        if key.lower() in _RESERVED_CREATION_OPTIONS:
            raise OptionError(
                f"creation option {key.upper()} is set by mpraster (tiled GeoTIFF); "
                "use --block-size to choose the tile size"
            )
        profile[key.lower()] = value
    if profile.get("compress") and "num_threads" not in profile and compress_threads > 1:
        profile["num_threads"] = str(compress_threads)
    return profile


def followed_codec(
    first: InputInfo, dtype: np.dtype, creation_options: Mapping[str, Any]
) -> tuple[dict[str, str], str]:
    """The creation options the output takes from the first input's codec, and why.

    As rasterio's ``dst = rasterio.open(..., **src.profile)`` pattern does, a DEFLATE,
    LZW, ZSTD or LZMA input gives an output of the same codec and predictor, so that a
    compressed input does not turn into an output several times its size and a run
    compares like with like with the tools that copy the profile. The predictor is dropped
    where it cannot encode the output (PREDICTOR=3 for an integer output, any with NBITS).
    Lossy and image-only codecs (JPEG, WEBP, LERC, JXL, CCITT) and PACKBITS are not
    followed: a kernel's output is other data. ``--co COMPRESS=...`` (NONE included)
    overrides all this.
    """
    given = {str(key).lower() for key in creation_options}
    if "compress" in given:
        return {}, "--co COMPRESS was given"
    codec = first.compression
    if codec is None:
        return {}, "the first input is uncompressed; --co COMPRESS=DEFLATE compresses it"
    if codec not in _PREDICTOR_CODECS:
        return {}, (
            f"the first input's {codec} is not followed (lossy or made for images); "
            "--co COMPRESS=DEFLATE compresses it"
        )
    options = {"compress": codec}
    why = "the first input's, as rasterio's src.profile"
    if first.predictor != 1 and "predictor" not in given:
        if first.predictor == 3 and dtype.kind != "f":
            why += f", without its PREDICTOR=3: the output is {dtype.name}"
        elif "nbits" in given:
            why += f", without its PREDICTOR={first.predictor}: NBITS is set"
        else:
            options["predictor"] = str(first.predictor)
    return options, why + "; --co COMPRESS=NONE for none"


_GTIFF_DOC = "https://gdal.org/drivers/raster/gtiff.html#creation-options"
_BOOLEAN = ("YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0")
_PREDICTOR_CODECS = ("DEFLATE", "LZW", "LZMA", "ZSTD")
_LERC = ("LERC", "LERC_DEFLATE", "LERC_ZSTD")
_CCITT = ("CCITTRLE", "CCITTFAX3", "CCITTFAX4")
# Compression levels per codec: GTiff's ZLEVEL, ZSTD_LEVEL and LZMA_PRESET, the COG driver's
# LEVEL. DEFLATE goes to 12 with libdeflate, which GDAL's builds (rasterio's wheels) use.
_LEVELS = {
    "DEFLATE": (1, 12),
    "LERC_DEFLATE": (1, 12),
    "ZSTD": (1, 22),
    "LERC_ZSTD": (1, 22),
    "LZMA": (0, 9),
}
# The sample widths NBITS may pack each data type into (GDAL's GTiff driver).
_NBITS = {"uint8": (1, 8), "uint16": (9, 16), "uint32": (17, 32)}


@dataclass(frozen=True)
class _OptionRule:
    """What one creation option takes, and the compressions it tunes (empty: any)."""

    kind: str  # "int", "float", "choice" or "text"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    codecs: tuple[str, ...] = ()


def _choice(*choices: str, codecs: tuple[str, ...] = ()) -> _OptionRule:
    return _OptionRule("choice", choices, codecs=codecs)


_TEXT = _OptionRule("text")
# The GTiff driver's creation options (GDAL 3.10 to 3.12, gtiffdataset_write.cpp and its
# documentation), as mpraster checks them before GDAL sees them: GDAL itself only warns
# about most mistakes and writes the file without the option, and what it refuses
# changes between versions.
_GTIFF_RULES: dict[str, _OptionRule] = {
    "compress": _choice(
        "NONE",
        "LZW",
        "PACKBITS",
        "JPEG",
        *_CCITT,
        "DEFLATE",
        "LZMA",
        "ZSTD",
        "WEBP",
        *_LERC,
        "JXL",
    ),
    "predictor": _choice("1", "2", "3"),
    "zlevel": _OptionRule("int", low=1, high=12, codecs=("DEFLATE", "LERC_DEFLATE")),
    "zstd_level": _OptionRule("int", low=1, high=22, codecs=("ZSTD", "LERC_ZSTD")),
    "lzma_preset": _OptionRule("int", low=0, high=9, codecs=("LZMA",)),
    "jpeg_quality": _OptionRule("int", low=1, high=100, codecs=("JPEG",)),
    "jpegtablesmode": _OptionRule("int", low=0, high=3, codecs=("JPEG",)),
    "webp_level": _OptionRule("int", low=1, high=100, codecs=("WEBP",)),
    "webp_lossless": _choice(*_BOOLEAN, codecs=("WEBP",)),
    "max_z_error": _OptionRule("float", low=0, codecs=_LERC),
    "max_z_error_overview": _OptionRule("float", low=0, codecs=_LERC),
    "jxl_lossless": _choice(*_BOOLEAN, codecs=("JXL",)),
    "jxl_effort": _OptionRule("int", low=1, high=9, codecs=("JXL",)),
    "jxl_distance": _OptionRule("float", low=0.01, high=25, codecs=("JXL",)),
    "jxl_alpha_distance": _OptionRule("float", low=-1, high=25, codecs=("JXL",)),
    "discard_lsb": _TEXT,
    "num_threads": _TEXT,
    "nbits": _OptionRule("int", low=1, high=32),
    "interleave": _choice("PIXEL", "BAND"),
    "photometric": _choice(
        "MINISBLACK",
        "MINISWHITE",
        "PALETTE",
        "RGB",
        "CMYK",
        "YCBCR",
        "CIELAB",
        "ICCLAB",
        "ITULAB",
    ),
    "alpha": _choice("NON-PREMULTIPLIED", "PREMULTIPLIED", "UNSPECIFIED", "YES", "NO"),
    "profile": _choice("GDALGEOTIFF", "GEOTIFF", "BASELINE"),
    "pixeltype": _choice("DEFAULT", "SIGNEDBYTE"),
    "bigtiff": _choice("YES", "NO", "IF_NEEDED", "IF_SAFER"),
    "endianness": _choice("NATIVE", "INVERTED", "LITTLE", "BIG"),
    "sparse_ok": _choice(*_BOOLEAN),
    "tfw": _choice(*_BOOLEAN),
    "rpb": _choice(*_BOOLEAN),
    "rpctxt": _choice(*_BOOLEAN),
    "copy_src_overviews": _choice(*_BOOLEAN),
    "streamable_output": _choice(*_BOOLEAN),
    "geotiff_keys_flavor": _choice("STANDARD", "ESRI_PE"),
    "geotiff_version": _choice("AUTO", "1.0", "1.1"),
    "color_table_multiplier": _choice("1", "256", "257"),
    "source_icc_profile": _TEXT,
    "source_primaries_red": _TEXT,
    "source_primaries_green": _TEXT,
    "source_primaries_blue": _TEXT,
    "source_whitepoint": _TEXT,
    "tifftag_transferfunction_red": _TEXT,
    "tifftag_transferfunction_green": _TEXT,
    "tifftag_transferfunction_blue": _TEXT,
    "tifftag_transferrange_black": _TEXT,
    "tifftag_transferrange_white": _TEXT,
}
# Options of GDAL's COG driver, which writes a --cog output from mpraster's working file.
_COG_RULES: dict[str, _OptionRule] = {
    "level": _OptionRule("int", low=0, high=22, codecs=tuple(_LEVELS)),
    "quality": _OptionRule("int", low=1, high=100, codecs=("JPEG", "WEBP")),
}
_COG_CODECS = ("NONE", "LZW", "JPEG", "DEFLATE", "LZMA", "ZSTD", "WEBP", *_LERC, "JXL")
# The COG driver's names for GTiff's compression settings (the rest it does not take).
_COG_NAMES = {
    "zlevel": "LEVEL",
    "zstd_level": "LEVEL",
    "lzma_preset": "LEVEL",
    "jpeg_quality": "QUALITY",
    "webp_level": "QUALITY",
    "webp_lossless": "QUALITY=100",
}


def _compression(codec: str) -> str:
    return "uncompressed" if codec == "NONE" else f"compressed with {codec}"


def _one_of(choices: Sequence[str]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]


def _check_value(name: str, value: str, rule: _OptionRule) -> None:
    """Raise `OptionError` if ``value`` is not one ``rule`` takes."""
    upper = value.upper()
    label = f"creation option {name.upper()}={value}"
    if rule.kind == "choice" and upper not in rule.choices:
        choices = "YES or NO" if rule.choices == _BOOLEAN else _one_of(rule.choices)
        raise OptionError(f"{label} is not a value GDAL takes; choose {choices}")
    if rule.kind in ("int", "float"):
        try:
            number = int(value) if rule.kind == "int" else float(value)
        except ValueError:
            kind = "whole number" if rule.kind == "int" else "number"
            raise OptionError(f"{label} is not a {kind}; see {_GTIFF_DOC}") from None
        if (rule.low is not None and number < rule.low) or (
            rule.high is not None and number > rule.high
        ):
            span = (
                f"from {rule.low} to {rule.high}"
                if rule.high is not None
                else f"{rule.low} or more"
            )
            raise OptionError(f"{label} is out of range; give {name.upper()} {span}")
    if name == "num_threads" and not (upper == "ALL_CPUS" or (value.isdigit() and int(value))):
        raise OptionError(f"{label} is not a number of threads; give 1 or more, or ALL_CPUS")
    if name == "discard_lsb" and not re.fullmatch(r"\d+(,\d+)*", value):
        raise OptionError(f"{label} is not a number of bits (or one per band, comma-separated)")


def _check_option_table(profile: Mapping[str, Any], cog: bool) -> None:
    """mpraster's own rules for creation options: names, values, and what GDAL can encode.

    Raises
    ------
    OptionError
        Naming the option, why it cannot be used, and the fix.
    """
    given = {
        name: str(value).strip()
        for name, value in profile.items()
        if name not in PROFILE_KEYS | _RESERVED_CREATION_OPTIONS
    }
    rules = {**_GTIFF_RULES, **(_COG_RULES if cog else {})}
    for name, value in given.items():
        rule = rules.get(name)
        if rule is None and name in _COG_RULES:
            instead = {
                "level": "ZLEVEL (DEFLATE), ZSTD_LEVEL (ZSTD) or LZMA_PRESET (LZMA)",
                "quality": "JPEG_QUALITY (JPEG) or WEBP_LEVEL (WEBP)",
            }[name]
            raise OptionError(
                f"creation option {name.upper()} is for --cog outputs (GDAL's COG driver); "
                f"a plain GeoTIFF takes {instead}"
            )
        if rule is None:
            raise OptionError(
                f"unknown creation option {name.upper()} for a GeoTIFF; see {_GTIFF_DOC}"
            )
        if cog and rule.codecs and (name in _COG_NAMES or name not in COG_OPTIONS):
            instead = _COG_NAMES.get(name)
            raise OptionError(
                f"creation option {name.upper()} does not reach GDAL's COG driver, which "
                "compresses a --cog output; "
                + (f"give {instead} instead" if instead else "drop it")
            )
        _check_value(name, value, rule)
    values = {name: value.upper() for name, value in given.items()}
    # The COG driver compresses with LZW unless told otherwise (GDAL >= 3.4).
    codec = values.get("compress", "LZW" if cog else "NONE")
    if cog and codec not in _COG_CODECS:
        raise OptionError(
            f"creation option COMPRESS={given['compress']} is not one GDAL's COG driver "
            f"takes for --cog; choose {_one_of(_COG_CODECS)}"
        )
    for name in given:
        codecs = rules[name].codecs
        if codecs and codec not in codecs:
            raise OptionError(
                f"creation option {name.upper()} tunes COMPRESS={' or '.join(codecs)}, and the "
                f"output is {_compression(codec)}; set COMPRESS or drop {name.upper()}"
            )
    if "level" in values:
        low, high = _LEVELS[codec]
        if not low <= int(values["level"]) <= high:
            raise OptionError(
                f"creation option LEVEL={given['level']} is out of range for {codec}; "
                f"give LEVEL from {low} to {high}"
            )
    _check_codec_fits(values, codec, np.dtype(profile["dtype"]), int(profile["count"]), cog)


def _check_codec_fits(
    values: Mapping[str, str], codec: str, dtype: np.dtype, bands: int, cog: bool
) -> None:
    """Raise `OptionError` for a codec, predictor or NBITS that cannot encode the output."""
    bits = _check_nbits(values, dtype)
    _check_predictor(values, codec, dtype, bits)
    _check_image_codec(values, codec, dtype, bands, bits, cog)


def _check_nbits(values: Mapping[str, str], dtype: np.dtype) -> int:
    """The bits per sample the output gets: NBITS, checked against its type, or the type's."""
    if "nbits" not in values:
        return dtype.itemsize * 8
    nbits = int(values["nbits"])
    low, high = _NBITS.get(dtype.name, (16, 32) if dtype.name == "float32" else (0, 0))
    if dtype.name == "float32" and nbits not in (16, 32):
        takes = "a float32 output takes NBITS=16 (half precision) only"
    elif not high:
        takes = "NBITS is for uint8, uint16, uint32 and float32 outputs"
    elif not low <= nbits <= high:
        takes = f"a {dtype.name} output takes NBITS from {low} to {high}"
    else:
        return nbits
    raise OptionError(
        f"creation option NBITS={nbits} does not suit the {dtype.name} output: {takes}; "
        "drop NBITS or change it"
    )


def _check_predictor(values: Mapping[str, str], codec: str, dtype: np.dtype, bits: int) -> None:
    predictor = values.get("predictor", "1")
    # The COG driver's names for the predictors (YES picks the one that suits the type).
    floating = dtype.name in ("float32", "float64")
    predictor = {
        "NO": "1",
        "STANDARD": "2",
        "FLOATING_POINT": "3",
        "YES": "3" if floating else "2",
    }.get(predictor, predictor)
    if predictor == "1":
        return
    label = f"creation option PREDICTOR={values['predictor']}"
    if codec not in _PREDICTOR_CODECS:
        raise OptionError(
            f"{label} needs a compression that uses it (DEFLATE, LZW, LZMA or ZSTD), and "
            f"the output is {_compression(codec)}; set COMPRESS=DEFLATE (or ZSTD, LZW) or "
            "drop PREDICTOR"
        )
    if predictor == "3" and not floating:
        raise OptionError(
            f"{label} (floating point) needs a float32 or float64 output, and the output "
            f"is {dtype.name}; use PREDICTOR=2"
        )
    if predictor == "2" and bits not in (8, 16, 32, 64):
        raise OptionError(
            f"{label} needs 8, 16, 32 or 64-bit samples, and NBITS={bits} packs them "
            "tighter; drop PREDICTOR or NBITS"
        )


def _check_image_codec(
    values: Mapping[str, str], codec: str, dtype: np.dtype, bands: int, bits: int, cog: bool
) -> None:
    """The codecs made for images (JPEG, WEBP, CCITT, YCbCr) and what they can hold."""
    interleave = values.get("interleave", "PIXEL")
    if codec == "JPEG":
        # 12-bit JPEG (uint16, NBITS=12) depends on how GDAL was built; rasterio's wheels
        # write it without error and cannot read it back.
        if dtype.name != "uint8" or bits != 8:
            raise OptionError(
                f"COMPRESS=JPEG needs a uint8 output, and the output is {dtype.name}"
                f"{f' with NBITS={bits}' if bits != dtype.itemsize * 8 else ''}; choose "
                "DEFLATE, ZSTD or LZW, or make the output uint8"
            )
        if bands > 4 and (cog or interleave == "PIXEL"):
            # GDAL's COG driver interleaves by pixel whatever INTERLEAVE says.
            raise OptionError(
                f"COMPRESS=JPEG takes at most 4 bands when they are interleaved by pixel, and "
                f"the output has {bands}; set INTERLEAVE=BAND (not with --cog) or choose "
                "another codec"
            )
    if codec == "WEBP":
        if dtype.name != "uint8" or bits != 8 or bands not in (3, 4):
            raise OptionError(
                f"COMPRESS=WEBP needs a uint8 output of 3 or 4 bands (RGB or RGBA), and the "
                f"output has {bands} band{'s' if bands != 1 else ''} of {dtype.name}; choose "
                "DEFLATE, ZSTD or LZW"
            )
        if interleave != "PIXEL":
            raise OptionError(
                "COMPRESS=WEBP needs bands interleaved by pixel; drop INTERLEAVE=BAND"
            )
    if codec in _CCITT and not (dtype.name == "uint8" and bands == 1 and bits == 1):
        raise OptionError(
            f"COMPRESS={codec} is for bilevel images: a one-band uint8 output with NBITS=1; "
            "choose DEFLATE, ZSTD or LZW"
        )
    if values.get("photometric") == "YCBCR" and (
        cog or codec != "JPEG" or bands != 3 or interleave != "PIXEL"
    ):
        raise OptionError(
            "creation option PHOTOMETRIC=YCBCR needs COMPRESS=JPEG, 3 bands interleaved by "
            "pixel, and no --cog (GDAL's COG driver uses YCbCr for a 3-band JPEG by itself)"
        )


def _probe_data(dtype: np.dtype, bands: int, size: int, bits: int) -> np.ndarray:
    """A tile of real data of the output's type, within NBITS (GDAL warns when it clips)."""
    values = np.arange(bands * size * size) % (2**bits if bits < 7 else 100)
    return values.reshape(bands, size, size).astype(dtype)


# The keys of `output_profile` when no creation option is given.
_OWN_PROFILE_KEYS = frozenset(
    {
        *("driver", "dtype", "count", "height", "width", "crs", "transform", "nodata"),
        *("tiled", "blockxsize", "blockysize", "bigtiff"),
    }
)
# The most bands a GeoTIFF holds (TIFF's SamplesPerPixel is 16 bits).
_GTIFF_MAX_BANDS = 65535


def check_creation_options(profile: Mapping[str, Any], cog: bool = False) -> None:
    """Check the output's creation options, then write a tile with them in memory.

    GDAL only warns about an unknown creation option or value and writes the file without
    it (``--co COMPRESS=NOPE`` would give an uncompressed output that looks fine), what it
    refuses differs between its versions, and a codec that cannot encode the output's data
    says so only when a tile is compressed, in GDAL's compression threads, where nobody
    hears it. So mpraster's own rules (`_check_option_table`) come first; then, as a
    backstop, one tile of the output's type and bands is encoded the way the writer would
    (working file, and the copy GDAL makes at the end for a COG), on this thread, and every
    error or warning GDAL gives is a refusal.

    Raises
    ------
    OptionError
        Naming the option and why it cannot be used.
    """
    _check_option_table(profile, cog)
    if not cog and set(profile) <= _OWN_PROFILE_KEYS and int(profile["count"]) <= _GTIFF_MAX_BANDS:
        # Only what mpraster itself sets (an uncompressed tiled GeoTIFF): nothing for GDAL
        # to refuse, and the probe's encoding would be most of a small run's work.
        return
    dtype = np.dtype(profile["dtype"])
    bands = int(profile["count"])
    bits = int(profile.get("nbits") or dtype.itemsize * 8)
    # GDAL's COG driver takes no tile smaller than 128.
    size = 128 if cog else 16
    shape = {"height": size, "width": size, "blockxsize": size, "blockysize": size}
    # No NUM_THREADS: a tile encoded on GDAL's threads fails where nobody hears it.
    final = {k: v for k, v in profile.items() if k != "num_threads"} | shape
    work, copy_at_end = writer_profiles(final, cog)
    try:
        with (
            GDAL_MESSAGES.listening(warnings=True) as heard,
            MemoryFile() as memory,
            warnings.catch_warnings(),
        ):
            # An output without a transform (GCPs, RPCs, none) is no creation option's fault.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with memory.open(**work) as dst:
                dst.write(_probe_data(dtype, bands, size, bits))
            if copy_at_end:
                with MemoryFile() as copied:
                    copy_final(memory.name, copied.name, final, CogOptions("none") if cog else None)
    except GDAL_RAISES as err:
        raise OptionError(
            f"GDAL cannot write the output with its creation options: "
            f"{gdal_reason(one_line(err))}; see {_GTIFF_DOC}"
        ) from err
    said = heard.errors + (heard.warnings or [])
    if said:
        raise OptionError(
            f"GDAL refused the output's creation options: {gdal_reason(said[0])}; see {_GTIFF_DOC}"
        )
