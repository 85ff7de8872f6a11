"""rasterio's own "Concurrent processing" example, as users copy it: one shared reader and
one shared writer guarded by locks, a thread pool mapped over the output's block windows,
and ``rasterio._example.compute`` as the kernel (band reversal with 2000 additions per
element). With ``--compress`` the output is tiled and compressed (the I/O-bound job);
without it, it keeps the example's ``**src.profile``.

    $ python scripts/peers/rasterio_threads.py INPUT OUTPUT -j 2
"""

import concurrent.futures
import threading

import rasterio
from _common import arguments, kernel, tiled_profile


def main(infile, outfile, num_workers, compute, compress):
    with rasterio.open(infile) as src:
        profile = tiled_profile(src, compress) if compress else src.profile
        with rasterio.open(outfile, "w", **profile) as dst:
            windows = [window for ij, window in dst.block_windows()]
            read_lock = threading.Lock()
            write_lock = threading.Lock()

            def process(window):
                with read_lock:
                    src_array = src.read(window=window)
                result = compute(src_array)
                with write_lock:
                    dst.write(result, window=window)

            with concurrent.futures.ThreadPoolExecutor(max_workers=num_workers) as executor:
                executor.map(process, windows)


if __name__ == "__main__":
    args = arguments("rasterio's thread-pool example")
    main(args.input, args.output, args.j, kernel(args.cost), args.compress)
