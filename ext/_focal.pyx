# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Nodata-aware focal (moving-window) statistics, in nogil loops.

The private half of the ``focal-*`` kernels in ``mpraster.builtin_kernels``: the wrapper
checks shapes and sizes; these loops never see a bad shape. Input is a window grown by
``size // 2`` on every side; output is the window itself.
"""

from _pixel cimport missing, pixel_t


def focal_mean(const pixel_t[:, :, ::1] src, double[:, :, ::1] dst, double[:, ::1] rowsum,
               double[:, ::1] rowcount, Py_ssize_t size, bint has_nodata, double nodata,
               double fill):
    """dst = mean of the valid pixels in each size x size neighbourhood; ``fill`` where
    the centre is missing or no neighbour is valid.

    Separable: each row's sums over ``size`` columns first (``rowsum``, ``rowcount``:
    scratch of the input's rows by the output's columns), then ``size`` of those summed
    down the column, each in order, so the result does not depend on the window.
    """
    cdef Py_ssize_t bands = dst.shape[0], rows = dst.shape[1], cols = dst.shape[2]
    cdef Py_ssize_t in_rows = src.shape[1]
    cdef Py_ssize_t b, i, j, d, half = size // 2
    cdef double value, total, count
    with nogil:
        for b in range(bands):
            for i in range(in_rows):
                for j in range(cols):
                    total = 0.0
                    count = 0.0
                    for d in range(size):
                        value = <double>src[b, i, j + d]
                        if not missing(value, has_nodata, nodata):
                            total = total + value
                            count = count + 1.0
                    rowsum[i, j] = total
                    rowcount[i, j] = count
            for i in range(rows):
                for j in range(cols):
                    if missing(<double>src[b, i + half, j + half], has_nodata, nodata):
                        dst[b, i, j] = fill
                        continue
                    total = 0.0
                    count = 0.0
                    for d in range(size):
                        total = total + rowsum[i + d, j]
                        count = count + rowcount[i + d, j]
                    dst[b, i, j] = total / count if count > 0.0 else fill


def focal_extreme(const pixel_t[:, :, ::1] src, pixel_t[:, :, ::1] dst, pixel_t[:, ::1] rowbest,
                  unsigned char[:, ::1] rowfound, Py_ssize_t size, bint has_nodata,
                  double nodata, pixel_t fill, bint maximum):
    """dst = max (or min) of the valid pixels in each size x size neighbourhood; ``fill``
    where the centre is missing. Separable, like `focal_mean` (max and min are exact in
    any order); compares in the pixel type, so 64-bit integers stay exact."""
    cdef Py_ssize_t bands = dst.shape[0], rows = dst.shape[1], cols = dst.shape[2]
    cdef Py_ssize_t in_rows = src.shape[1]
    cdef Py_ssize_t b, i, j, d, half = size // 2
    cdef pixel_t value, best
    cdef bint found
    with nogil:
        for b in range(bands):
            for i in range(in_rows):
                for j in range(cols):
                    found = False
                    best = fill
                    for d in range(size):
                        value = src[b, i, j + d]
                        if missing(<double>value, has_nodata, nodata):
                            continue
                        if not found or (value > best if maximum else value < best):
                            best = value
                            found = True
                    rowbest[i, j] = best
                    rowfound[i, j] = found
            for i in range(rows):
                for j in range(cols):
                    if missing(<double>src[b, i + half, j + half], has_nodata, nodata):
                        dst[b, i, j] = fill
                        continue
                    found = False
                    best = fill
                    for d in range(size):
                        if not rowfound[i + d, j]:
                            continue
                        value = rowbest[i + d, j]
                        if not found or (value > best if maximum else value < best):
                            best = value
                            found = True
                    dst[b, i, j] = best
