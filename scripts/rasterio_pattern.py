"""rasterio's own "Concurrent processing" example, as users copy it: one shared reader and
one shared writer guarded by locks, a thread pool mapped over the output's block windows,
and ``rasterio._example.compute`` as the kernel (band reversal with 2000 additions per
element). Kept as the baseline our benchmarks compare against.

    $ python scripts/rasterio_pattern.py INPUT OUTPUT -j 2
"""

import argparse
import concurrent.futures
import threading

import rasterio
from rasterio._example import compute


def main(infile, outfile, num_workers=4):
    with rasterio.open(infile) as src:
        # As in the example: the profile update is made but src.profile is what is used.
        profile = src.profile
        profile.update(blockxsize=128, blockysize=128, tiled=True)
        with rasterio.open(outfile, "w", **src.profile) as dst:
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
    parser = argparse.ArgumentParser(description="rasterio's concurrent processing example")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("-j", type=int, default=4)
    args = parser.parse_args()
    main(args.input, args.output, args.j)
