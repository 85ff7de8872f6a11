"""What a run chooses when not told: the output's codec and who reads the windows."""

import numpy as np
import pytest
import rasterio
from helpers import run_cli

import mpraster
from mpraster.merge import merge_shards
from mpraster.options import RunOptions


def _structure(path) -> dict:
    with rasterio.open(path) as src:
        return src.tags(ns="IMAGE_STRUCTURE")


def _codec(path) -> tuple[str, str]:
    tags = _structure(path)
    return tags.get("COMPRESSION", "NONE"), tags.get("PREDICTOR", "1")


@pytest.mark.parametrize(
    ("codec", "predictor"), [("DEFLATE", "2"), ("LZW", None), ("ZSTD", "2"), ("LZMA", None)]
)
def test_output_follows_the_first_inputs_codec_and_predictor(
    tmp_path, make_raster, codec, predictor
):
    options = {"compress": codec, **({"predictor": predictor} if predictor else {})}
    src = make_raster((2, 70, 50), "uint16", tile=32, **options)
    out = tmp_path / "out.tif"
    mpraster.run(src, out, "reverse", params={"cost": 0}, jobs=2, block_size=32)
    assert _codec(out) == (codec, predictor or "1")
    with rasterio.open(src) as a, rasterio.open(out) as b:
        np.testing.assert_array_equal(b.read(), a.read()[::-1])


def test_the_first_input_decides_the_codec(tmp_path, make_raster):
    plain = make_raster((1, 40, 40), "uint16")
    packed = make_raster((1, 40, 40), "uint16", seed=1, compress="deflate", predictor=2)
    first_plain, first_packed = tmp_path / "plain.tif", tmp_path / "packed.tif"
    mpraster.run([plain, packed], first_plain, "normalized-difference", jobs=1)
    mpraster.run([packed, plain], first_packed, "normalized-difference", jobs=1)
    assert _codec(first_plain) == ("NONE", "1")
    # PREDICTOR=2 differences float32 samples as integers: valid, and kept.
    assert _codec(first_packed) == ("DEFLATE", "2")


def test_a_lossy_input_codec_is_not_followed(tmp_path, make_raster):
    src = make_raster((3, 64, 64), "uint8", tile=32, compress="jpeg")
    job = mpraster.plan_job(src, tmp_path / "out.tif", "reverse", jobs=1, block_size=32)
    assert "compress" not in job.profile
    assert "the first input's JPEG is not followed" in job.describe()


def test_a_floating_point_predictor_is_dropped_for_an_integer_output(tmp_path, make_raster):
    dem = make_raster((1, 64, 64), "float32", tile=32, compress="deflate", predictor=3)
    out = tmp_path / "out.tif"
    mpraster.run(dem, out, "rescale", dtype="uint8", jobs=2, block_size=32)
    assert _codec(out) == ("DEFLATE", "1")
    job = mpraster.plan_job(dem, tmp_path / "other.tif", "slope", jobs=2, block_size=32)
    assert job.profile["predictor"] == "3"
    # NBITS packs samples tighter than a horizontal predictor can difference them.
    packed = make_raster((1, 40, 40), "uint8", tile=32, compress="deflate", predictor=2)
    job = mpraster.plan_job(
        packed, tmp_path / "nbits.tif", "reverse", jobs=1, block_size=32,
        params={"cost": 0}, creation_options={"NBITS": "7"},
    )  # fmt: skip
    assert job.profile["compress"] == "DEFLATE" and "predictor" not in job.profile
    assert "without its PREDICTOR=2: NBITS is set" in job.describe()


@pytest.mark.parametrize(
    ("given", "expected"),
    [({"COMPRESS": "NONE"}, ("NONE", "1")), ({"compress": "zstd"}, ("ZSTD", "1"))],
)
def test_creation_options_choose_the_codec_instead(tmp_path, make_raster, given, expected):
    src = make_raster((1, 40, 40), "uint16", tile=32, compress="deflate", predictor=2)
    out = tmp_path / "out.tif"
    mpraster.run(src, out, "reverse", params={"cost": 0}, jobs=1, creation_options=given)
    assert _codec(out) == expected


def test_a_followed_codec_takes_its_tuning_options(tmp_path, make_raster):
    src = make_raster((1, 40, 40), "uint16", tile=32, compress="deflate")
    job = mpraster.plan_job(
        src, tmp_path / "o.tif", "reverse", creation_options={"ZLEVEL": "9"}, jobs=1
    )
    assert job.profile["compress"] == "DEFLATE" and job.profile["zlevel"] == "9"
    plain = make_raster((1, 40, 40), "uint16")
    with pytest.raises(mpraster.MprasterError, match="ZLEVEL tunes COMPRESS=DEFLATE"):
        mpraster.plan_job(
            plain, tmp_path / "o.tif", "reverse", creation_options={"ZLEVEL": "9"}, jobs=1
        )


def test_sharded_output_merges_to_the_bytes_of_one_run(tmp_path, make_raster):
    src = make_raster((2, 70, 50), "uint16", tile=32, compress="deflate", predictor=2)
    whole, sharded = tmp_path / "whole.tif", tmp_path / "sharded.tif"
    options = dict(params={"cost": 0}, jobs=1, block_size=32)
    mpraster.run(src, whole, "reverse", **options)
    for index in range(2):
        mpraster.run(src, sharded, "reverse", shard=(index, 2), **options)
    merge_shards(sharded)
    assert _codec(sharded) == ("DEFLATE", "2")
    assert sharded.read_bytes() == whole.read_bytes()


def test_a_cog_follows_the_inputs_codec(tmp_path, make_raster):
    src = make_raster((1, 300, 300), "float32", tile=128, compress="deflate", predictor=3)
    out = tmp_path / "cog.tif"
    mpraster.run(src, out, "slope", cog=mpraster.output.CogOptions(), jobs=1, block_size=128)
    assert _structure(out)["LAYOUT"] == "COG" and _codec(out) == ("DEFLATE", "3")
    plain = make_raster((1, 300, 300), "float32", tile=128)
    job = mpraster.plan_job(plain, tmp_path / "o.tif", "slope", cog=mpraster.output.CogOptions())
    assert "  codec: LZW (GDAL's COG driver's default; the first input is uncompressed)" in (
        job.describe()
    )


def test_dry_run_names_the_codec_and_why(tmp_path, make_raster, mpraster_cmd, cli_env):
    src = make_raster((1, 40, 40), "float32", tile=32, compress="deflate", predictor=3)
    proc = run_cli(mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "slope", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert (
        "  codec: DEFLATE, PREDICTOR=3 (the first input's, as rasterio's src.profile; "
        "--co COMPRESS=NONE for none)" in proc.stdout
    )
    proc = run_cli(
        mpraster_cmd, cli_env, src, tmp_path / "o.tif", "-k", "slope", "--dry-run",
        "--co", "COMPRESS=NONE",
    )  # fmt: skip
    assert "  codec: NONE (--co COMPRESS was given)" in proc.stdout


# Who reads: worker I/O where a compressed input must be decoded and windows share no
# tiles, the main process otherwise (see `mpraster.options.worker_reads`).
@pytest.mark.parametrize(
    ("compress", "kernel", "params", "io", "reason"),
    [
        ("deflate", "reverse", {"cost": 0}, "workers", "each worker decodes its own windows"),
        (None, "reverse", {"cost": 0}, "main", "no input to decode"),
        ("deflate", "focal-mean", {"size": 5}, "main", "a halo of 2"),
    ],
)
def test_auto_reads_where_the_job_is_fastest(
    tmp_path, make_raster, compress, kernel, params, io, reason
):
    options = {"compress": compress} if compress else {}
    src = make_raster((1, 64, 64), "float32", tile=32, **options)
    for mode in ("auto", "threads", "processes"):
        job = mpraster.plan_job(src, tmp_path / "o.tif", kernel, params=params, mode=mode, jobs=2)
        assert job.io == io and f"io={io}: {reason}" in job.why
        assert f"io={io}, -j 2 (" in job.describe()


def test_given_io_and_gil_holding_kernels_keep_their_placement(tmp_path, make_raster):
    src = make_raster((1, 64, 64), "uint8", tile=32, compress="deflate")
    out = tmp_path / "o.tif"
    job = mpraster.plan_job(src, out, "reverse", io="main", jobs=2)
    assert (job.mode, job.io) == ("threads", "main") and "io=" not in job.why
    job = mpraster.plan_job(src, out, "reverse-py", jobs=2)
    assert (job.mode, job.io) == ("processes", "workers") and "holds the GIL" in job.why
    # Without the inputs' headers (a reduction), the main process reads.
    releasing = mpraster.plan_job(src, out, "reverse", jobs=2).kernel
    assert RunOptions().placement(releasing)[:2] == ("threads", "main")


def test_auto_placement_writes_the_bytes_of_every_placement(tmp_path, make_raster):
    src = make_raster((3, 90, 70), "uint8", tile=32, compress="deflate")
    outputs = []
    for io in (None, "main"):
        out = tmp_path / f"{io}.tif"
        stats = mpraster.run(src, out, "reverse", params={"cost": 0}, io=io, jobs=2, block_size=32)
        outputs.append(out.read_bytes())
        assert stats.io == (io or "workers")
    assert outputs[0] == outputs[1]
