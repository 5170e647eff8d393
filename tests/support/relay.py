"""The byte copy that the test relays (forward.py, balancer.py) run in each direction."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def copy_until_eof(source: socket.socket, sink: socket.socket) -> None:
    """Copy what `source` sends to `sink` until `source` ends or either side fails."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                return
            sink.sendall(data)
    except OSError:
        return


def relay_both_ways(near: socket.socket, far: socket.socket,
                    after: Callable[[socket.socket, socket.socket], None],
                    name: str) -> None:
    """One thread per direction; each calls `after(source, sink)` once its copy ends."""
    def run(source: socket.socket, sink: socket.socket) -> None:
        copy_until_eof(source, sink)
        after(source, sink)

    for source, sink in ((near, far), (far, near)):
        threading.Thread(target=run, args=(source, sink), daemon=True, name=name).start()
