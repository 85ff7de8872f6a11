"""What the peer scripts share: arguments, the job's kernel and the output profile."""

import argparse

import numpy as np


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("-j", type=int, default=2)
    parser.add_argument("--cost", type=int, default=2000, choices=[0, 2000])
    parser.add_argument("--compress", default=None)
    return parser.parse_args()


def kernel(cost: int):
    """rasterio's own CPU-bound example (2000 additions per element), or a plain reversal."""
    if cost:
        from rasterio._example import compute

        return compute
    return lambda data: np.ascontiguousarray(data[::-1])


def tiled_profile(src, compress=None) -> dict:
    profile = dict(src.profile)
    profile.update(tiled=True, blockxsize=512, blockysize=512)
    if compress:
        profile["compress"] = compress
    else:
        profile.pop("compress", None)
    return profile
