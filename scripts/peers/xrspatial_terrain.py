"""xarray-spatial's slope or hillshade, the way rioxarray documents a dask workflow: open
the DEM chunked (``chunks={'band': 1, 'y': 512, 'x': 512}``: dask chunks on the file's 512 x 512 tiles) without a read
lock (a reader per thread), compute with ``xrspatial`` on dask's local threaded scheduler
with ``-j`` workers, and write with ``.rio.to_raster(lock=threading.Lock())``, tiled 512 and
compressed on ``-j`` GDAL threads (``NUM_THREADS``, as mpraster's output gets).

    $ python scripts/peers/xrspatial_terrain.py DEM OUTPUT --kernel slope -j 2 --compress DEFLATE

Hillshade gets gdaldem's sun (azimuth 315, altitude 45) instead of xarray-spatial's default
(225, 25), so that the work is the same; its formula still differs from gdaldem's (central
differences over the pixel grid, no cell size, 0..1 floats): see scripts/bench_terrain.py.
"""

import argparse
import threading

import dask
import rioxarray
import xrspatial


def main() -> None:
    parser = argparse.ArgumentParser(description="xarray-spatial + dask threads")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--kernel", choices=["slope", "hillshade"], required=True)
    parser.add_argument("-j", type=int, default=2)
    parser.add_argument("--compress", default=None)
    args = parser.parse_args()
    with dask.config.set(scheduler="threads", num_workers=args.j):
        dem = rioxarray.open_rasterio(
            args.input, chunks={"band": 1, "y": 512, "x": 512}, lock=False
        ).squeeze("band", drop=True)
        if args.kernel == "slope":
            result = xrspatial.slope(dem)
        else:
            result = xrspatial.hillshade(dem, azimuth=315, angle_altitude=45)
        # Its dask graph says float64 (map_overlap's default meta) though each block is
        # float32: written as is, the file would be float64, twice the others' bytes.
        result = result.astype("float32").rio.write_crs(dem.rio.crs)
        extra = {"compress": args.compress, "num_threads": str(args.j)} if args.compress else {}
        result.rio.to_raster(
            args.output,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            lock=threading.Lock(),
            **extra,
        )


if __name__ == "__main__":
    main()
