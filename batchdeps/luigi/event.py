"""Luigi's event names, for `@Task.event_handler(Event.SUCCESS)`.

When each fires here (docs/from-luigi.md, "Events"): START in the process that runs the
task, just before `run()`; SUCCESS, FAILURE, PROCESSING_TIME and DEPENDENCY_MISSING in
the process that called `build()` / `run()`, once the task's result is known.
"""

from __future__ import annotations

__all__ = ["Event"]


class Event:
    DEPENDENCY_DISCOVERED = "event.core.dependency.discovered"
    DEPENDENCY_MISSING = "event.core.dependency.missing"
    DEPENDENCY_PRESENT = "event.core.dependency.present"
    BROKEN_TASK = "event.core.task.broken"
    START = "event.core.start"
    PROGRESS = "event.core.progress"
    FAILURE = "event.core.failure"
    SUCCESS = "event.core.success"
    PROCESSING_TIME = "event.core.processing_time"
    TIMEOUT = "event.core.timeout"
    PROCESS_FAILURE = "event.core.process_failure"
