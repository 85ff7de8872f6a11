# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""One window's figures of a band in nogil loops: validity, count, min, max, sum, the sum
of squared deviations from the window's mean (m2), and counts of each value.

The private half of ``mpraster.summary`` and ``mpraster.block_reader``: their wrappers hand
over one band flat and contiguous, and its validity as uint8 (1 valid, 0 not).

Integer loops are branch-free, so that the compiler vectorises them: an invalid pixel is
masked to 0 for the sums and to the type's extremes for min and max. Integers of 16 bits
or fewer sum their squares exactly (in chunks small enough for 32-bit counters), which
gives m2 exactly; wider types and floats take a second pass over the window, around its
mean, as NumPy's ``var`` does. Float sums use four accumulators (a fixed order: the same
bits every run) to keep the adds from waiting on each other.
"""

from libc.math cimport INFINITY, isnan
from libc.string cimport memset
from libc.stdint cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)

from _pixel cimport pixel_t

# The pixel types of every loop here (``_pixel.pxd``'s ``pixel_t``), by NumPy's names.
PIXEL_TYPES = frozenset(
    ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
     "float64")
)


def compiled(dtype):
    """Whether the loops here take arrays of ``dtype`` (native byte order only)."""
    return dtype.isnative and dtype.name in PIXEL_TYPES


# Integers whose squares are summed exactly in one pass.
ctypedef fused small_t:
    int8_t
    uint8_t
    int16_t
    uint16_t

# The other pixel types: m2 in a second pass.
ctypedef fused wide_t:
    int32_t
    uint32_t
    int64_t
    uint64_t
    float
    double

# Pixels per chunk of the small-integer loop: its count, and its sum of 8-bit squares,
# fit 32-bit counters (65536 * 255**2 < 2**32), which vectorise better than 64-bit ones.
cdef enum:
    CHUNK = 65536
    # Values per chunk of a float sum: four lanes of 128, as NumPy's pairwise sum blocks.
    CHUNK_FLOAT = 512


cdef inline void _small_limits(small_t* low, small_t* high) noexcept nogil:
    if small_t is int8_t:
        low[0], high[0] = -128, 127
    elif small_t is uint8_t:
        low[0], high[0] = 0, 255
    elif small_t is int16_t:
        low[0], high[0] = -32768, 32767
    else:
        low[0], high[0] = 0, 65535


cdef inline void _wide_limits(wide_t* low, wide_t* high) noexcept nogil:
    if wide_t is int32_t:
        low[0], high[0] = -2147483648, 2147483647
    elif wide_t is uint32_t:
        low[0], high[0] = 0, 4294967295
    elif wide_t is int64_t:
        low[0], high[0] = -9223372036854775807 - 1, 9223372036854775807
    elif wide_t is uint64_t:
        low[0], high[0] = 0, 18446744073709551615ULL
    else:
        low[0], high[0] = -INFINITY, INFINITY


def mark_invalid(const pixel_t[::1] values, uint8_t[::1] valid, bint has_nodata,
                 double nodata):
    """Set ``valid`` to 0 where ``values`` is NaN or equals ``nodata``.

    Compared as NumPy compares an array of ``values``' type with a Python float: float32
    values with ``nodata`` cast to float32, 64-bit integers as float64, and narrower
    integers only with a ``nodata`` they can hold.
    """
    cdef Py_ssize_t i, n = values.shape[0]
    cdef const pixel_t* x = &values[0] if n else NULL
    cdef uint8_t* ok = &valid[0] if n else NULL
    cdef pixel_t nd
    cdef double low, high
    if pixel_t is float or pixel_t is double:
        has_nodata = has_nodata and not isnan(nodata)
        nd = <pixel_t>nodata if has_nodata else 0
        with nogil:
            if has_nodata:
                for i in range(n):
                    ok[i] = ok[i] & (x[i] == x[i]) & (x[i] != nd)
            else:
                for i in range(n):
                    ok[i] = ok[i] & (x[i] == x[i])
    elif pixel_t is int64_t or pixel_t is uint64_t:
        if has_nodata:
            with nogil:
                for i in range(n):
                    ok[i] = ok[i] & (<double>x[i] != nodata)
    else:
        if pixel_t is int8_t:
            low, high = -128, 127
        elif pixel_t is uint8_t:
            low, high = 0, 255
        elif pixel_t is int16_t:
            low, high = -32768, 32767
        elif pixel_t is uint16_t:
            low, high = 0, 65535
        elif pixel_t is int32_t:
            low, high = -2147483648, 2147483647
        else:
            low, high = 0, 4294967295
        # A nodata value the type cannot hold equals no pixel.
        if has_nodata and low <= nodata <= high and nodata == <double><int64_t>nodata:
            nd = <pixel_t>nodata
            with nogil:
                for i in range(n):
                    ok[i] = ok[i] & (x[i] != nd)


cdef void _small_chunk(const small_t* x, const uint8_t* ok, Py_ssize_t n, int64_t* count,
                       int64_t* total, uint64_t* squares, small_t* least,
                       small_t* greatest) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t c = 0
    cdef int64_t s = 0
    cdef uint32_t q8 = 0
    cdef uint64_t q16 = 0
    cdef small_t top, bottom, keep, w, lo, hi
    cdef small_t a = least[0], b = greatest[0]
    _small_limits(&bottom, &top)
    for i in range(n):
        keep = <small_t>(-ok[i])  # all ones where valid, 0 where not
        w = x[i] & keep
        c += ok[i]
        s += w
        if small_t is int8_t or small_t is uint8_t:
            q8 += <uint32_t>(<int32_t>w * w)
        elif small_t is int16_t:
            q16 += <uint32_t>(<int32_t>w * w)
        else:
            q16 += <uint32_t>w * <uint32_t>w
        lo = w | (top & ~keep)
        hi = w | (bottom & ~keep)
        a = lo if lo < a else a
        b = hi if hi > b else b
    count[0] += c
    total[0] += s
    squares[0] += q8 + q16
    least[0] = a
    greatest[0] = b


def small_moments(const small_t[::1] values, const uint8_t[::1] valid):
    """(count, min, max, sum, m2) of the valid values of an integer band of 16 bits or
    fewer; the sum is exact, and so is m2 (rounded once, to float)."""
    cdef Py_ssize_t start = 0, n = values.shape[0]
    cdef int64_t count = 0, total = 0
    cdef uint64_t squares = 0
    cdef small_t least, greatest
    _small_limits(&greatest, &least)  # each starts at the other end
    with nogil:
        while start < n:
            _small_chunk(&values[start], &valid[start], min(n - start, <Py_ssize_t>CHUNK),
                         &count, &total, &squares, &least, &greatest)
            start += CHUNK
    if count == 0:
        return 0, None, None, 0, 0.0
    # m2 = sum (x - mean)^2 = (n * sum x^2 - (sum x)^2) / n: exact in Python's integers.
    m2 = (count * <object>squares - <object>total * total) / count
    return count, least, greatest, total, m2


cdef struct Pairwise:
    # Pairwise summation of chunk sums: ``sums`` is a stack of partial sums of 1, 2, 4 ...
    # chunks (a binary counter), so a sum of n chunks errs by O(log n), not O(n).
    double sums[64]
    int depth
    int64_t chunks


cdef inline void _push(Pairwise* p, double value) noexcept nogil:
    cdef int64_t carry = p.chunks
    while carry & 1:
        p.depth -= 1
        value = p.sums[p.depth] + value
        carry >>= 1
    p.sums[p.depth] = value
    p.depth += 1
    p.chunks += 1


cdef inline double _pairwise_total(Pairwise* p) noexcept nogil:
    cdef double value = 0
    cdef int k
    for k in range(p.depth - 1, -1, -1):
        value = p.sums[k] + value
    return value


cdef inline void _lane(wide_t v, uint8_t ok, double* total, wide_t* least, wide_t* greatest,
                       wide_t top, wide_t bottom) noexcept nogil:
    cdef wide_t lo = v if ok else top
    cdef wide_t hi = v if ok else bottom
    total[0] += v if ok else 0.0
    least[0] = lo if lo < least[0] else least[0]
    greatest[0] = hi if hi > greatest[0] else greatest[0]


cdef double _float_chunk(const wide_t* x, const uint8_t* ok, Py_ssize_t n, int64_t* count,
                         wide_t* least, wide_t* greatest) noexcept nogil:
    """The sum of a chunk's valid values; its count, min and max folded into the others'.

    No masking trick here (an invalid float may be NaN): min, max and the sum are kept per
    lane of four, so that no add waits on the one before.
    """
    cdef Py_ssize_t i = 0
    cdef int64_t c = 0
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef wide_t top, bottom, a0, a1, a2, a3, b0, b1, b2, b3
    _wide_limits(&bottom, &top)
    a0 = a1 = a2 = a3 = least[0]
    b0 = b1 = b2 = b3 = greatest[0]
    while i + 4 <= n:
        c += ok[i] + ok[i + 1] + ok[i + 2] + ok[i + 3]
        _lane(x[i], ok[i], &s0, &a0, &b0, top, bottom)
        _lane(x[i + 1], ok[i + 1], &s1, &a1, &b1, top, bottom)
        _lane(x[i + 2], ok[i + 2], &s2, &a2, &b2, top, bottom)
        _lane(x[i + 3], ok[i + 3], &s3, &a3, &b3, top, bottom)
        i += 4
    while i < n:
        c += ok[i]
        _lane(x[i], ok[i], &s0, &a0, &b0, top, bottom)
        i += 1
    count[0] += c
    least[0] = min(min(a0, a1), min(a2, a3))
    greatest[0] = max(max(b0, b1), max(b2, b3))
    return (s0 + s1) + (s2 + s3)


cdef double _m2_chunk(const wide_t* x, const uint8_t* ok, Py_ssize_t n,
                      double mean) noexcept nogil:
    """The sum of squared deviations from ``mean`` of a chunk's valid values."""
    cdef Py_ssize_t i = 0
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, d0, d1, d2, d3
    while i + 4 <= n:
        d0 = <double>x[i] - mean
        d1 = <double>x[i + 1] - mean
        d2 = <double>x[i + 2] - mean
        d3 = <double>x[i + 3] - mean
        s0 += d0 * d0 if ok[i] else 0.0
        s1 += d1 * d1 if ok[i + 1] else 0.0
        s2 += d2 * d2 if ok[i + 2] else 0.0
        s3 += d3 * d3 if ok[i + 3] else 0.0
        i += 4
    while i < n:
        d0 = <double>x[i] - mean
        s0 += d0 * d0 if ok[i] else 0.0
        i += 1
    return (s0 + s1) + (s2 + s3)


def moments(const wide_t[::1] values, const uint8_t[::1] valid):
    """(count, min, max, sum, m2) of the valid values of any other band: the sum exact
    (an int) for 32-bit integers, float64 otherwise (summed pairwise over chunks, as
    NumPy sums); m2 in a second pass, around the float64 mean."""
    cdef Py_ssize_t i, start, n = values.shape[0]
    cdef const wide_t* x = &values[0] if n else NULL
    cdef const uint8_t* ok = &valid[0] if n else NULL
    cdef int64_t count = 0, exact = 0
    cdef double mean
    cdef Pairwise sums
    cdef wide_t top, bottom, a, b, lo, hi, keep, w
    _wide_limits(&bottom, &top)
    a, b = top, bottom
    sums.depth = sums.chunks = 0
    with nogil:
        if wide_t is int32_t or wide_t is uint32_t:
            # Branch-free, as the small integers: an exact sum in 64 bits (n < 2**31).
            for i in range(n):
                keep = <wide_t>(-(<wide_t>ok[i]))
                w = x[i] & keep
                count += ok[i]
                exact += w
                lo = w | (top & ~keep)
                hi = w | (bottom & ~keep)
                a = lo if lo < a else a
                b = hi if hi > b else b
        else:
            start = 0
            while start < n:
                _push(&sums, _float_chunk(x + start, ok + start, min(n - start, CHUNK_FLOAT),
                                          &count, &a, &b))
                start += CHUNK_FLOAT
    if count == 0:
        return 0, None, None, 0, 0.0
    if wide_t is int32_t or wide_t is uint32_t:
        total = exact
        mean = <object>exact / count  # Python's int division: correctly rounded
    else:
        total = _pairwise_total(&sums)
        mean = total / count
    sums.depth = sums.chunks = 0
    with nogil:
        start = 0
        while start < n:
            _push(&sums, _m2_chunk(x + start, ok + start, min(n - start, CHUNK_FLOAT), mean))
            start += CHUNK_FLOAT
    return count, a, b, total, _pairwise_total(&sums)


def count_values(const small_t[::1] values, const uint8_t[::1] valid, int64_t[::1] counts):
    """Add 1 to ``counts[v - the type's minimum]`` for every valid value ``v`` (fewer than
    2**31 values)."""
    cdef Py_ssize_t i, k, n = values.shape[0]
    cdef small_t low, high
    # 8-bit values count into four tables in turn: in a run of equal values, every
    # increment of one counter would otherwise wait for the one before.
    cdef uint32_t tables[4][256]
    _small_limits(&low, &high)
    cdef Py_ssize_t offset = -<Py_ssize_t>low
    with nogil:
        if small_t is int8_t or small_t is uint8_t:
            memset(&tables[0][0], 0, sizeof(tables))
            i = 0
            while i + 4 <= n:
                tables[0][<Py_ssize_t>values[i] + offset] += valid[i]
                tables[1][<Py_ssize_t>values[i + 1] + offset] += valid[i + 1]
                tables[2][<Py_ssize_t>values[i + 2] + offset] += valid[i + 2]
                tables[3][<Py_ssize_t>values[i + 3] + offset] += valid[i + 3]
                i += 4
            while i < n:
                tables[0][<Py_ssize_t>values[i] + offset] += valid[i]
                i += 1
            for k in range(256):
                counts[k] += (<int64_t>tables[0][k] + tables[1][k]) + (
                    <int64_t>tables[2][k] + tables[3][k])
        else:
            for i in range(n):
                counts[<Py_ssize_t>values[i] + offset] += valid[i]
