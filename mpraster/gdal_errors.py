"""What GDAL says: its messages on one line, and the errors it only logs, heard.

GDAL reports some failures only through its error handler, never as a return code that
rasterio turns into an exception: a full disk while compression threads write, a codec
that refuses the data. `GDAL_MESSAGES` hears them for the calls of a thread that asks.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from rasterio._err import CPLE_BaseError
from rasterio.env import env_ctx_if_needed
from rasterio.errors import RasterioError


def one_line(err: BaseException) -> str:
    """GDAL's own words for an error on one line.

    rasterio raises "Read failed. See previous exception for details." and chains GDAL's
    messages as causes; the deepest cause is the one that says what went wrong.
    """
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    text = " ".join(str(err).split())
    return text or type(err).__name__


# GDAL names files of its own (rasterio's MemoryFile, GDAL's scratch files) that mean
# nothing to the user: a message is about the output mpraster names itself.
_FILE_PREFIX = re.compile(r"^(?:/vsimem/\S*|\S*/\S*|\S+\.tiff?(?:\.\S+)?|gtiffdataset_\w+):\s+")
_INTERNAL_NAME = re.compile(
    r"/vsimem/\S*|\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\S*|\bgtiffdataset_\w+"
)


def gdal_reason(message: object) -> str:
    """GDAL's words for a failure, on one line and without file names of its own."""
    text = _FILE_PREFIX.sub("", " ".join(str(message).split()))
    text = _INTERNAL_NAME.sub("a temporary file", text).rstrip(".")
    return re.sub(r"^(\w+):(?=\S)", r"\1: ", text) or "GDAL gave no reason"


# rasterio's logger for GDAL's messages. While a rasterio.Env is active in a thread, GDAL's
# errors (CE_Failure) raised in that thread arrive here at INFO in this format, and its
# warnings at WARNING (rasterio/_env.pyx, log_error, in rasterio 1.4 and 1.5).
GDAL_LOGGER = logging.getLogger("rasterio._env")
GDAL_FAILURE = "GDAL signalled an error: err_no=%r, msg=%r"


@dataclass
class HeardFromGdal:
    """What GDAL said in one thread while mpraster was listening."""

    errors: list[str]
    warnings: list[str] | None  # None: warnings were not asked for, and pass on


class _GdalMessages(logging.Filter):
    """Hands GDAL's messages to the mpraster call that caused them.

    GDAL reports some failures only as errors logged while the call returns normally: a
    disk-full write through its compression threads is one. While a thread is
    `listening`, its GDAL errors (and its warnings, if asked for) are collected instead of
    logged. For those errors to reach Python's logging at all, the logger must let INFO
    through while anyone listens; records that exist only because of that are dropped here,
    so the user's own logging sees what it saw before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._level = logging.NOTSET
        self._shown_from = logging.WARNING
        self._ears: dict[int, HeardFromGdal] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # Filters run in the thread that logs: the thread GDAL raised the error in.
        heard = self._ears.get(threading.get_ident())
        if heard is not None:
            if record.msg == GDAL_FAILURE and len(record.args or ()) == 2:
                message = record.args[1]
                if isinstance(message, bytes):
                    message = message.decode(errors="replace")
                heard.errors.append(str(message))
                return False
            if heard.warnings is not None and record.levelno >= logging.WARNING:
                heard.warnings.append(re.sub(r"^CPLE_\w+ in ", "", record.getMessage()))
                return False
        return record.levelno >= self._shown_from

    def retain(self) -> None:
        """Let GDAL's errors through to this filter until the matching `release`."""
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._level = GDAL_LOGGER.level
                self._shown_from = GDAL_LOGGER.getEffectiveLevel()
                GDAL_LOGGER.setLevel(min(self._shown_from, logging.INFO))
                GDAL_LOGGER.addFilter(self)

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                GDAL_LOGGER.removeFilter(self)
                GDAL_LOGGER.setLevel(self._level)

    @contextlib.contextmanager
    def listening(self, warnings: bool = False) -> Iterator[HeardFromGdal]:
        """Collect what GDAL says in this thread inside the block.

        Only while a rasterio.Env is active in the thread does GDAL's error handler lead
        here (rasterio pushes it per thread); one is entered if none is.
        """
        heard = HeardFromGdal([], [] if warnings else None)
        thread = threading.get_ident()
        outer = self._ears.get(thread)
        self.retain()
        self._ears[thread] = heard
        try:
            with env_ctx_if_needed():
                yield heard
        finally:
            if outer is None:
                del self._ears[thread]
            else:
                self._ears[thread] = outer
            self.release()


GDAL_MESSAGES = _GdalMessages()
# What a failing GDAL call raises: rasterio's errors, and GDAL's own (CPLE_*) that
# rasterio.shutil.copy lets through.
GDAL_RAISES = (RasterioError, CPLE_BaseError)
