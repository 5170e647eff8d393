"""The current process id and host name, cheaply.

`os.getpid()` is a real system call on Linux; the runner and the targets ask for it on every
task. The cached value is refreshed in every child right after a fork.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def current_pid() -> int:
    """This process's id (correct in forked children too)."""
    return _pid


def hostname() -> str:
    """This machine's name: what `socket.gethostname()` returns on Linux (uname's node name),
    without importing `socket` into every run."""
    return os.uname().nodename
