# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""One window's answers to a percentile search's requests, in nogil loops.

The private half of ``mpraster.percentiles``: the values of one band (flat, contiguous) that
are valid (``valid``: uint8, 1 valid) and lie in [low, high], and among them those of one
bin, are counted into bins, bounded or gathered without a float64 copy of the window.

A value's bin is ``mpraster.percentiles.bin_index``'s formula, operation for operation:
``floor((v * 0.5 - low * 0.5) * scale)`` clipped to the bins, in float64. ``v * 0.5`` is
exact, so a fused multiply-add there rounds the same; the search relies on every pass
putting a value in the same bin.
"""

import numpy as np

from libc.math cimport floor
from libc.stdint cimport int64_t, uint8_t

from _pixel cimport pixel_t


cdef inline Py_ssize_t _bin(double v, double half_low, double scale,
                            Py_ssize_t bins) noexcept nogil:
    cdef double index = floor((v * 0.5 - half_low) * scale)
    if index < 0:
        return 0
    if index > bins - 1:
        return bins - 1
    return <Py_ssize_t>index


def count_bins(const pixel_t[::1] values, const uint8_t[::1] valid, double low, double high,
               double scale, int64_t[::1] counts):
    """Add each valid value in [low, high] to ``counts`` at its bin (one bin per count)."""
    cdef Py_ssize_t i, n = values.shape[0], bins = counts.shape[0]
    cdef double v, half_low = low * 0.5
    with nogil:
        for i in range(n):
            v = <double>values[i]
            if valid[i] and v >= low and v <= high:
                counts[_bin(v, half_low, scale, bins)] += 1


def scan_bins(const pixel_t[::1] values, const uint8_t[::1] valid, double low, double high,
              double scale, const int64_t[::1] slot_of_bin, int64_t[::1] counts,
              double[::1] least, double[::1] greatest):
    """For each slot (a bin some request asks about; ``slot_of_bin``: a slot per bin, or
    -1), how many valid values in [low, high] fall in it (added to ``counts``), and their
    least and greatest (where ``counts`` was 0 before, they are set)."""
    cdef Py_ssize_t i, k, n = values.shape[0], bins = slot_of_bin.shape[0]
    cdef double v, half_low = low * 0.5
    with nogil:
        for i in range(n):
            v = <double>values[i]
            if not (valid[i] and v >= low and v <= high):
                continue
            k = slot_of_bin[_bin(v, half_low, scale, bins)]
            if k < 0:
                continue
            if counts[k] == 0:
                least[k] = greatest[k] = v
            elif v < least[k]:
                least[k] = v
            elif v > greatest[k]:
                greatest[k] = v
            counts[k] += 1


def gather_bins(const pixel_t[::1] values, const uint8_t[::1] valid, double low, double high,
                double scale, const int64_t[::1] slot_of_bin, int64_t[::1] ends,
                double[::1] out):
    """Write each valid value in [low, high] whose bin has a slot to ``out`` as float64, in
    order, slot after slot: slot ``k``'s values go at ``ends[k]`` onwards, which moves on
    (start ``ends`` at each slot's offset; it ends at the next one's)."""
    cdef Py_ssize_t i, k, n = values.shape[0], bins = slot_of_bin.shape[0]
    cdef double v, half_low = low * 0.5
    with nogil:
        for i in range(n):
            v = <double>values[i]
            if not (valid[i] and v >= low and v <= high):
                continue
            k = slot_of_bin[_bin(v, half_low, scale, bins)]
            if k >= 0:
                out[ends[k]] = v
                ends[k] += 1


def gather_all(const pixel_t[::1] values, const uint8_t[::1] valid, double low, double high):
    """The valid values in [low, high], as float64, in order."""
    cdef Py_ssize_t i, k = 0, n = values.shape[0]
    cdef double v
    with nogil:
        for i in range(n):
            v = <double>values[i]
            if valid[i] and v >= low and v <= high:
                k += 1
    out = np.empty(k)
    cdef double[::1] o = out
    k = 0
    with nogil:
        for i in range(n):
            v = <double>values[i]
            if valid[i] and v >= low and v <= high:
                o[k] = v
                k += 1
    return out
