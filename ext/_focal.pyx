# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Nodata-aware focal (moving-window) statistics, in nogil loops.

The private half of the ``focal-*`` kernels in ``mpraster.builtin_kernels``: the wrapper
checks shapes and sizes; these loops never see a bad shape. Input is a window grown by
``size // 2`` on every side; output is the window itself.
"""

from _pixel cimport missing, pixel_t


def focal_mean(const pixel_t[:, :, ::1] src, double[:, :, ::1] dst, double[:, ::1] rowsum,
               double[:, ::1] rowcount, Py_ssize_t size, bint has_nodata, double nodata,
               double fill, const unsigned char[:, ::1] mask, bint has_mask):
    """dst = mean of the valid pixels in each size x size neighbourhood; ``fill`` where
    the centre is missing or no neighbour is valid. With ``has_mask``, a pixel where
    ``mask`` (the input's rows and cols) is 0 is missing too.

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
                        if has_mask and mask[i, j + d] == 0:
                            continue
                        if not missing(value, has_nodata, nodata):
                            total = total + value
                            count = count + 1.0
                    rowsum[i, j] = total
                    rowcount[i, j] = count
            for i in range(rows):
                for j in range(cols):
                    if missing(<double>src[b, i + half, j + half], has_nodata, nodata) or (
                            has_mask and mask[i + half, j + half] == 0):
                        dst[b, i, j] = fill
                        continue
                    total = 0.0
                    count = 0.0
                    for d in range(size):
                        total = total + rowsum[i + d, j]
                        count = count + rowcount[i + d, j]
                    dst[b, i, j] = total / count if count > 0.0 else fill


cdef inline pixel_t _better(pixel_t a, pixel_t b, bint maximum) noexcept nogil:
    # Branch-free in the loops below: ``maximum`` does not change inside them, so the
    # compiler hoists the test out and vectorises each loop as a plain max or min.
    if maximum:
        return a if a > b else b
    return a if a < b else b


def focal_extreme(const pixel_t[:, :, ::1] src, pixel_t[:, :, ::1] dst, pixel_t[:, ::1] valid,
                  pixel_t[:, ::1] rowbest, Py_ssize_t size, bint has_nodata, double nodata,
                  pixel_t fill, pixel_t identity, bint maximum,
                  const unsigned char[:, ::1] mask, bint has_mask):
    """dst = max (or min) of the valid pixels in each size x size neighbourhood; ``fill``
    where the centre is missing. With ``has_mask``, a pixel where ``mask`` (the input's
    rows and cols) is 0 is missing too.

    Missing pixels are first replaced by ``identity`` (the type's lowest value for max,
    its highest for min; infinities for floats) in ``valid``, so they never win; a centre
    that is not missing is in its own neighbourhood, so every result comes from a valid
    pixel. Then separable, like `focal_mean`: the best of ``size`` columns along each row
    (``rowbest``: the input's rows by the output's columns), then of ``size`` of those down
    the column. Compares in the pixel type, so 64-bit integers stay exact.
    """
    cdef Py_ssize_t bands = dst.shape[0], rows = dst.shape[1], cols = dst.shape[2]
    cdef Py_ssize_t in_rows = src.shape[1], in_cols = src.shape[2]
    cdef Py_ssize_t b, i, j, d, half = size // 2
    with nogil:
        for b in range(bands):
            for i in range(in_rows):
                for j in range(in_cols):
                    if missing(<double>src[b, i, j], has_nodata, nodata) or (
                            has_mask and mask[i, j] == 0):
                        valid[i, j] = identity
                    else:
                        valid[i, j] = src[b, i, j]
                for j in range(cols):
                    rowbest[i, j] = valid[i, j]
                for d in range(1, size):
                    for j in range(cols):
                        rowbest[i, j] = _better(rowbest[i, j], valid[i, j + d], maximum)
            for i in range(rows):
                for j in range(cols):
                    dst[b, i, j] = rowbest[i, j]
                for d in range(1, size):
                    for j in range(cols):
                        dst[b, i, j] = _better(dst[b, i, j], rowbest[i + d, j], maximum)
                for j in range(cols):
                    if missing(<double>src[b, i + half, j + half], has_nodata, nodata) or (
                            has_mask and mask[i + half, j + half] == 0):
                        dst[b, i, j] = fill
