# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Per-pixel kernels in nogil loops: normalized difference and linear rescaling."""

from libc.math cimport NAN, nearbyint
from _pixel cimport missing, pixel_t


def normalized_difference(const pixel_t[:, ::1] a, const pixel_t[:, ::1] b, float[:, ::1] dst,
                          bint a_has_nodata, double a_nodata, bint b_has_nodata,
                          double b_nodata):
    """dst = (a - b) / (a + b); NaN where either is missing or a + b == 0."""
    cdef Py_ssize_t rows = dst.shape[0], cols = dst.shape[1], i, j
    cdef double x, y
    with nogil:
        for i in range(rows):
            for j in range(cols):
                x = <double>a[i, j]
                y = <double>b[i, j]
                if missing(x, a_has_nodata, a_nodata) or missing(y, b_has_nodata, b_nodata) \
                        or x + y == 0.0:
                    dst[i, j] = NAN
                else:
                    dst[i, j] = <float>((x - y) / (x + y))


def rescale_to_double(const pixel_t[:, :, ::1] src, double[:, :, ::1] dst, double scale,
                      double offset, double low, double high, bint round_to_int,
                      bint has_nodata, double nodata, double fill):
    """dst = clip(src * scale + offset, low, high), rounded half to even for integer
    targets; ``fill`` where src is missing."""
    cdef Py_ssize_t bands = dst.shape[0], rows = dst.shape[1], cols = dst.shape[2]
    cdef Py_ssize_t k, i, j
    cdef double value
    with nogil:
        for k in range(bands):
            for i in range(rows):
                for j in range(cols):
                    value = <double>src[k, i, j]
                    if missing(value, has_nodata, nodata):
                        dst[k, i, j] = fill
                        continue
                    value = value * scale + offset
                    if round_to_int:
                        value = nearbyint(value)
                    if value < low:
                        value = low
                    elif value > high:
                        value = high
                    dst[k, i, j] = value
