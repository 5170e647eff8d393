"""The package's loggers, and the one NullHandler a library adds.

Without a handler of its own, Python's last-resort handler would print batchdeps' warnings
in programs that did not ask for them; the command line sets up its own handlers. Kept out
of the package's `__init__` so that `batchdeps --help` does not import `logging`.
"""

from __future__ import annotations

import logging

logging.getLogger("batchdeps").addHandler(logging.NullHandler())


def get(name: str = "batchdeps") -> logging.Logger:
    """The logger `name` (under `batchdeps`, whose NullHandler is in place)."""
    return logging.getLogger(name)
