"""The run journal of the test pipelines: every run() appends a line that tests count.

A line is `event<TAB>task_id<TAB>pid<TAB>unix time`, appended with O_APPEND so that lines of
concurrent processes never interleave. Pipelines written by the tests paste
`JOURNAL_FUNCTION` into their source (they need `import os` and `import time`).

`hold(task)` keeps a run() going until the file `$HOLD_<FAMILY>` names exists (a test
creates it once it has seen what it checks while the task runs), instead of a sleep that a
loaded machine may outrun.
"""

from __future__ import annotations

JOURNAL_FUNCTION = '''
def journal(event, task):
    line = f"{event}\\t{task.task_id}\\t{os.getpid()}\\t{time.time():.6f}\\n"
    fd = os.open(os.environ["JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def hold(task):
    path = os.environ.get("HOLD_" + type(task).__name__.upper())
    if path:
        deadline = time.monotonic() + 300  # a test that never lets go fails, not hangs
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
'''
