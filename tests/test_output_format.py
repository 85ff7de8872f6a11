"""Output names say the format: mpraster writes GeoTIFF (or COG), and an output named for
another raster format (out.png, out.nc, out.vrt) is refused before any work."""

import subprocess

import pytest
import rasterio
from rasterio.drivers import raster_driver_extensions

import mpraster
from mpraster.errors import OptionError
from mpraster.options import OTHER_FORMAT_EXTENSIONS, check_output_format


def test_table_covers_every_format_this_gdal_writes():
    """The table is GDAL's DMD_EXTENSIONS as rasterio reads them, on GDAL 3.10 and 3.12; a
    GDAL that names another extension (a new driver) fails here until it is added."""
    with rasterio.Env():
        gdal = raster_driver_extensions()
    others = {ext: driver for ext, driver in gdal.items() if driver not in ("GTiff", "COG")}
    missing = {ext: d for ext, d in others.items() if OTHER_FORMAT_EXTENSIONS.get(ext) != d}
    assert not missing, f"add to OTHER_FORMAT_EXTENSIONS in mpraster/options.py: {missing}"
    assert gdal["tif"] == gdal["tiff"] == "GTiff"
    assert not {"tif", "tiff"} & set(OTHER_FORMAT_EXTENSIONS)


@pytest.mark.parametrize(
    "name,driver",
    [
        ("out.png", "PNG"),
        ("out.jpg", "JPEG"),
        ("OUT.JPEG", "JPEG"),
        ("out.nc", "netCDF"),
        ("out.vrt", "VRT"),
        ("out.img", "HFA"),
        ("out.jp2", "JP2OpenJPEG"),
        ("out.webp", "WEBP"),
        ("dir.tif/out.gpkg.zip", "GPKG"),
    ],
)
def test_names_of_other_formats_are_refused(name, driver):
    stem = name.rsplit(".", 2 if name.endswith(".zip") else 1)[0]
    with pytest.raises(OptionError) as caught:
        check_output_format(name)
    message = str(caught.value)
    assert f"output {name} is named for the {driver} format" in message
    assert f"`gdal_translate -of {driver} {stem}.tif {name}`" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name", ["out.tif", "out.TIF", "out.tiff", "out", "out.data", "out.zip", "out.png.tif"]
)
def test_geotiff_names_and_unknown_extensions_stay_geotiff(name):
    check_output_format(name)


def test_library_refuses_before_any_work(tmp_path, make_raster):
    src = make_raster((1, 20, 20), "uint8")
    before = set(tmp_path.iterdir())
    for call in (mpraster.run, mpraster.plan_job):
        with pytest.raises(OptionError, match="named for the PNG format"):
            call(src, tmp_path / "out.png", "reverse")
        # Not even a bad kernel is looked at first: the output name is the first check.
        with pytest.raises(OptionError, match="named for the netCDF format"):
            call(src, tmp_path / "out.nc", "no-such-kernel", cog=mpraster.CogOptions())
    assert set(tmp_path.iterdir()) == before  # no output, partial, journal or lock file


@pytest.mark.parametrize("extra", [[], ["--cog", "--dry-run"]])
def test_cli_refuses_with_exit_2(tmp_path, make_raster, mpraster_cmd, cli_env, extra):
    src = make_raster((1, 20, 20), "uint8")
    out = tmp_path / "shade.png"
    proc = subprocess.run(
        [*mpraster_cmd, "run", str(src), str(out), "-k", "reverse", *extra],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"Error: output {out} is named for the PNG format, but mpraster writes GeoTIFF "
        f"(--driver GTiff or COG): write {tmp_path}/shade.tif, then convert it with "
        f"`gdal_translate -of PNG {tmp_path}/shade.tif {out}` "
        f"(or `rio convert {tmp_path}/shade.tif {out}`)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
