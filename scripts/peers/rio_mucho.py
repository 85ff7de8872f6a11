"""rio-mucho, as its README shows: a function over (data, window, ij, global_args) run by
``RioMucho`` in a multiprocessing pool, over the output's block windows.

    $ python scripts/peers/riomucho.py INPUT OUTPUT -j 2
"""

import numpy as np
import rasterio
import riomucho
from _common import arguments, tiled_profile
from rasterio.windows import Window


def run_function(data, window, ij, g_args):
    data = data[0]
    if g_args["cost"]:
        from rasterio._example import compute

        return compute(np.ascontiguousarray(data))
    return data[::-1]


if __name__ == "__main__":
    args = arguments("rio-mucho")
    with rasterio.open(args.input) as src:
        profile = tiled_profile(src, args.compress)
        # The output's 512 x 512 tiles, as (window, ij) pairs.
        windows = [
            (Window(col, row, min(512, src.width - col), min(512, src.height - row)), (i, j))
            for i, row in enumerate(range(0, src.height, 512))
            for j, col in enumerate(range(0, src.width, 512))
        ]
    with riomucho.RioMucho(
        [args.input],
        args.output,
        run_function,
        windows=windows,
        global_args={"cost": args.cost},
        options=profile,
    ) as rm:
        rm.run(args.j)
