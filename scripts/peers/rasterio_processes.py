"""rasterio's process-pool example: ``executor.map`` over a generator of reads. ``map``
consumes the generator at once, so every window is read (and held) before the first result
is written: memory grows with the raster.

    $ python scripts/peers/rasterio_processes.py INPUT OUTPUT -j 2
"""

import concurrent.futures

import rasterio
from _common import arguments, kernel, tiled_profile


def main(infile, outfile, num_workers, cost, compress):
    compute = kernel(cost) if cost else _reverse
    with rasterio.open(infile) as src:
        with rasterio.open(outfile, "w", **tiled_profile(src, compress)) as dst:
            windows = [window for ij, window in dst.block_windows()]
            data_gen = (src.read(window=window) for window in windows)
            with concurrent.futures.ProcessPoolExecutor(max_workers=num_workers) as executor:
                for window, result in zip(windows, executor.map(compute, data_gen), strict=True):
                    dst.write(result, window=window)


def _reverse(data):  # a module-level function: lambdas do not pickle
    return data[::-1].copy()


if __name__ == "__main__":
    args = arguments("rasterio's process-pool example")
    main(args.input, args.output, args.j, args.cost, args.compress)
