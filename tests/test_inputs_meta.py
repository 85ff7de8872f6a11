"""Everything a raster carries besides its pixels survives a run: masks (internal, external
.msk, alpha), per-band nodata, band metadata, GCPs and RPCs, dataset tags.

Each case has a generated raster; the real files in ../shared/data are used as well when
they are there. Outputs are compared with a reference computed on the whole raster, and
their bytes across every mode and I/O placement.
"""

import hashlib
import re
import signal
import warnings

import numpy as np
import pytest
import rasterio
from helpers import SHARED_DATA, synthetic
from rasterio.control import GroundControlPoint
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.shutil import copy as gdal_copy

import mpraster
from mpraster.errors import InputMismatchError, KernelDefinitionError
from mpraster.merge import merge_shards
from mpraster.output import CogOptions
from mpraster.sample import write_raster

PLACEMENTS = [
    ("threads", "main"),
    ("threads", "workers"),
    ("processes", "main"),
    ("processes", "workers"),
]
# 32-pixel tiles over 70 x 50 with -j 2: tiles are cut into row strips, so masks are
# assembled from strips too.
RUN = dict(block_size=32, jobs=2)
# Compressed (on GDAL's threads with -j 2), with a checkpoint (close and reopen) every tile.
WRITE = dict(creation_options={"compress": "deflate"}, checkpoint_mb=0.001)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_mask(rows=70, cols=50):
    """0 (invalid) in a disc and a band along the top, 255 elsewhere."""
    r, c = np.mgrid[:rows, :cols]
    invalid = ((r - 40) ** 2 + (c - 20) ** 2 < 150) | (r < 3)
    return np.where(invalid, 0, 255).astype("uint8")


def masked_raster(path, internal=True, shape=(3, 70, 50), dtype="uint8", **options):
    """A GeoTIFF with a per-dataset mask, in the file or beside it (.msk); ``options`` as
    `write_raster` takes them."""
    write_raster(path, synthetic(shape, dtype), **options)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal), rasterio.open(path, "r+") as dst:
        dst.write_mask(a_mask(*shape[1:]))
    assert (path.parent / f"{path.name}.msk").exists() != internal
    return path


def alpha_raster(path, dtype="uint8"):
    """RGBA: band 4 is alpha, 0 where the mask is."""
    data = synthetic((4, 70, 50), dtype)
    data[3] = np.where(a_mask() > 0, np.iinfo(dtype).max, 0)
    write_raster(path, data)
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path


def per_band_nodata_vrt(path, values=(1, 2, 3)):
    """A VRT over a GeoTIFF whose bands have different nodata values (a GeoTIFF cannot)."""
    data = synthetic((len(values), 70, 50), "uint8")
    for band, value in enumerate(values):
        data[band, band::7, ::5] = value  # plenty of each band's nodata
    tif = write_raster(path.with_suffix(".tif"), data)
    gdal_copy(tif, path, driver="VRT")
    text = path.read_text()
    for band, value in enumerate(values, start=1):
        text = re.sub(
            rf'(<VRTRasterBand dataType="Byte" band="{band}"[^>]*>)',
            rf"\1<NoDataValue>{value}</NoDataValue>",
            text,
        )
    path.write_text(text)
    with rasterio.open(path) as src:
        assert src.nodatavals == tuple(map(float, values))
    return path


def per_band_mask_vrt(path):
    """A VRT whose bands have masks of their own (GDAL's per-band masks: no mask flag)."""
    tif = write_raster(path.with_suffix(".tif"), synthetic((2, 70, 50), "uint8"))
    masks = np.stack([a_mask(), np.ascontiguousarray(a_mask()[::-1])])
    write_raster(path.with_name("masks.tif"), masks)
    gdal_copy(tif, path, driver="VRT")
    text = path.read_text()
    for band in (1, 2):
        source = (
            f'<SimpleSource><SourceFilename relativeToVRT="1">masks.tif</SourceFilename>'
            f"<SourceBand>{band}</SourceBand></SimpleSource>"
        )
        mask = f'<MaskBand><VRTRasterBand dataType="Byte">{source}</VRTRasterBand></MaskBand>'
        text = re.sub(rf'(<VRTRasterBand dataType="Byte" band="{band}"[^>]*>)', rf"\1{mask}", text)
    path.write_text(text)
    with rasterio.open(path) as src:
        assert src.mask_flag_enums == ([], [])
    return path


def input_validity(path):
    """The reference: where every band of the input is valid, as GDAL's mask flags say."""
    with rasterio.open(path) as src:
        valid = np.ones((src.height, src.width), bool)
        for band in range(1, src.count + 1):
            if rasterio.enums.MaskFlags.all_valid not in src.mask_flag_enums[band - 1]:
                valid &= src.read_masks(band) > 0
        return valid, src.read()


def output_validity(path):
    with rasterio.open(path) as out:
        flags = [f for flags in out.mask_flag_enums for f in flags]
        return out.dataset_mask() > 0, out.read(), flags, out.colorinterp


CASES = {
    "internal-mask": (lambda p: masked_raster(p / "m.tif"), "reverse"),
    "external-mask": (lambda p: masked_raster(p / "m.tif", internal=False), "reverse"),
    "alpha-reversed": (lambda p: alpha_raster(p / "a.tif"), "reverse"),
    "alpha-kept": (lambda p: alpha_raster(p / "a.tif"), "focal-max"),
    "per-band-nodata": (lambda p: per_band_nodata_vrt(p / "n.vrt"), "reverse"),
    "per-band-masks": (lambda p: per_band_mask_vrt(p / "b.vrt"), "reverse"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode,io", PLACEMENTS)
def test_validity_survives_in_every_mode(tmp_path, capfd, case, mode, io):
    make, kernel = CASES[case]
    src = make(tmp_path)
    params = {"cost": 0} if kernel == "reverse" else {}
    reference = tmp_path / "reference.tif"
    mpraster.run(src, reference, kernel, params=params, mode="threads", io="main", jobs=1,
                 block_size=32, **WRITE)  # fmt: skip
    out = tmp_path / "out.tif"
    mpraster.run(src, out, kernel, params=params, mode=mode, io=io, **RUN, **WRITE)
    assert digest(out) == digest(reference)
    assert "ERROR" not in capfd.readouterr().err  # nothing GDAL said went unheard

    expected, data = input_validity(src)
    valid, result, flags, colors = output_validity(out)
    assert np.array_equal(valid, expected)
    assert rasterio.enums.MaskFlags.per_dataset in flags
    if kernel == "reverse":
        assert np.array_equal(result, data[::-1])
    if case == "alpha-reversed":
        # The alpha band is band 1 now, where GDAL does not read it as the mask: the
        # output has a mask as well, and band 1 is still marked alpha.
        assert colors == (ColorInterp.alpha, ColorInterp.blue, ColorInterp.green, ColorInterp.red)
    if case == "alpha-kept":
        assert colors[3] == ColorInterp.alpha and flags.count(rasterio.enums.MaskFlags.alpha) == 3
        assert np.array_equal(result[3] > 0, expected)


def test_uint16_alpha_stays_alpha(tmp_path):
    src = alpha_raster(tmp_path / "a.tif", "uint16")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-min", **RUN)
    valid, result, flags, colors = output_validity(out)
    assert colors[3] == ColorInterp.alpha and rasterio.enums.MaskFlags.alpha in flags
    assert np.array_equal(valid, a_mask() > 0)
    assert result.dtype == np.uint16


def focal_mean_reference(data, valid, fill):
    """Mean of the valid pixels of each 3 x 3 neighbourhood (edges repeated), per band."""
    out = np.empty(data.shape, np.float64)
    for band in range(data.shape[0]):
        values = np.pad(data[band].astype(np.float64), 1, mode="edge")
        ok = np.pad(valid[band], 1, mode="edge")
        total = np.zeros(data.shape[1:])
        count = np.zeros(data.shape[1:])
        for dr in range(3):
            for dc in range(3):
                window = (slice(dr, dr + data.shape[1]), slice(dc, dc + data.shape[2]))
                total += np.where(ok[window], values[window], 0)
                count += ok[window]
        out[band] = np.where(valid[band], total / np.maximum(count, 1), fill[band])
    return out.astype(np.float32)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_per_band_nodata_reaches_focal_mean_per_band(tmp_path, mode):
    values = (1, 2, 3)
    src = per_band_nodata_vrt(tmp_path / "n.vrt", values)
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-mean", mode=mode, **RUN)
    with rasterio.open(src) as s:
        data = s.read()
    valid = np.stack([data[b] != v for b, v in enumerate(values)])
    with rasterio.open(out) as o:
        result = o.read()
        # One GeoTIFF nodata value could not say it for three bands: a mask does, and no
        # band is given band 1's value.
        assert o.nodatavals == (None, None, None)
        assert np.array_equal(o.dataset_mask() > 0, valid.all(axis=0))
    np.testing.assert_allclose(result, focal_mean_reference(data, valid, values), rtol=1e-6)
    for band, value in enumerate(values):
        assert (result[band][~valid[band]] == value).all()  # no nodata centre became a value


def test_a_kernel_declaring_one_nodata_for_all_bands_needs_no_mask(tmp_path):
    src = per_band_nodata_vrt(tmp_path / "n.vrt")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "tests_meta_kernels:nan_where_invalid", **RUN)
    with rasterio.open(out) as o:
        assert all(np.isnan(v) for v in o.nodatavals)
        assert [f[0].name for f in o.mask_flag_enums] == ["nodata"] * 3


def test_a_mask_costs_nothing_where_there_is_none(tmp_path, make_raster, monkeypatch):
    def no_mask_work(*args, **kwargs):
        raise AssertionError("mask work for an input without a mask")

    monkeypatch.setattr(rasterio.io.DatasetReader, "read_masks", no_mask_work)
    monkeypatch.setattr(mpraster.worker, "window_validity", no_mask_work)
    src = make_raster((3, 40, 40), "uint8", nodata=0)
    for io in ("main", "workers"):
        mpraster.run(src, tmp_path / f"{io}.tif", "focal-mean", mode="threads", io=io, **RUN)
    plain = mpraster.plan_job(
        make_raster((3, 40, 40), "uint8", nodata=0), tmp_path / "o.tif", "reverse"
    )
    assert plain.validity.carrier == "nodata" and not plain.validity.per_dataset
    assert "validity: nodata 0.0" in plain.describe()
    masked = mpraster.plan_job(masked_raster(tmp_path / "m.tif"), tmp_path / "p.tif", "reverse")
    assert masked.validity.carrier == "mask"
    assert "per-dataset mask" in masked.describe()


# ------------------------------------------------------------------ kernels' validity rules


def two_masked_inputs(tmp_path):
    a = masked_raster(tmp_path / "a.tif", shape=(1, 70, 50))
    b = write_raster(tmp_path / "b.tif", synthetic((1, 70, 50), "uint8", seed=1))
    with rasterio.open(b, "r+") as dst:
        dst.write_mask(np.ascontiguousarray(a_mask()[::-1]))
    return a, b


@pytest.mark.parametrize("kernel,combine", [("both", np.logical_and), ("either", np.logical_or)])
def test_validity_rules_all_and_any(tmp_path, kernel, combine):
    a, b = two_masked_inputs(tmp_path)
    out = tmp_path / "o.tif"
    mpraster.run([a, b], out, f"tests_meta_kernels:{kernel}", **RUN)
    with rasterio.open(out) as o:
        assert np.array_equal(o.dataset_mask() > 0, combine(a_mask() > 0, a_mask()[::-1] > 0))


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_kernel_may_say_where_its_output_is_valid(tmp_path, make_raster, mode):
    src = make_raster((1, 70, 50), "uint8")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "tests_meta_kernels:valid_above_100", mode=mode, **RUN)
    with rasterio.open(src) as s, rasterio.open(out) as o:
        assert np.array_equal(o.dataset_mask() > 0, s.read(1) > 100)


def test_a_kernel_context_offers_masks_and_band_nodata(tmp_path):
    src = masked_raster(tmp_path / "m.tif", shape=(2, 70, 50))
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "tests_meta_kernels:count_valid", mode="threads", **RUN)
    with rasterio.open(out) as o:
        assert np.array_equal(o.read(1), np.where(a_mask() > 0, 2, 0))


# ------------------------------------------------------------------ band metadata and tags


def described_raster(path):
    write_raster(path, synthetic((3, 40, 40), "uint16"))
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        for band, name in enumerate(("nir", "red", "green"), start=1):
            dst.set_band_description(band, name)
            dst.update_tags(band, STATISTICS_MEAN=str(band))
        dst.scales = (0.5, 2.0, 3.0)
        dst.offsets = (0.0, 10.0, 20.0)
        dst.units = ("W", "lm", "cd")
        dst.update_tags(AREA_OR_POINT="Point", SENSOR="TM", TIFFTAG_DATETIME="2020:01:01 00:00:00")
    return path


def band_metadata(path):
    with rasterio.open(path) as src:
        return (
            src.colorinterp,
            src.descriptions,
            src.scales,
            src.offsets,
            src.units,
            src.tags(),
            [src.tags(b) for b in range(1, src.count + 1)],
        )


def test_reverse_reverses_band_metadata_and_keeps_data_tags(tmp_path):
    src = described_raster(tmp_path / "d.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "reverse", params={"cost": 0}, **RUN)
    colors, names, scales, offsets, units, tags, band_tags = band_metadata(out)
    assert colors == (ColorInterp.blue, ColorInterp.green, ColorInterp.red)
    assert names == ("green", "red", "nir")
    assert scales == (3.0, 2.0, 0.5) and offsets == (20.0, 10.0, 0.0)
    assert units == ("cd", "lm", "W")
    # What describes the data stays; the file's own tags and stale statistics do not.
    assert tags["AREA_OR_POINT"] == "Point" and tags["SENSOR"] == "TM"
    assert "TIFFTAG_DATETIME" not in tags
    assert all("STATISTICS_MEAN" not in t for t in band_tags)


def test_rescale_keeps_what_still_holds(tmp_path):
    src = described_raster(tmp_path / "d.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "rescale", params={"scale": 2.0}, **RUN)
    colors, names, scales, offsets, units, _, _ = band_metadata(out)
    assert colors == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    assert names == ("nir", "red", "green")
    assert scales == (1.0,) * 3 and offsets == (0.0,) * 3 and units == (None,) * 3


def test_new_bands_get_no_metadata_by_position(tmp_path):
    src = described_raster(tmp_path / "d.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "tests_meta_kernels:two_new_bands", **RUN)
    colors, names, scales, offsets, units, _, _ = band_metadata(out)
    assert ColorInterp.red not in colors and ColorInterp.green not in colors
    assert names == (None, None) and scales == (1.0, 1.0) and units == (None, None)
    declared = tmp_path / "declared.tif"
    mpraster.run(src, declared, "tests_meta_kernels:declared_bands", **RUN)
    colors, names, scales, offsets, units, _, _ = band_metadata(declared)
    assert colors[0] == ColorInterp.blue and names == ("green", "ratio")
    assert scales == (3.0, 1.0) and offsets == (20.0, 0.0) and units == ("cd", None)


def test_built_in_kernels_with_new_bands_describe_them(tmp_path, make_raster):
    dem = make_raster((1, 40, 40), "float32")
    out = tmp_path / "slope.tif"
    mpraster.run(dem, out, "slope", **RUN)
    _, names, _, _, units, _, _ = band_metadata(out)
    assert names == ("slope",) and units == ("degrees",)


def test_a_bad_band_mapping_is_the_kernels_fault(tmp_path, make_raster):
    with pytest.raises(KernelDefinitionError, match="bands_from"):
        mpraster.plan_job(make_raster(), tmp_path / "o.tif", "tests_meta_kernels:bad_mapping")


# ------------------------------------------------------------------ georeferencing

GCPS = [
    GroundControlPoint(row=0.5, col=0.5, x=-123.5, y=49.5, z=10.0, id="a"),
    GroundControlPoint(row=69.5, col=0.5, x=-123.5, y=49.0, z=11.0, id="b"),
    GroundControlPoint(row=0.5, col=49.5, x=-122.9, y=49.5, z=12.0, id="c"),
]


def gcp_raster(path, gcps=GCPS):
    data = synthetic((3, 70, 50), "uint8")
    profile = dict(driver="GTiff", dtype="uint8", count=3, height=70, width=50, nodata=0)
    with rasterio.open(path, "w", **profile, gcps=gcps, crs="EPSG:4326") as dst:
        dst.write(data)
    return path


def rpc_raster(path):
    rpcs = RPC(
        height_off=100,
        height_scale=50,
        lat_off=40,
        lat_scale=0.1,
        line_den_coeff=[1] + [0] * 19,
        line_num_coeff=[0, 0, 1] + [0] * 17,
        line_off=35,
        line_scale=35,
        long_off=-100,
        long_scale=0.1,
        samp_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1] + [0] * 18,
        samp_off=25,
        samp_scale=25,
    )
    profile = dict(driver="GTiff", dtype="uint8", count=2, height=70, width=50)
    with rasterio.open(path, "w", **profile, rpcs=rpcs) as dst:
        dst.write(synthetic((2, 70, 50), "uint8"))
    return path


def gcp_rows(gcps):
    return [(g.row, g.col, g.x, g.y, g.z) for g in gcps]


def assert_never_a_crs_without_a_transform(src):
    assert not (src.crs and src.transform.is_identity), "a CRS with an identity transform"


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_gcps_are_carried_with_their_crs(tmp_path, mode):
    src = gcp_raster(tmp_path / "g.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "reverse", params={"cost": 0}, mode=mode, **RUN)
    with rasterio.open(out) as o:
        gcps, crs = o.gcps
        assert gcp_rows(gcps) == gcp_rows(GCPS) and crs == "EPSG:4326"
        assert_never_a_crs_without_a_transform(o)


def test_rpcs_are_carried(tmp_path):
    src = rpc_raster(tmp_path / "r.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "focal-mean", **RUN)
    with rasterio.open(src) as s, rasterio.open(out) as o:
        assert o.rpcs is not None and o.rpcs.to_gdal() == s.rpcs.to_gdal()
        assert_never_a_crs_without_a_transform(o)


def test_inputs_with_different_gcps_do_not_share_a_grid(tmp_path):
    a = gcp_raster(tmp_path / "a.tif")
    moved = [GroundControlPoint(g.row, g.col, g.x + 1, g.y, g.z, g.id) for g in GCPS]
    b = gcp_raster(tmp_path / "b.tif", moved)
    with pytest.raises(InputMismatchError, match="not georeferenced alike"):
        mpraster.plan_job([a, b], tmp_path / "o.tif", "tests_meta_kernels:both")


def test_an_input_without_georeferencing_gives_an_output_without(tmp_path):
    path = tmp_path / "plain.tif"
    profile = dict(driver="GTiff", dtype="uint8", count=1, height=40, width=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(synthetic((1, 40, 40), "uint8"))
        out = tmp_path / "o.tif"
        mpraster.run(path, out, "reverse", params={"cost": 0}, **RUN)
        with rasterio.open(out) as o:
            assert o.crs is None and not o.gcps[0] and o.rpcs is None


# ------------------------------------------------------------------ the writer's promises


def test_resume_with_a_mask_is_byte_identical(tmp_path):
    src = masked_raster(tmp_path / "m.tif")
    kwargs = dict(block_size=16, jobs=1, params={"cost": 0}, checkpoint_mb=0.0001)
    kwargs["creation_options"] = {"compress": "deflate"}
    expected = tmp_path / "expected.tif"
    mpraster.run(src, expected, "reverse", **kwargs)
    out = tmp_path / "o.tif"
    stop = mpraster.StopSignal(grace=0)
    seen = []

    class StopAfterFive(mpraster.progress.NullProgress):
        def advance(self, windows, pixels):
            seen.append(windows)
            if len(seen) == 5:
                stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(src, out, "reverse", stop=stop, progress=StopAfterFive(), **kwargs)
    stats = mpraster.run(src, out, "reverse", resume=True, **kwargs)
    assert stats.windows_resumed >= 5
    assert out.read_bytes() == expected.read_bytes()
    assert np.array_equal(output_validity(out)[0], a_mask() > 0)


def test_resume_refuses_a_damaged_mask(tmp_path):
    src = masked_raster(tmp_path / "m.tif")
    kwargs = dict(block_size=16, jobs=1, params={"cost": 0}, checkpoint_mb=0.0001)
    out = tmp_path / "o.tif"
    stop = mpraster.StopSignal(grace=0)

    class StopAfter(mpraster.progress.NullProgress):
        def advance(self, windows, pixels):
            stop.set(signal.SIGTERM)

    with pytest.raises(mpraster.MprasterError, match="--resume"):
        mpraster.run(src, out, "reverse", stop=stop, progress=StopAfter(), **kwargs)
    with rasterio.open(tmp_path / "o.tif.partial", "r+") as ds:
        ds.write_mask(np.full((16, 16), 255, "uint8"), window=((0, 16), (0, 16)))
    with pytest.raises(mpraster.errors.ResumeError, match="does not match its journal"):
        mpraster.run(src, out, "reverse", resume=True, **kwargs)


def test_shards_with_a_mask_merge_to_the_bytes_of_one_run(tmp_path):
    src = masked_raster(tmp_path / "m.tif")
    out = tmp_path / "o.tif"
    kwargs = dict(block_size=16, params={"size": 3}, creation_options={"compress": "deflate"})
    single = tmp_path / "single.tif"
    mpraster.run(src, single, "focal-mean", jobs=1, **kwargs)
    for index in range(3):
        mpraster.run(src, out, "focal-mean", jobs=2, shard=(index, 3), **kwargs)
    merge_shards(out)
    assert out.read_bytes() == single.read_bytes()
    assert np.array_equal(output_validity(out)[0], a_mask() > 0)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_cog_and_compression_copies_keep_the_mask_and_metadata(tmp_path, mode):
    src = gcp_raster(tmp_path / "g.tif")
    with rasterio.open(src, "r+") as dst:
        dst.nodata = None
        dst.write_mask(a_mask())
    reference = None
    for name, extra in [
        ("cog", dict(cog=CogOptions("auto"), block_size=128)),
        ("zlevel", dict(creation_options={"compress": "deflate", "zlevel": 9}, block_size=32)),
    ]:
        out = tmp_path / f"{name}-{mode}.tif"
        mpraster.run(src, out, "reverse", params={"cost": 0}, mode=mode, jobs=2, **extra)
        with rasterio.open(out) as o:
            assert np.array_equal(o.dataset_mask() > 0, a_mask() > 0)
            assert gcp_rows(o.gcps[0]) == gcp_rows(GCPS)
            assert_never_a_crs_without_a_transform(o)
        threads = tmp_path / f"{name}-threads.tif"
        if mode == "processes":
            mpraster.run(src, threads, "reverse", params={"cost": 0}, mode="threads", **extra)
            reference = threads
            assert digest(out) == digest(reference)


@pytest.mark.parametrize("io", ["workers", "main"])
def test_mpi_carries_the_mask(tmp_path, mpirun, io):
    src = masked_raster(tmp_path / "m.tif")
    reference = tmp_path / "threads.tif"
    mpraster.run(src, reference, "focal-mean", mode="threads", jobs=1, block_size=32)
    out = tmp_path / "mpi.tif"
    args = ["-k", "focal-mean", "--mode", "mpi", "--io", io, "--block-size", "32", "-q"]
    proc = mpirun("-m", "mpraster", "run", src, out, *args, "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert digest(out) == digest(reference)
    assert np.array_equal(output_validity(out)[0], a_mask() > 0)


# ------------------------------------------------------------------ rasterio's own files


def shared(name):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{name} not present in {SHARED_DATA}; generated rasters cover this")
    return path


@pytest.mark.parametrize(
    "name,valid_pixels",
    [("RGB2.byte.tif", 382776), ("RGBA.byte.tif", 383077), ("RGBA.uint16.tif", 127316)],
)
def test_real_masks_and_alpha_survive_reverse(tmp_path, name, valid_pixels):
    src = shared(name)
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "reverse", params={"cost": 0}, mode="threads", jobs=2)
    with rasterio.open(src) as s, rasterio.open(out) as o:
        assert int((o.dataset_mask() > 0).sum()) == valid_pixels
        assert np.array_equal(o.dataset_mask() > 0, s.dataset_mask() > 0)
        assert o.colorinterp == s.colorinterp[::-1]


def test_real_gcp_vrt_keeps_its_gcps(tmp_path):
    src = shared("RGB.byte.gcp.vrt")
    shared("RGB.byte.tif")
    out = tmp_path / "o.tif"
    mpraster.run(src, out, "reverse", params={"cost": 0}, mode="threads", jobs=2)
    with rasterio.open(src) as s, rasterio.open(out) as o:
        assert gcp_rows(o.gcps[0]) == gcp_rows(s.gcps[0]) and o.gcps[1] == s.gcps[1]
        assert_never_a_crs_without_a_transform(o)
        assert o.nodatavals == (0.0, 0.0, 0.0)
