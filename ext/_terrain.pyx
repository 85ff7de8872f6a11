# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Slope, aspect and hillshade by Horn's method, as ``gdaldem`` computes them, in nogil loops.

Input is one DEM band grown by one pixel on every side (float64); output is the window.
For each pixel, with its 3 x 3 neighbourhood a b c / d e f / g h i (north up):

    x = z * ((a + 2d + g) - (c + 2f + i)) / (8 * ewres)
    y = z * ((g + 2h + i) - (a + 2b + c)) / (8 * nsres)      (nsres < 0 for north-up)
    slope = atan(sqrt(x^2 + y^2)) in degrees
    hillshade = 1 + 254 * cang, or 1 where cang <= 0, with
    cang = (sin(alt) - cos(alt) * (y * cos(az) - x * sin(az))) / sqrt(1 + x^2 + y^2)
    aspect = azimuth of atan2(dy, -dx), clockwise from north, 0 <= aspect < 360, with
    dx = (c + 2f + i) - (a + 2d + g), dy = (g + 2h + i) - (a + 2b + c) (unscaled, as
    gdaldem); ``flat`` where both are 0

A pixel any of whose nine neighbours is nodata (or NaN) gets ``fill``. `terrain` computes
all three from one gradient, each value by the same operations as the loop of its own.
"""

from libc.math cimport M_PI, atan, atan2, cos, sin, sqrt

from _pixel cimport missing


cdef inline bint _gradient(const double[:, ::1] dem, Py_ssize_t i, Py_ssize_t j,
                           double xscale, double yscale, bint has_nodata, double nodata,
                           double *x, double *y) noexcept nogil:
    cdef double a = dem[i, j], b = dem[i, j + 1], c = dem[i, j + 2]
    cdef double d = dem[i + 1, j], e = dem[i + 1, j + 1], f = dem[i + 1, j + 2]
    cdef double g = dem[i + 2, j], h = dem[i + 2, j + 1], k = dem[i + 2, j + 2]
    if (missing(a, has_nodata, nodata) or missing(b, has_nodata, nodata)
            or missing(c, has_nodata, nodata) or missing(d, has_nodata, nodata)
            or missing(e, has_nodata, nodata) or missing(f, has_nodata, nodata)
            or missing(g, has_nodata, nodata) or missing(h, has_nodata, nodata)
            or missing(k, has_nodata, nodata)):
        return False
    x[0] = ((a + d + d + g) - (c + f + f + k)) * xscale
    y[0] = ((g + h + h + k) - (a + b + b + c)) * yscale
    return True


def slope(const double[:, ::1] dem, float[:, ::1] dst, double ewres, double nsres,
          double z, bint has_nodata, double nodata, float fill):
    """Slope in degrees (Horn)."""
    cdef Py_ssize_t rows = dst.shape[0], cols = dst.shape[1], i, j
    cdef double x, y
    cdef double xscale = z / (8.0 * ewres), yscale = z / (8.0 * nsres)
    with nogil:
        for i in range(rows):
            for j in range(cols):
                if _gradient(dem, i, j, xscale, yscale, has_nodata, nodata, &x, &y):
                    dst[i, j] = <float>(atan(sqrt(x * x + y * y)) * 180.0 / M_PI)
                else:
                    dst[i, j] = fill


def hillshade(const double[:, ::1] dem, float[:, ::1] dst, double ewres, double nsres,
              double z, double azimuth, double altitude, bint has_nodata, double nodata,
              float fill):
    """Shaded relief, 1..255 (Horn, gdaldem's default algorithm)."""
    cdef Py_ssize_t rows = dst.shape[0], cols = dst.shape[1], i, j
    cdef double x, y, cang
    cdef double xscale = z / (8.0 * ewres), yscale = z / (8.0 * nsres)
    cdef double az = azimuth * M_PI / 180.0, alt = altitude * M_PI / 180.0
    cdef double sin_alt = sin(alt), cos_alt = cos(alt), cos_az = cos(az), sin_az = sin(az)
    with nogil:
        for i in range(rows):
            for j in range(cols):
                if _gradient(dem, i, j, xscale, yscale, has_nodata, nodata, &x, &y):
                    cang = (sin_alt - cos_alt * (y * cos_az - x * sin_az)) / sqrt(
                        1.0 + x * x + y * y
                    )
                    dst[i, j] = <float>(1.0 if cang <= 0.0 else 1.0 + 254.0 * cang)
                else:
                    dst[i, j] = fill


cdef inline float _aspect(double dx, double dy, float flat) noexcept nogil:
    cdef float angle
    if dx == 0.0 and dy == 0.0:
        return flat
    angle = <float>(atan2(dy, -dx) / (M_PI / 180.0))
    if angle > 90.0:
        angle = 450.0 - angle
    else:
        angle = 90.0 - angle
    if angle == 360.0:
        angle = 0.0
    return angle


def aspect(const double[:, ::1] dem, float[:, ::1] dst, bint has_nodata, double nodata,
           float fill, float flat):
    """Aspect in degrees clockwise from north (Horn), ``flat`` where the slope is 0."""
    cdef Py_ssize_t rows = dst.shape[0], cols = dst.shape[1], i, j
    cdef double dx, dy
    with nogil:
        for i in range(rows):
            for j in range(cols):
                # Scaled by -1 and 1, Horn's gradient is gdaldem's dx and dy exactly.
                if _gradient(dem, i, j, -1.0, 1.0, has_nodata, nodata, &dx, &dy):
                    dst[i, j] = _aspect(dx, dy, flat)
                else:
                    dst[i, j] = fill


def terrain(const double[:, ::1] dem, float[:, ::1] slope_dst, float[:, ::1] aspect_dst,
            float[:, ::1] shade_dst, double ewres, double nsres, double z, double azimuth,
            double altitude, bint has_nodata, double nodata, float slope_fill,
            float aspect_fill, float flat, float shade_fill):
    """`slope`, `aspect` and `hillshade` (before rounding) at once, from one gradient of
    each neighbourhood; each output the same values as its own loop gives (negating a
    difference and scaling it by the same factor are exact, so -dx * xscale is the x
    `slope` computes)."""
    cdef Py_ssize_t rows = slope_dst.shape[0], cols = slope_dst.shape[1], i, j
    cdef double x, y, dx, dy, cang
    cdef double xscale = z / (8.0 * ewres), yscale = z / (8.0 * nsres)
    cdef double az = azimuth * M_PI / 180.0, alt = altitude * M_PI / 180.0
    cdef double sin_alt = sin(alt), cos_alt = cos(alt), cos_az = cos(az), sin_az = sin(az)
    with nogil:
        for i in range(rows):
            for j in range(cols):
                if not _gradient(dem, i, j, -1.0, 1.0, has_nodata, nodata, &dx, &dy):
                    slope_dst[i, j] = slope_fill
                    aspect_dst[i, j] = aspect_fill
                    shade_dst[i, j] = shade_fill
                    continue
                aspect_dst[i, j] = _aspect(dx, dy, flat)
                x = (-dx) * xscale
                y = dy * yscale
                slope_dst[i, j] = <float>(atan(sqrt(x * x + y * y)) * 180.0 / M_PI)
                cang = (sin_alt - cos_alt * (y * cos_az - x * sin_az)) / sqrt(
                    1.0 + x * x + y * y
                )
                shade_dst[i, j] = <float>(1.0 if cang <= 0.0 else 1.0 + 254.0 * cang)
