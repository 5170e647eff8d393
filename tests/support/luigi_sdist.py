"""Luigi's own examples and tests, fetched at test time, run with Luigi and batchdeps.luigi.

`luigi_source()` downloads Luigi's source distribution once (`pip download --no-deps
--no-binary :all: luigi==3.8.1`) into a cache outside the repository (pytest's cache,
or $BATCHDEPS_LUIGI_SDIST), and unpacks examples/ and test/. Nothing of Luigi is kept in
this repository.

`ExampleRun` copies one example into a folder of its own twice, once left for Luigi and
once with its import lines changed to batchdeps.luigi, applies the same rewrites to both
(listed in REWRITES and in docs/from-luigi.md), and runs a driver in a subprocess that
builds the example's task and records which tasks ran (Luigi's event handlers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

LUIGI_VERSION = "3.8.1"
CACHE_ENV = "BATCHDEPS_LUIGI_SDIST"

#: Rewrites applied to both copies of an example, and why (docs/from-luigi.md lists them).
REWRITES: list[tuple[str, str, str]] = [
    (r'(["\'])/var/tmp/', r"\1var/tmp/",
     "absolute /var/tmp/ paths made relative, so each run writes in its own folder"),
    (r'(["\'])/tmp/', r"\1tmp/",
     "absolute /tmp/ paths made relative, so each run writes in its own folder"),
    (r"time\.sleep\([^)]*\)", "time.sleep(0)",
     "sleeps (1 s per output() call, 5 s per run()) cut to 0, to keep the suite fast"),
]

#: The import lines changed for batchdeps.luigi, and nothing else.
IMPORT_REWRITES: list[tuple[str, str]] = [
    (r"^import luigi$", "import batchdeps.luigi as luigi"),
    (r"^import luigi\.(\S+)$", r"import batchdeps.luigi.\1"),
    (r"^from luigi\.(\S+) import", r"from batchdeps.luigi.\1 import"),
    (r"^from luigi import", "from batchdeps.luigi import"),
]


def _download(dest: Path) -> Path:
    """The unpacked source tree of Luigi under `dest` (downloaded the first time)."""
    root = dest / f"luigi-{LUIGI_VERSION}"
    if (root / "examples").is_dir() and (root / "test").is_dir():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"luigi-{LUIGI_VERSION}.tar.gz"
    if not archive.exists():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", f"luigi=={LUIGI_VERSION}", "-d", str(dest)],
            capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not archive.exists():
            raise RuntimeError(f"pip download of luigi=={LUIGI_VERSION} failed "
                               f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    partial = dest / "unpacking"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.split("/")[1:2] in (["examples"], ["test"])]
        tar.extractall(partial, members=members, filter="data")
    os.replace(partial / f"luigi-{LUIGI_VERSION}", root)
    shutil.rmtree(partial, ignore_errors=True)
    return root


def luigi_source(cache_dir: Path) -> Path:
    """Luigi's unpacked source distribution (examples/ and test/), cached."""
    chosen = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else cache_dir
    return _download(chosen)


def rewrite_common(source: str) -> str:
    for pattern, replacement, _ in REWRITES:
        source = re.sub(pattern, replacement, source)
    return source


def rewrite_imports(source: str) -> str:
    """Luigi's import lines as batchdeps.luigi's; `luigi` stays the name used."""
    lines = []
    bound = False
    for line in source.splitlines():
        new = line
        for pattern, replacement in IMPORT_REWRITES:
            new = re.sub(pattern, replacement, new)
        if new != line and new.startswith("import batchdeps.luigi.") and not bound:
            lines.append("import batchdeps.luigi as luigi")
        bound = bound or new == "import batchdeps.luigi as luigi"
        lines.append(new)
    return "\n".join(lines) + "\n"


_DRIVER = '''
import json, sys, os
{import_line}
import {module} as example

log = open("{events}", "a")
def note(kind):
    def handler(task, *args):
        log.write(json.dumps([kind, task.task_id]) + "\\n"); log.flush()
    return handler
luigi.Task.event_handler(luigi.Event.START)(note("start"))
luigi.Task.event_handler(luigi.Event.SUCCESS)(note("success"))
luigi.Task.event_handler(luigi.Event.FAILURE)(note("failure"))
{prelude}
task = {task}
result = luigi.build([task], local_scheduler=True, detailed_summary=True, workers={workers},
                     log_level="WARNING")
with open("{answer}", "w") as out:
    json.dump({{"status": result.status.name,
               "scheduling_succeeded": result.scheduling_succeeded}}, out)
'''

HARNESS_FILES = {"driver.py", "events.jsonl", "answer.json", "__pycache__", ".batchdeps-tmp",
                 "luigi.cfg"}


@dataclass
class Outcome:
    """One run of the driver: what its event handlers saw, and build()'s answer."""

    started: list[str]
    succeeded: set[str]
    failed: set[str]
    status: str
    scheduling_succeeded: bool
    stdout: str = ""
    stderr: str = ""

    @property
    def ran(self) -> set[str]:
        return set(self.started)


@dataclass
class ExampleRun:
    """An example copied into `folder` for one tool ("luigi" or "batchdeps")."""

    source: Path
    module: str
    folder: Path
    tool: str
    task: str
    workers: int = 1
    prelude: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = rewrite_common(self.source.read_text())
        if self.tool == "batchdeps":
            text = rewrite_imports(text)
        (self.folder / f"{self.module}.py").write_text(text)

    def run(self, timeout: float = 120) -> Outcome:
        events = self.folder / "events.jsonl"
        answer = self.folder / "answer.json"
        events.unlink(missing_ok=True)
        answer.unlink(missing_ok=True)
        import_line = ("import batchdeps.luigi as luigi" if self.tool == "batchdeps"
                       else "import luigi")
        (self.folder / "driver.py").write_text(_DRIVER.format(
            import_line=import_line, module=self.module, events="events.jsonl",
            answer="answer.json", task=self.task, workers=self.workers,
            prelude=self.prelude))
        env = {**os.environ, "PYTHONPATH": str(self.folder), **self.extra_env}
        env.pop("BATCHDEPS_CONFIG", None)
        done = subprocess.run([sys.executable, "driver.py"], cwd=self.folder, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not answer.exists():
            raise AssertionError(f"{self.tool} run of {self.module} failed "
                                 f"(exit {done.returncode}):\n{done.stderr[-4000:]}")
        started, succeeded, failed = [], set(), set()
        for line in events.read_text().splitlines() if events.exists() else []:
            kind, task_id = json.loads(line)
            if kind == "start":
                started.append(task_id)
            elif kind == "success":
                succeeded.add(task_id)
            else:
                failed.add(task_id)
        reply = json.loads(answer.read_text())
        return Outcome(started, succeeded, failed, reply["status"],
                       reply["scheduling_succeeded"], done.stdout, done.stderr)

    def tree(self) -> dict[str, bytes]:
        """Every file the example made (relative path -> bytes), harness files left out."""
        found: dict[str, bytes] = {}
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder)
            if any(part in HARNESS_FILES for part in rel.parts) or path.is_dir():
                continue
            if rel.parts == (f"{self.module}.py",):
                continue
            found[str(rel)] = path.read_bytes()
        return found


def pair(source_root: Path, name: str, base: Path, task: str, workers: int = 1,
         prelude: str = "", config: str = "") -> tuple[ExampleRun, ExampleRun]:
    """The example `name` set up twice under `base`: for Luigi, and for batchdeps.luigi."""
    runs = []
    for tool in ("luigi", "batchdeps"):
        run = ExampleRun(source_root / "examples" / f"{name}.py", name, base / tool, tool,
                         task, workers, prelude)
        run.prepare()
        if config:
            (run.folder / "luigi.cfg").write_text(config)
        runs.append(run)
    return runs[0], runs[1]


def remove(runs: tuple[ExampleRun, ...], relative: list[str]) -> None:
    """Delete the same outputs in each run's folder (a partial rerun)."""
    for run in runs:
        for rel in relative:
            path = run.folder / rel
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()



# -- Luigi's own tests ---------------------------------------------------------------------
#: A conftest.py for a copy of Luigi's test/: `import luigi` (and `luigi.X`) gives
#: batchdeps.luigi (and batchdeps.luigi.X); a submodule it lacks fails to import, by name.
MOCK_ALIAS = '''
import sys, unittest.mock
sys.modules.setdefault("mock", unittest.mock)  # Luigi's tests use the `mock` backport
try:  # no wall-clock deadline for hypothesis' examples (task_serialize_test.py): the
    import hypothesis  # machine may be loaded, and speed is not what these tests check
    hypothesis.settings.register_profile("no-deadline", deadline=None)
    hypothesis.settings.load_profile("no-deadline")
except ImportError:
    pass
'''

ALIAS_CONFTEST = MOCK_ALIAS + '''
import importlib, importlib.abc, importlib.util, sys

class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "luigi" or name.startswith("luigi."):
            return importlib.util.spec_from_loader(name, self)
        return None
    def create_module(self, spec):
        return importlib.import_module("batchdeps." + spec.name)
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, _Alias())
import luigi.task_register
import pytest

@pytest.fixture(autouse=True)
def _fresh_register():
    saved = luigi.task_register.Register._get_reg()
    luigi.task_register.Register.clear_instance_cache()
    yield
    luigi.task_register.Register._set_reg(saved)
    luigi.task_register.Register.clear_instance_cache()
'''


#: Luigi test modules that a listed file imports for a helper or two, while the rest of them
#: needs what batchdeps.luigi has no counterpart of (worker_test.py: Luigi's scheduler, RPC
#: and `luigi.cmdline`). Luigi's run gets the real module; batchdeps.luigi's run gets the
#: stand-in below, this harness's own, giving only the helpers the listed files use.
IMPORTED_HELPERS = {"parameter_test.py": ["worker_test.py"]}
#: Folders of Luigi's test/ that a listed file reads (its config files), copied beside it.
DATA_FOLDERS = {"config_toml_test.py": ["testconfig"]}
STAND_INS = {"worker_test.py": '''
"""Stand-in for Luigi's worker_test.py: its email_patch, which parameter_test.py takes."""
import functools
from unittest import mock

from helpers import with_config


def email_patch(test_func, email_config=None):
    """Runs the test with e-mail forced on and smtplib.SMTP patched; the test gets the list
    of the messages sent."""
    config = {"email": {"receiver": "not-a-real-email-address-for-test-only",
                        "force_send": "true"}}
    config.update(email_config or {})
    sent = []

    @with_config(config)
    @functools.wraps(test_func)
    @mock.patch("smtplib.SMTP")
    def with_mail_caught(self, smtp):
        smtp().sendmail.side_effect = lambda sender, recipients, msg: sent.append(msg)
        test_func(self, sent)

    return with_mail_caught
'''}


@dataclass
class SuiteResult:
    """What pytest reported for each test of one file."""

    file: str
    outcomes: dict[str, str]  # test name -> passed | failed | error | skipped
    collect_error: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)


def run_luigi_tests(source_root: Path, folder: Path, files: list[str], tool: str,
                    timeout: float = 600) -> dict[str, SuiteResult]:
    """Run Luigi's test files (from its sdist) with pytest, against `tool` ("luigi" for
    Luigi itself, "batchdeps" for batchdeps.luigi through ALIAS_CONFTEST)."""
    import xml.etree.ElementTree as ET

    test_dir = folder / tool / "test"
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.mkdir(parents=True)
    for name in [*files, "helpers.py"]:
        shutil.copy(source_root / "test" / name, test_dir / name)
    for data in {d for name in files for d in DATA_FOLDERS.get(name, [])}:
        shutil.copytree(source_root / "test" / data, test_dir / data)
    for helper in {h for name in files for h in IMPORTED_HELPERS.get(name, [])}:
        if tool == "batchdeps":
            (test_dir / helper).write_text(STAND_INS[helper])
        else:
            shutil.copy(source_root / "test" / helper, test_dir / helper)
    if tool == "batchdeps":
        (test_dir / "conftest.py").write_text(ALIAS_CONFTEST)
    else:
        (test_dir / "conftest.py").write_text(
            MOCK_ALIAS + (source_root / "test" / "conftest.py").read_text())
    report = folder / tool / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(test_dir)}
    env.pop("BATCHDEPS_CONFIG", None)
    # From the folder above test/, as Luigi runs its tests (some make files in "test/").
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--continue-on-collection-errors",
                    "-o", "addopts=", "-W", "ignore", f"--junitxml={report}",
                    "--rootdir", str(test_dir), *(f"test/{name}" for name in files)],
                   cwd=test_dir.parent, env=env, capture_output=True, text=True,
                   timeout=timeout)
    results = {name: SuiteResult(name, {}) for name in files}
    for case in ET.parse(report).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        collecting = not classname  # a file that could not be collected
        module = (name if collecting else classname.split(".")[0]) + ".py"
        target = results.get(module)
        if target is None:
            continue
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}[child.tag] if child.tag == "failure" \
                    else child.tag
                if collecting:
                    target.collect_error = (child.text or child.get("message", ""))[-600:]
        target.outcomes[f"{classname}::{name}"] = outcome
    return results
