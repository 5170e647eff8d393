"""A sick lock-server replica for the failover tests: a real process answering 503 to all.

`python sickreplica.py [PORT]` prints `listening on http://127.0.0.1:PORT` once bound, then
answers every request with 503 (as a replica whose database is away would), except
`GET /__count`, which answers how many other requests it has seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Sick(BaseHTTPRequestHandler):
    seen = 0
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/__count":
            status, body = 200, json.dumps({"seen": _Sick.seen}).encode()
        else:
            with _Sick.lock:
                _Sick.seen += 1
            status, body = 503, b'{"error": "database unavailable"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class SickReplica:
    """The process above, from a test."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), str(port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"the sick replica did not start: {line!r}")
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1])

    def seen(self) -> int:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/__count")
            return int(json.loads(conn.getresponse().read())["seen"])
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0),
                                 _Sick)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
