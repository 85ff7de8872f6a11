# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Band reversal with a tunable amount of busy work per element, in a nogil loop.

The private half of ``mpraster.builtin_kernels.reverse``: the wrapper checks shapes and
allocates the output; this loop never sees a bad shape.
"""

from libc.string cimport memcpy

from _pixel cimport pixel_t


def reverse_bands(const pixel_t[:, :, ::1] src, pixel_t[:, :, ::1] dst, Py_ssize_t cost):
    """Write ``src`` with its bands in reverse order into ``dst``, spending ``cost`` float
    additions per element.

    The additions form one dependent chain per element, as in rasterio's
    ``_example.compute``, but they run on a separate accumulator so the pixels are copied
    exactly (no float round trip). The accumulator is returned so that the compiler cannot
    drop the work, and summing it in order keeps the loop scalar, like rasterio's.
    """
    cdef Py_ssize_t bands = src.shape[0]
    cdef Py_ssize_t rows = src.shape[1]
    cdef Py_ssize_t cols = src.shape[2]
    cdef Py_ssize_t b, i, j, k
    cdef double work
    cdef double sink = 0.0
    if cost == 0:
        # No busy work: a band is one contiguous block, copied whole.
        with nogil:
            for b in range(bands):
                if rows and cols:
                    memcpy(&dst[bands - 1 - b, 0, 0], &src[b, 0, 0], rows * cols * sizeof(pixel_t))
        return sink
    with nogil:
        for b in range(bands):
            for i in range(rows):
                for j in range(cols):
                    work = <double>j
                    # Unrolled by hand (the trip count is only known at run time); the
                    # additions stay one dependent chain, as in rasterio's example.
                    for k in range(cost // 4):
                        work = work + 1.0
                        work = work + 1.0
                        work = work + 1.0
                        work = work + 1.0
                    for k in range(cost % 4):
                        work = work + 1.0
                    sink = sink + work
                    dst[bands - 1 - b, i, j] = src[b, i, j]
    return sink
