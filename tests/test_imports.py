"""The package has no import cycle, and every module imports on its own."""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import batchdeps
from support.project import ONE_FILE_TASK

PACKAGE = Path(batchdeps.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: not those inside functions or classes, nor
    under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
        elif isinstance(node, ast.With):
            pending.extend(node.body)
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The dotted name `from X import ...` in `module` imports from (relative resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports when it is imported."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                stem = _absolute(node, name, is_package)
                targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known
                           else stem for alias in node.names]
            for target in targets:
                while target and target not in known:  # batchdeps.x.Name -> batchdeps.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                    # importing a.b.c imports its packages a and a.b first
                    parent = target.rpartition(".")[0]
                    while parent:
                        if parent != name and not name.startswith(parent + "."):
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "batchdeps.run.session" in graph["batchdeps.api"]
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        return
    raise AssertionError("a cycle went unnoticed")


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Each module imported first, with no batchdeps module loaded before it (a cycle
    that only bites in one import order shows up here)."""
    names = sorted(name for name in modules() if not name.endswith("__main__"))
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'batchdeps' or m.startswith('batchdeps.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    assert _fresh_python(script) == ""


def _one_file_task(folder: Path) -> str:
    """Source of a task `Out` that writes one file in `folder` (for the scripts below)."""
    return (
        "class Out(bd.Task):\n"
        "    def output(self):\n"
        f"        return bd.FileTarget({str(folder)!r} + '/out.txt')\n"
        "    def run(self):\n"
        "        with self.output().open('w') as out:\n"
        "            out.write('x')\n"
    )


def _fresh_python(script: str) -> str:
    """What `script` prints in a new interpreter (which must exit 0)."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module name `source` imports anywhere (functions and TYPE_CHECKING included),
    relative imports resolved against `module`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            stem = _absolute(node, module, is_package)
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


def _reaches_web(name: str) -> bool:
    return name == "batchdeps.web" or name.startswith("batchdeps.web.")


def test_the_web_import_check_sees_relative_and_lazy_imports() -> None:
    lazy = "def f():\n    from ..web.routes import register\n"
    assert any(map(_reaches_web, _imported_names(lazy, "batchdeps.locks.server")))
    package = "from ..web import routes\n"
    assert any(map(_reaches_web, _imported_names(package, "batchdeps.locks", True)))
    assert not any(map(_reaches_web, _imported_names(
        "from ..webhooks import x\nfrom . import protocol\n", "batchdeps.locks.server")))


def test_no_module_under_locks_imports_web() -> None:
    """The lock server knows nothing of web/: web/ registers its routes on it from above."""
    found = {name: path for name, path in modules().items()
             if name == "batchdeps.locks" or name.startswith("batchdeps.locks.")}
    assert "batchdeps.locks.server" in found
    offenders = {name: sorted(filter(_reaches_web, _imported_names(
        path.read_text(), name, path.name == "__init__.py"))) for name, path in found.items()}
    assert {name: web for name, web in offenders.items() if web} == {}


def test_importing_the_lock_server_loads_nothing_of_web() -> None:
    names = sorted(name for name in modules() if name.startswith("batchdeps.locks."))
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'batchdeps.locks.server' in sys.modules\n"
        "print(sorted(m for m in sys.modules if m == 'batchdeps.web' "
        "or m.startswith('batchdeps.web.')))\n"
    )
    assert _fresh_python(script) == "[]"


def test_dask_is_imported_only_by_a_run_with_the_dask_executor(tmp_path: Path) -> None:
    """`import batchdeps`, the command line's modules and runs with the inline and local
    executors load neither dask nor distributed; nor does the Dask executor's module
    until a run starts (the attempt process on a worker stays light)."""
    script = (
        "import sys\n"
        "import batchdeps as bd\n"
        "import batchdeps.cli.run, batchdeps.run.session\n"
        "import batchdeps.run.dask_executor, batchdeps.run.dask_attempt\n"
        "class Out(bd.Task):\n"
        "    n = bd.IntParameter()\n"
        "    def output(self):\n"
        f"        return bd.FileTarget({str(tmp_path)!r} + f'/out-{{self.n}}.txt')\n"
        "    def run(self):\n"
        "        with self.output().open('w') as out:\n"
        "            out.write('x')\n"
        "one = bd.build([Out(n=1)], workers=1)\n"
        "two = bd.build([Out(n=2), Out(n=3)], workers=2)\n"
        "assert one.exit_code == 0 and two.exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    assert _fresh_python(script) == "[]"
    assert (tmp_path / "out-3.txt").exists()


def test_the_postgresql_store_imports_psycopg_only_when_a_store_is_opened() -> None:
    """`lock-server` on SQLite (and `--help`) never pays for the driver."""
    script = (
        "import sys\n"
        "import batchdeps.locks.server, batchdeps.locks.store.postgres\n"
        "import batchdeps.history.pgstore, batchdeps.cli.locks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))\n"
    )
    assert _fresh_python(script) == "[]"


def test_importing_batchdeps_luigi_is_cheap() -> None:
    """`import batchdeps.luigi as luigi` and a module's class definitions load neither
    Luigi itself nor the runner, the command line, fsspec, s3fs, dask or aiohttp; the
    contrib stand-ins (hdfs, postgres, spark) load nothing heavy either."""
    script = (
        "import sys\n"
        "import batchdeps.luigi as luigi\n"
        "import batchdeps.luigi.contrib.hdfs, batchdeps.luigi.contrib.postgres\n"
        "import batchdeps.luigi.contrib.spark\n"
        "from batchdeps.luigi import util, date_interval, format, Event\n"
        "class T(luigi.Task):\n"
        "    day = luigi.DateParameter()\n"
        "    span = luigi.DateIntervalParameter()\n"
        "    def output(self):\n"
        "        return luigi.LocalTarget(path=f'out/{self.day}', format=format.Gzip)\n"
        "T(day='2026-11-24', span='2026-W48').output()\n"
        "heavy = ('luigi', 'batchdeps.run', 'batchdeps.resolver', 'batchdeps.cli', 'click',\n"
        "         'fsspec', 's3fs', 'dask', 'distributed', 'aiohttp', 'psycopg', 'tornado')\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy\n"
        "             or any(m.startswith(h + '.') for h in heavy)))\n"
    )
    assert _fresh_python(script) == "[]"


def test_a_default_run_loads_neither_staleness_nor_the_input_waiter(tmp_path: Path) -> None:
    """Without rerun triggers and without a wait, a run does not import staleness.py or
    run/waiting.py (the default stays as light as before they existed); with them, it
    does."""
    script = (
        "import sys\n"
        "import batchdeps as bd\n"
        + _one_file_task(tmp_path) +
        "names = ('batchdeps.staleness', 'batchdeps.run.waiting')\n"
        "assert bd.build([Out()]).exit_code == 0\n"
        "print([m for m in names if m in sys.modules], end=' ')\n"
        "assert bd.build([Out()], rerun_triggers='version', wait_for_inputs=1).exit_code == 0\n"
        "print([m for m in names if m in sys.modules])\n"
    )
    assert _fresh_python(script) == "[] ['batchdeps.staleness', 'batchdeps.run.waiting']"


def test_compression_is_imported_only_by_a_target_that_uses_it() -> None:
    """The formats module is part of every run; gzip is loaded by a Gzip read or write."""
    script = (
        "import sys\n"
        "import batchdeps as bd, batchdeps.cli.run, batchdeps.targets.formats\n"
        "bd.FileTarget('x.gz', format=batchdeps.targets.formats.Gzip)\n"
        "print(sorted(m for m in sys.modules if m == 'gzip'))\n"
    )
    assert _fresh_python(script) == "[]"


def test_a_run_with_local_locks_does_not_import_the_lock_servers_protocol(tmp_path: Path) -> None:
    """Machine-local locks need nothing of the lock server: `lock_url_for` imports the
    replicas (and their protocol) only once a URL is given."""
    script = (
        "import sys\n"
        "import batchdeps as bd\n"
        "from batchdeps.config import Config\n"
        "from batchdeps.run.session import lock_url_for\n"
        + _one_file_task(tmp_path) +
        "names = ('batchdeps.locks.protocol', 'batchdeps.locks.replicas')\n"
        "assert bd.build([Out()]).exit_code == 0\n"
        "assert lock_url_for(Config()) == ()\n"
        "print([m for m in names if m in sys.modules], end=' ')\n"
        "print(lock_url_for(Config(), 'http://127.0.0.1:9/'), end=' ')\n"
        "print([m for m in names if m in sys.modules])\n"
    )
    assert _fresh_python(script) == (
        "[] ('http://127.0.0.1:9',) ['batchdeps.locks.protocol', 'batchdeps.locks.replicas']")


#: Runs `batchdeps` (the arguments after -c), then prints what it saw: the threads started
#: and the executor made, in order, and whether `distributed` was imported.
_WATCHED_RUN = """
import sys, threading
from batchdeps.run import session
seen = []
start = threading.Thread.start
def watched_start(self):
    seen.append(self.name)
    start(self)
threading.Thread.start = watched_start
make = session.make_executor
def watched_make(*args, **kwargs):
    seen.append("executor made")
    return make(*args, **kwargs)
session.make_executor = watched_make
import atexit
atexit.register(lambda: print("SEEN", [s for s in seen if s.startswith(("batchdeps-import",
                                                                          "batchdeps-after",
                                                                          "executor"))],
                              "distributed" in sys.modules))
sys.argv[0] = "batchdeps"
from batchdeps.cli import main
main()
"""


def _watched(tmp_path: Path, *args: str, config: str = "",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "wpipe.py").write_text(ONE_FILE_TASK)
    (tmp_path / "config.toml").write_text('[batchdeps]\nmodules = ["wpipe"]\n'
                                          'task_logs = "off"\n[history]\nenabled = false\n'
                                          + config)
    return subprocess.run([sys.executable, "-c", _WATCHED_RUN, "run", "Out", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), **(env or {})})


def _seen(done: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in done.stdout.splitlines() if line.startswith("SEEN"))


def _watched_run(tmp_path: Path, *args: str) -> str:
    done = _watched(tmp_path, *args)
    assert done.returncode in (0, 1), done.stderr
    return _seen(done)


def test_only_a_dask_run_imports_distributed_and_it_starts_before_the_executor(
        tmp_path: Path) -> None:
    """`batchdeps run --executor dask` starts importing `distributed` in a thread before
    the executor is made (during resolution); with the local executor, or a dry run,
    no such thread starts and nothing of Dask is loaded."""
    (tmp_path / "local").mkdir()
    assert _watched_run(tmp_path / "local", "--executor", "local", "--workers", "2") == \
        "SEEN ['executor made'] False"
    (tmp_path / "dry").mkdir()
    assert _watched_run(tmp_path / "dry", "--executor", "dask", "--dry-run") == \
        "SEEN [] False"
    # looked up, not imported: importing distributed in this process would install tblib's
    # pickling for every exception class, and change what later tests see
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("distributed is not installed")
    (tmp_path / "dask").mkdir()
    assert _watched_run(tmp_path / "dask", "--executor", "dask", "--workers", "1") == \
        "SEEN ['batchdeps-import-distributed', 'executor made'] True"
    assert (tmp_path / "dask/out/out.txt").read_text() == "x"


def test_with_a_scheduler_address_the_import_thread_then_connects(tmp_path: Path) -> None:
    """`--scheduler ADDRESS`: once the import of `distributed` is done, a thread of its own
    connects to the scheduler while the main thread goes on, and the executor takes that
    connection, or its error: here nothing listens at the address, and the run says so."""
    if importlib.util.find_spec("distributed") is None:  # not imported here (see above)
        pytest.skip("distributed is not installed")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    done = _watched(tmp_path, "--scheduler", address,
                    config=f'[executor]\nshared_paths = ["{tmp_path}"]\n',
                    env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert done.returncode == 1, done.stderr
    assert f"cannot reach the Dask scheduler at {address}" in done.stderr
    assert "Traceback" not in done.stderr
    seen = _seen(done)
    assert seen.startswith("SEEN ['batchdeps-import-distributed', ") and seen.endswith("True")
    assert "'batchdeps-after-import'" in seen and "'executor made'" in seen, seen
    assert not (tmp_path / "out").exists()
