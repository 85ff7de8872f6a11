"""A loopback HTTP server with Range support that a test can make stall.

Python's ``http.server`` ignores ``Range``; GDAL's /vsicurl/ needs it (it reads a GeoTIFF
by byte ranges). A server made to stall answers nothing for the byte ranges it is told
to hold back, as a server that stopped (not died) would, until it is released.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# How long a stalled request waits to be released before the server gives up on it: the
# bound that keeps a test that forgot to release from hanging its teardown.
STALL_LIMIT_SECONDS = 120


class RangeServer:
    """Serves the files of ``root`` on 127.0.0.1; use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hold_from: int | None = None  # stall every request reaching this byte offset
        self.stalled = threading.Event()  # set once a request has been held back
        self._release = threading.Event()
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                server._answer(self, body=False)

            def do_GET(self) -> None:
                server._answer(self, body=True)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def release(self) -> None:
        """Let held-back requests go on (with their data) and stall no more."""
        self.hold_from = None
        self._release.set()

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = self.root / handler.path.lstrip("/").split("?")[0]
        self.requests.append((handler.command, handler.headers.get("Range", "")))
        if not path.is_file():
            handler.send_error(404)
            return
        data = path.read_bytes()
        start, stop = 0, len(data)
        match = re.match(r"bytes=(\d+)-(\d*)", handler.headers.get("Range", ""))
        if match:
            start = int(match[1])
            stop = min(int(match[2]) + 1, len(data)) if match[2] else len(data)
        if body and self.hold_from is not None and stop > self.hold_from:
            self.stalled.set()
            if not self._release.wait(STALL_LIMIT_SECONDS):
                return
        handler.send_response(206 if match else 200)
        if match:
            handler.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        handler.send_header("Content-Length", str(stop - start))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if body:
            try:
                handler.wfile.write(data[start:stop])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout): what a real server sees too

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)
