"""A static file server on loopback, in a thread, that records what was asked of it (HTTP or HTTPS)."""

from __future__ import annotations

import functools
import ssl
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FileServer:
    def __init__(self, directory: Path, context: ssl.SSLContext | None = None) -> None:
        self.directory = directory
        self.context = context
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def __enter__(self) -> FileServer:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                with server._lock:
                    server.requests.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(self.directory)))
        self.httpd.daemon_threads = True
        if self.context is not None:
            self.httpd.socket = self.context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if self.context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def count(self, suffix: str) -> int:
        with self._lock:
            return sum(1 for path in self.requests if path.endswith(suffix))
