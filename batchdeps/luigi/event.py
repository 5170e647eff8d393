"""Luigi's event names, for `@Task.event_handler(Event.SUCCESS)`: batchdeps' own.

Handlers are called in the process that runs the build, from the run's events (see
batchdeps/handlers.py for when each fires and with which arguments).
"""

from __future__ import annotations

from ..handlers import Event

__all__ = ["Event"]
