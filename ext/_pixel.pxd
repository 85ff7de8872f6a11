# The pixel types the compiled kernels are specialised for, and how they spot missing
# pixels; shared by every ext/*.pyx (cimported, no module of its own).

from libc.math cimport isnan
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

ctypedef fused pixel_t:
    int8_t
    uint8_t
    int16_t
    uint16_t
    int32_t
    uint32_t
    int64_t
    uint64_t
    float
    double


cdef inline bint missing(double value, bint has_nodata, double nodata) noexcept nogil:
    """NaN, or equal to the nodata value where there is one."""
    return isnan(value) or (has_nodata and value == nodata)
