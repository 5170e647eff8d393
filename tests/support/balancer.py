"""A TCP load balancer in front of lock-server replicas, as a layer-4 balancer does it.

Each new connection goes to the first backend (in the order given) that accepts a
connection: a backend that is gone (refused) is passed over, as a balancer's health check
would. Bytes are piped both ways until either side closes. `sent` counts the connections
given to each backend port.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter

from support.relay import relay_both_ways


class Balancer:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.sent: Counter[int] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _backend(self) -> tuple[int, socket.socket] | None:
        for port in self.backends:
            try:
                return port, socket.create_connection(("127.0.0.1", port), timeout=1.0)
            except OSError:
                continue
        return None

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            found = self._backend()
            if found is None:
                client.close()
                continue
            port, upstream = found
            upstream.settimeout(None)
            with self._lock:
                self.sent[port] += 1
                self._open += [client, upstream]
            relay_both_ways(client, upstream, self._close_both, "balancer-pipe")

    @staticmethod
    def _close_both(source: socket.socket, sink: socket.socket) -> None:
        for sock in (source, sink):  # one side gone: close both, as a balancer does
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.close()
                except OSError:
                    pass
