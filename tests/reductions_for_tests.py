"""A user reduction declared with @mpraster.reduction, importable by process workers."""

import operator

import numpy as np

import mpraster


@mpraster.reduction(start=0, merge=operator.add)
def count_positive(partial, block):
    values, valid = block.values[0], block.valid[0]
    return partial + int(((values > 0) & valid).sum())


class ValidSum(mpraster.Reduction):
    """Sum of valid values of band 1, as float64 (a class-style reduction)."""

    name = "valid-sum"

    def start(self):
        return 0.0

    def update(self, partial, block):
        return partial + float(block.values[0][0][block.valid[0][0]].sum(dtype=np.float64))

    def merge(self, first, second):
        return first + second
