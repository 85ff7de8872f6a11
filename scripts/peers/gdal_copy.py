"""GDAL's own copy of the raster (no kernel): the floor for the I/O-bound job.

$ python scripts/peers/gdal_copy.py INPUT OUTPUT -j 2   # -j becomes NUM_THREADS
"""

from _common import arguments
from rasterio.shutil import copy

if __name__ == "__main__":
    args = arguments("GDAL copy")
    options = {"tiled": True, "blockxsize": 512, "blockysize": 512, "num_threads": str(args.j)}
    if args.compress:
        options["compress"] = args.compress
    copy(args.input, args.output, driver="GTiff", **options)
