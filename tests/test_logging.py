"""Log lines through the real command: date and time zone on text lines, a task's extra
fields on JSON lines, and silence from the library when the program set up no logging."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

LOGGING_TASK = '''
import logging

import batchdeps as bd


class Counts(bd.Task):
    def output(self):
        return bd.FileTarget("out/counts.txt")

    def run(self):
        logging.getLogger("batchdeps.pipelines").warning(
            "rows loaded", extra={"rows": 42, "table": "sales"})
        with self.output().open("w") as out:
            out.write("42")
'''


def test_text_lines_carry_date_time_and_utc_offset(project: Any) -> None:
    done = project.run("run", "Other")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4} (INFO|WARNING|ERROR) ", line), line


def test_json_lines_keep_a_tasks_extra_fields(project: Any) -> None:
    project.write("pipelines/counts.py", LOGGING_TASK)
    done = project.run("run", "Counts", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    loaded = [line for line in lines if line["message"] == "rows loaded"]
    assert len(loaded) == 1, lines
    assert loaded[0]["rows"] == 42 and loaded[0]["table"] == "sales"
    assert loaded[0]["level"] == "WARNING"


def test_the_library_prints_nothing_when_the_program_set_up_no_logging(tmp_path: Any) -> None:
    # The NullHandler comes with the first module that logs (batchdeps.logs), not with
    # `import batchdeps` itself, which stays free of `logging` for a fast `--help`.
    code = ("import logging, batchdeps as bd\n"
            "class Done(bd.Task):\n"
            "    def output(self): return bd.FileTarget('done.txt')\n"
            "    def run(self):\n"
            "        with self.output().open('w') as f: f.write('x')\n"
            "assert bd.build(Done()).ok\n"
            "logging.getLogger('batchdeps').warning('not for the user')\n"
            "logging.getLogger('batchdeps.runner').error('nor this')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0
    assert done.stderr == ""
