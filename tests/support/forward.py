"""A TCP forwarder on 127.0.0.1 that a test can cut, as a network drop would.

`Forwarder(port).start()` listens on a free port of its own and copies bytes both ways
between each connection it accepts and a new connection to 127.0.0.1:`port`, one thread
per direction. `cut()` stops listening (a new connection is refused) and shuts both sides
of every connection down: the peers see their connections end while their processes live.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from support.relay import relay_both_ways


class Forwarder:
    """Forwards 127.0.0.1:`self.port` to 127.0.0.1:`target_port` until `cut()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self.accepted = 0  # connections forwarded so far

    def start(self) -> Forwarder:
        threading.Thread(target=self._accept, daemon=True, name="forwarder").start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._listener.accept()
            except OSError:  # cut: the listener is closed
                return
            far = self._reach_target()
            if far is None:
                near.close()
                continue
            far.settimeout(None)
            with self._lock:
                if self._cut:
                    near.close()
                    far.close()
                    return
                self._sockets += [near, far]
                self.accepted += 1
            relay_both_ways(near, far, self._half_close, "forwarder-pump")

    def _reach_target(self) -> socket.socket | None:
        """A connection to the target (which may not listen yet): None after 10 s."""
        deadline = time.monotonic() + 10.0
        while not self._cut:
            try:
                return socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.1)
        return None

    @staticmethod
    def _half_close(source: socket.socket, sink: socket.socket) -> None:
        """One direction ended: pass the end on, as TCP would (the other may go on)."""
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Refuse new connections and end every forwarded one, both sides."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
