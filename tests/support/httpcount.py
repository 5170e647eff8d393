"""A counting HTTP proxy on 127.0.0.1: every request passed on to a real server, and listed.

    proxy = CountingProxy(moto_port)      # point the client at proxy.endpoint
    ...
    proxy.requests                        # [("GET", "/bucket?list-type=2&..."), ...]

Each request is forwarded as it came (method, path, headers, body) over a connection of
its own, so the count is of real HTTP requests, not of calls a library was asked to make.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "content-length"}


class CountingProxy:
    """Forwards to http://127.0.0.1:`upstream_port`; `requests` lists (method, path)."""

    def __init__(self, upstream_port: int,
                 after: Callable[[str, str], None] | None = None) -> None:
        """`after(method, path)` is called once a request was answered upstream, before
        the answer is passed back (a test kills its client there, mid-request)."""
        self.upstream_port = upstream_port
        self.after = after
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                body = self._body()
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port,
                                                      timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                if proxy.after is not None:
                    proxy.after(self.command, self.path)
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                length = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self) -> bytes | None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():  # trailers
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def methods(self) -> list[str]:
        with self._lock:
            return [method for method, _ in self.requests]

    def lists(self) -> int:
        """How many ListObjects(V2) requests were made."""
        with self._lock:
            return sum(1 for method, path in self.requests
                       if method == "GET" and "list-type=2" in path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
