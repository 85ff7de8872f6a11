"""rioxarray + dask on a distributed LocalCluster: open chunked, map the kernel over
blocks, write with ``.rio.to_raster`` under a distributed lock.

    $ python scripts/peers/dask_rioxarray.py INPUT OUTPUT -j 2
"""

import numpy as np
import rioxarray
from _common import arguments


def reverse_block(block, cost):
    if cost:
        from rasterio._example import compute

        return compute(np.ascontiguousarray(block))
    return block[::-1]


if __name__ == "__main__":
    from dask.distributed import Client, LocalCluster, Lock

    args = arguments("dask + rioxarray")
    with (
        LocalCluster(n_workers=args.j, threads_per_worker=1, processes=True) as cluster,
        Client(cluster),
    ):
        da = rioxarray.open_rasterio(
            args.input, chunks={"band": -1, "y": 512, "x": 512}, lock=False
        )
        out = da.copy(data=da.data.map_blocks(reverse_block, args.cost, dtype=da.dtype))
        extra = {"compress": args.compress} if args.compress else {}
        out.rio.to_raster(
            args.output, tiled=True, blockxsize=512, blockysize=512, lock=Lock("rio"), **extra
        )
