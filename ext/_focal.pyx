# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Nodata-aware focal (moving-window) statistics in nogil loops, at a cost per pixel that
does not grow with the neighbourhood's size.

The private half of the ``focal-*`` kernels in ``mpraster.builtin_kernels``: the wrapper
checks shapes and sizes; these loops never see a bad shape. Input is a window grown by
``size // 2`` on every side; output is the window itself.

Van Herk / Gil-Werman, for sums as for extremes, down the columns first, then along each
row of the column results. Each line is cut into blocks of ``size`` pixels aligned to the
raster's own coordinates (``row0``, ``col0``: where the input's first pixel lies in the
raster, negative past its top or left edge). Within a block, prefixes are accumulated in
order from its start and suffixes from its end. A neighbourhood of ``size`` pixels that
starts at a block start is that block's whole prefix; any other spans the end of one
block and the start of the next: suffix + prefix, one operation. Every result is then
one fixed sequence of operations on the pixels of its own neighbourhood, set by raster
coordinates alone, so it is the same bits whatever window computes it. (Running sums
would carry the rounding of wherever a window starts, and an infinity would poison every
later neighbourhood.) Sums are accumulated in float64; counts are exact.
"""

from libc.math cimport NAN
from libc.string cimport memcpy

from _pixel cimport pixel_t

ctypedef fused out_t:
    float
    double

# Added in place of a missing pixel: -0.0 + x is x for every x, -0.0 included (0.0 is not).
cdef double NEG_ZERO = -0.0


cdef inline Py_ssize_t _first_start(Py_ssize_t origin, Py_ssize_t size) noexcept nogil:
    """The index of the first block start in a line whose first pixel lies at raster
    coordinate ``origin``: the first index whose coordinate is a multiple of ``size``."""
    cdef Py_ssize_t rest = origin % size
    if rest < 0:
        rest = rest + size
    return (size - rest) % size


cdef inline Py_ssize_t _slot(Py_ssize_t index, Py_ssize_t first, Py_ssize_t size) noexcept nogil:
    """Where line element ``index`` (0 or more) lies in its block: 0 at a block start."""
    return (index - first + size) % size


cdef bint _any_missing(const pixel_t* src, Py_ssize_t n, double nodata,
                       const unsigned char* mask, bint has_mask) noexcept nogil:
    """Whether any of ``n`` pixels is missing. Tested in chunks so that each chunk's test
    vectorises; windows with no missing pixel skip the counting (same result).

    Here and below ``nodata`` is NaN when there is none: x == NaN is never true, and the
    tests stay free of branches, which lets the compiler vectorise them."""
    cdef Py_ssize_t start, stop, c
    cdef int found = 0
    cdef double x
    if has_mask:
        for c in range(n):
            if mask[c] == 0:
                return True
    if nodata != nodata and pixel_t is not float and pixel_t is not double:
        return False
    for start in range(0, n, 4096):
        stop = start + 4096 if start + 4096 < n else n
        for c in range(start, stop):
            x = <double>src[c]
            found = found | (x != x) | (x == nodata)
        if found:
            return True
    return False


# ---------------------------------------------------------------- sums (focal-mean)


cdef inline void _accumulate(double* acc, const double* value, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(n):
        acc[c] = acc[c] + value[c]


cdef inline void _add(double* dst, const double* a, const double* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(n):
        dst[c] = a[c] + b[c]


cdef void _load_sums(const pixel_t* src, const unsigned char* mask, Py_ssize_t n,
                     double nodata, bint counting, double* value,
                     double* count) noexcept nogil:
    """One input row as float64 (``NEG_ZERO`` where missing) and, when ``counting``, its
    counts (1 valid, 0 missing); ``mask`` is the row's mask or NULL."""
    cdef Py_ssize_t c
    cdef double x
    cdef bint bad
    if not counting:
        for c in range(n):
            value[c] = <double>src[c]
    elif mask != NULL:
        for c in range(n):
            x = <double>src[c]
            bad = (x != x) | (x == nodata) | (mask[c] == 0)
            value[c] = NEG_ZERO if bad else x
            count[c] = 0.0 if bad else 1.0
    else:
        for c in range(n):
            x = <double>src[c]
            bad = (x != x) | (x == nodata)
            value[c] = NEG_ZERO if bad else x
            count[c] = 0.0 if bad else 1.0


cdef void _line_sums(const double* line, const double* line_count, Py_ssize_t n_in,
                     Py_ssize_t n_out, Py_ssize_t size, Py_ssize_t first, bint counting,
                     double* prefix, double* suffix, double* total, double* count) noexcept nogil:
    """total[j] = the sum of line[j : j + size] for j < n_out, in blocks from ``first``;
    when ``counting``, count[j] likewise from line_count (each pair of chains side by side,
    which keeps the processor busy while one waits on its last addition). ``prefix`` and
    ``suffix``: scratch of 2 * n_in."""
    cdef Py_ssize_t start, stop, c
    cdef double acc, acc_count
    cdef double* prefix_count = prefix + n_in
    cdef double* suffix_count = suffix + n_in
    start = first
    while start < n_in:
        stop = start + size if start + size < n_in else n_in
        acc = line[start]
        prefix[start] = acc
        if counting:
            acc_count = line_count[start]
            prefix_count[start] = acc_count
            for c in range(start + 1, stop):
                acc = acc + line[c]
                prefix[c] = acc
                acc_count = acc_count + line_count[c]
                prefix_count[c] = acc_count
        else:
            for c in range(start + 1, stop):
                acc = acc + line[c]
                prefix[c] = acc
        start = start + size
    # Suffixes of every block holding a neighbourhood's first pixel; each ends in the line.
    start = first - size if first > 0 else first
    while start < n_out:
        c = start + size - 1
        stop = start if start > 0 else 0
        acc = line[c]
        suffix[c] = acc
        if counting:
            acc_count = line_count[c]
            suffix_count[c] = acc_count
            while c > stop:
                c = c - 1
                acc = line[c] + acc
                suffix[c] = acc
                acc_count = line_count[c] + acc_count
                suffix_count[c] = acc_count
        else:
            while c > stop:
                c = c - 1
                acc = line[c] + acc
                suffix[c] = acc
        start = start + size
    _add(total, suffix, prefix + size - 1, n_out)
    if counting:
        _add(count, suffix_count, prefix_count + size - 1, n_out)
    c = first
    while c < n_out:
        total[c] = prefix[c + size - 1]
        if counting:
            count[c] = prefix_count[c + size - 1]
        c = c + size


cdef void _mean_band(const pixel_t* src, const unsigned char* mask, out_t* dst,
                     Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t size, Py_ssize_t first_row,
                     Py_ssize_t first_col, double nodata, out_t fill,
                     double* sums, double* counts, double* lines) noexcept nogil:
    cdef Py_ssize_t half = size // 2, in_rows = rows + size - 1, in_cols = cols + size - 1
    cdef Py_ssize_t i, j, slot, top_slot
    cdef bint counting = _any_missing(src, in_rows * in_cols, nodata, mask, mask != NULL)
    cdef double area = <double>(size * size)
    cdef double x
    cdef bint bad
    cdef out_t* out
    cdef const pixel_t* centre
    cdef const unsigned char* centre_mask
    # Scratch lines: the columns' running prefixes (sums, counts), the columns' totals for
    # one output row, _line_sums' prefixes and suffixes (two lines each), its totals.
    cdef double* prefix_sum = lines
    cdef double* prefix_count = lines + in_cols
    cdef double* column_sum = lines + 2 * in_cols
    cdef double* column_count = lines + 3 * in_cols
    cdef double* row_prefix = lines + 4 * in_cols
    cdef double* row_suffix = lines + 6 * in_cols
    cdef double* total = lines + 8 * in_cols
    cdef double* count = lines + 9 * in_cols
    cdef double* top_sum
    cdef double* top_count
    cdef double* line_sum
    cdef double* line_count = column_count

    # ``sums`` and ``counts`` hold ``size`` input rows, row i in slot _slot(i): first loaded
    # values, turned into suffixes once their block is whole. Row o + size - 1 is loaded
    # into the slot of row o - 1, whose suffix was last needed for output row o - 1.
    for i in range(size - 1):
        slot = _slot(i, first_row, size)
        _load_sums(src + i * in_cols, mask + i * in_cols if mask != NULL else NULL, in_cols,
                   nodata, counting, sums + slot * in_cols,
                   counts + slot * in_cols)
        if i == first_row:
            memcpy(prefix_sum, sums + slot * in_cols, in_cols * sizeof(double))
            if counting:
                memcpy(prefix_count, counts + slot * in_cols, in_cols * sizeof(double))
        elif i > first_row:
            _accumulate(prefix_sum, sums + slot * in_cols, in_cols)
            if counting:
                _accumulate(prefix_count, counts + slot * in_cols, in_cols)
    # The block cut by the window's top edge (rows 0 .. first_row - 1): its suffixes.
    for slot in range(size - 2, size - first_row - 1, -1):
        _accumulate(sums + slot * in_cols, sums + (slot + 1) * in_cols, in_cols)
        if counting:
            _accumulate(counts + slot * in_cols, counts + (slot + 1) * in_cols, in_cols)

    for i in range(rows):
        # The neighbourhood's bottom row extends the running prefix of its block.
        slot = _slot(i + size - 1, first_row, size)
        _load_sums(src + (i + size - 1) * in_cols,
                   mask + (i + size - 1) * in_cols if mask != NULL else NULL, in_cols,
                   nodata, counting, sums + slot * in_cols,
                   counts + slot * in_cols)
        if slot == 0:
            memcpy(prefix_sum, sums, in_cols * sizeof(double))
            if counting:
                memcpy(prefix_count, counts, in_cols * sizeof(double))
        else:
            _accumulate(prefix_sum, sums + slot * in_cols, in_cols)
            if counting:
                _accumulate(prefix_count, counts + slot * in_cols, in_cols)
        top_slot = _slot(i, first_row, size)
        if top_slot == 0:
            # The neighbourhood is one whole block, now loaded: its prefix is the sum.
            # The block's suffixes, for the next size - 1 output rows (slot 0's is never
            # needed: the row after this one starts the next block).
            for slot in range(size - 2, 0, -1):
                _accumulate(sums + slot * in_cols, sums + (slot + 1) * in_cols, in_cols)
                if counting:
                    _accumulate(counts + slot * in_cols, counts + (slot + 1) * in_cols,
                                in_cols)
            line_sum = prefix_sum
            line_count = prefix_count
        else:
            top_sum = sums + top_slot * in_cols
            top_count = counts + top_slot * in_cols
            _add(column_sum, top_sum, prefix_sum, in_cols)
            line_sum = column_sum
            if counting:
                _add(column_count, top_count, prefix_count, in_cols)
                line_count = column_count
        _line_sums(line_sum, line_count, in_cols, cols, size, first_col, counting, row_prefix,
                   row_suffix, total, count)
        out = dst + i * cols
        if not counting:
            for j in range(cols):
                out[j] = <out_t>(total[j] / area)
            continue
        # Divide, then fill: two loops the compiler vectorises (0 / 0, never kept, raises
        # nothing in C); a centre that is valid counts itself, so count > 0 where kept.
        for j in range(cols):
            out[j] = <out_t>(total[j] / count[j])
        centre = src + (i + half) * in_cols + half
        if mask != NULL:
            centre_mask = mask + (i + half) * in_cols + half
            for j in range(cols):
                x = <double>centre[j]
                bad = (x != x) | (x == nodata) | (centre_mask[j] == 0)
                out[j] = fill if bad else out[j]
        else:
            for j in range(cols):
                x = <double>centre[j]
                bad = (x != x) | (x == nodata)
                out[j] = fill if bad else out[j]


def focal_mean(const pixel_t[:, :, ::1] src, out_t[:, :, ::1] dst, double[:, ::1] sums,
               double[:, ::1] counts, double[:, ::1] lines, Py_ssize_t size, Py_ssize_t row0,
               Py_ssize_t col0, bint has_nodata, double nodata, double fill,
               const unsigned char[:, ::1] mask, bint has_mask):
    """dst = mean of the valid pixels in each size x size neighbourhood; ``fill`` where
    the centre is missing. With ``has_mask``, a pixel where ``mask`` (the input's rows and
    cols) is 0 is missing too. ``row0``, ``col0``: the raster coordinates of src's first
    pixel. Scratch: ``sums`` and ``counts`` (size, src's cols), ``lines`` (8, src's cols).
    """
    cdef Py_ssize_t b
    cdef Py_ssize_t bands = dst.shape[0], rows = dst.shape[1], cols = dst.shape[2]
    cdef Py_ssize_t first_row = _first_start(row0, size), first_col = _first_start(col0, size)
    cdef const unsigned char* mask_data = &mask[0, 0] if has_mask else NULL
    with nogil:
        for b in range(bands):
            _mean_band(&src[b, 0, 0], mask_data, &dst[b, 0, 0], rows, cols, size, first_row,
                       first_col, nodata if has_nodata else NAN, <out_t>fill, &sums[0, 0],
                       &counts[0, 0], &lines[0, 0])


# ---------------------------------------------------------------- extremes (focal-max, -min)


cdef inline pixel_t _better(pixel_t a, pixel_t b, bint maximum) noexcept nogil:
    # Branch-free in the loops below: ``maximum`` does not change inside them, so the
    # compiler hoists the test out and vectorises each loop as a plain max or min.
    if maximum:
        return a if a > b else b
    return a if a < b else b


cdef inline void _improve(pixel_t* best, const pixel_t* value, Py_ssize_t n,
                          bint maximum) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(n):
        best[c] = _better(best[c], value[c], maximum)


cdef void _load_extremes(const pixel_t* src, const unsigned char* mask, Py_ssize_t n,
                         double nodata, bint counting, pixel_t identity,
                         pixel_t* value) noexcept nogil:
    """One input row, ``identity`` where missing (only looked for when ``counting``);
    ``mask`` is the row's mask or NULL."""
    cdef Py_ssize_t c
    cdef double x
    if not counting:
        memcpy(value, src, n * sizeof(pixel_t))
    elif mask != NULL:
        for c in range(n):
            x = <double>src[c]
            value[c] = identity if (x != x) | (x == nodata) | (mask[c] == 0) else src[c]
    else:
        for c in range(n):
            x = <double>src[c]
            value[c] = identity if (x != x) | (x == nodata) else src[c]


cdef void _line_extremes(const pixel_t* line, Py_ssize_t n_in, Py_ssize_t n_out,
                         Py_ssize_t size, Py_ssize_t first, pixel_t* prefix, pixel_t* suffix,
                         pixel_t* best, bint maximum) noexcept nogil:
    """best[j] = the max (min) of line[j : j + size] for j < n_out, as `_line_sums`."""
    cdef Py_ssize_t start, stop, c
    cdef pixel_t acc
    start = first
    while start < n_in:
        stop = start + size if start + size < n_in else n_in
        acc = line[start]
        prefix[start] = acc
        for c in range(start + 1, stop):
            acc = _better(acc, line[c], maximum)
            prefix[c] = acc
        start = start + size
    start = first - size if first > 0 else first
    while start < n_out:
        c = start + size - 1
        acc = line[c]
        suffix[c] = acc
        stop = start if start > 0 else 0
        while c > stop:
            c = c - 1
            acc = _better(line[c], acc, maximum)
            suffix[c] = acc
        start = start + size
    for c in range(n_out):
        best[c] = _better(suffix[c], prefix[c + size - 1], maximum)
    c = first
    while c < n_out:
        best[c] = prefix[c + size - 1]
        c = c + size


cdef void _extreme_band(const pixel_t* src, const unsigned char* mask, pixel_t* dst,
                        Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t size,
                        Py_ssize_t first_row, Py_ssize_t first_col, double nodata, pixel_t fill, pixel_t identity, bint maximum,
                        pixel_t* ring, pixel_t* lines) noexcept nogil:
    # The same walk as _mean_band's, with one value per pixel instead of a sum and a count.
    cdef Py_ssize_t half = size // 2, in_rows = rows + size - 1, in_cols = cols + size - 1
    cdef Py_ssize_t i, j, slot, top_slot
    cdef bint counting = _any_missing(src, in_rows * in_cols, nodata, mask, mask != NULL)
    cdef double x
    cdef bint bad
    cdef const pixel_t* centre
    cdef const unsigned char* centre_mask
    cdef pixel_t* prefix = lines
    cdef pixel_t* column = lines + in_cols
    cdef pixel_t* row_prefix = lines + 2 * in_cols
    cdef pixel_t* row_suffix = lines + 3 * in_cols
    cdef pixel_t* line
    cdef pixel_t* out

    for i in range(size - 1):
        slot = _slot(i, first_row, size)
        _load_extremes(src + i * in_cols, mask + i * in_cols if mask != NULL else NULL,
                       in_cols, nodata, counting, identity, ring + slot * in_cols)
        if i == first_row:
            memcpy(prefix, ring + slot * in_cols, in_cols * sizeof(pixel_t))
        elif i > first_row:
            _improve(prefix, ring + slot * in_cols, in_cols, maximum)
    for slot in range(size - 2, size - first_row - 1, -1):
        _improve(ring + slot * in_cols, ring + (slot + 1) * in_cols, in_cols, maximum)

    for i in range(rows):
        slot = _slot(i + size - 1, first_row, size)
        _load_extremes(src + (i + size - 1) * in_cols,
                       mask + (i + size - 1) * in_cols if mask != NULL else NULL, in_cols,
                       nodata, counting, identity, ring + slot * in_cols)
        if slot == 0:
            memcpy(prefix, ring, in_cols * sizeof(pixel_t))
        else:
            _improve(prefix, ring + slot * in_cols, in_cols, maximum)
        top_slot = _slot(i, first_row, size)
        if top_slot == 0:
            for slot in range(size - 2, 0, -1):
                _improve(ring + slot * in_cols, ring + (slot + 1) * in_cols, in_cols, maximum)
            line = prefix
        else:
            for j in range(in_cols):
                column[j] = _better(ring[top_slot * in_cols + j], prefix[j], maximum)
            line = column
        out = dst + i * cols
        _line_extremes(line, in_cols, cols, size, first_col, row_prefix, row_suffix, out,
                       maximum)
        if not counting:
            continue
        centre = src + (i + half) * in_cols + half
        if mask != NULL:
            centre_mask = mask + (i + half) * in_cols + half
            for j in range(cols):
                x = <double>centre[j]
                bad = (x != x) | (x == nodata) | (centre_mask[j] == 0)
                out[j] = fill if bad else out[j]
        else:
            for j in range(cols):
                x = <double>centre[j]
                bad = (x != x) | (x == nodata)
                out[j] = fill if bad else out[j]


def focal_extreme(const pixel_t[:, :, ::1] src, pixel_t[:, :, ::1] dst, pixel_t[:, ::1] ring,
                  pixel_t[:, ::1] lines, Py_ssize_t size, Py_ssize_t row0, Py_ssize_t col0,
                  bint has_nodata, double nodata, pixel_t fill, pixel_t identity,
                  bint maximum, const unsigned char[:, ::1] mask, bint has_mask):
    """dst = max (or min) of the valid pixels in each size x size neighbourhood; ``fill``
    where the centre is missing. With ``has_mask``, a pixel where ``mask`` (the input's
    rows and cols) is 0 is missing too. ``row0``, ``col0``: the raster coordinates of
    src's first pixel. Scratch: ``ring`` (size, src's cols), ``lines`` (4, src's cols).

    Missing pixels are replaced by ``identity`` (the type's lowest value for max, its
    highest for min; infinities for floats), so they never win; a centre that is not
    missing is in its own neighbourhood, so every result comes from a valid pixel.
    Compares in the pixel type, so 64-bit integers stay exact.
    """
    cdef Py_ssize_t b
    cdef Py_ssize_t bands = dst.shape[0], rows = dst.shape[1], cols = dst.shape[2]
    cdef Py_ssize_t first_row = _first_start(row0, size), first_col = _first_start(col0, size)
    cdef const unsigned char* mask_data = &mask[0, 0] if has_mask else NULL
    with nogil:
        for b in range(bands):
            _extreme_band(&src[b, 0, 0], mask_data, &dst[b, 0, 0], rows, cols, size,
                          first_row, first_col, nodata if has_nodata else NAN, fill,
                          identity, maximum,
                          &ring[0, 0], &lines[0, 0])
