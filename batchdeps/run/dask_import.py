"""Importing the part of Dask distributed that the runner uses, in less time than all of it.

`import distributed` runs the package's `__init__`, which imports the scheduler, the nanny,
every kind of cluster, actors, locks, queues and progress bars: a client uses none of them.
And dask and distributed read their default settings (two YAML files, over a thousand
lines) with PyYAML's pure-Python loader. `load()` imports `distributed.config` and
`distributed.client` below a package module whose `__init__` has not run yet, with
PyYAML's C loader (where PyYAML has it) for those files: about three quarters of the CPU
time of `import distributed` (docs/benchmarks.md, "Dask executor"). A run that starts a
LocalCluster completes the package first (`whole()`): the cluster needs the rest anyway.

The package is still whole to anyone who asks: the first attribute looked up on it that
is not a submodule (`distributed.Scheduler`, `distributed.__version__`) runs its
`__init__`, so `import distributed` elsewhere in the process goes on working, only
later. If the short way fails, the `__init__` runs at once, as a plain import would.

`start_in_background()` does the same in a thread, as soon as the command line knows that
the run uses Dask, while the plan is resolved (not a daemon: an early exit waits for it
rather than cut an import short), and can then start what needs the import (connecting
to a scheduler: dask_connect.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import UsageError

EXTRA_HINT = "pip install 'batchdeps[dask]'"
THREAD_NAME = "batchdeps-import-distributed"

#: Held while `load()` imports, so that a second caller waits for the first.
_LOCK = threading.Lock()


def start_in_background(then: Callable[[], None] | None = None) -> None:
    """Start `load()` in a thread; an ImportError is left to the caller's own `load()`.

    `then`, if given, runs once the import is done, in a daemon thread of its own (it may
    wait on the network: the process's exit does not wait for it)."""
    if "distributed" in sys.modules:
        if then is not None:
            _then(then)
        return
    threading.Thread(target=_load_quietly, args=(then,), name=THREAD_NAME).start()


def _load_quietly(then: Callable[[], None] | None) -> None:
    try:
        load()
    except Exception:  # noqa: BLE001 - the caller's own load() says what is wrong
        return
    if then is not None:
        _then(then)


def _then(then: Callable[[], None]) -> None:
    threading.Thread(target=then, name="batchdeps-after-import", daemon=True).start()


def load() -> None:
    """Import `distributed.config` and `distributed.client` (and `dask`), the short way
    when the package is not imported yet; UsageError (exit 2) naming the extra when Dask
    distributed is not installed."""
    with _LOCK:
        try:
            _load()
        except ImportError as exc:
            raise UsageError(f"--executor dask needs Dask distributed, which is not "
                             f"installed ({exc}); install the extra: {EXTRA_HINT}") from None


def _load() -> None:
    if "distributed" in sys.modules:  # imported already, or blocked (None): as it is
        import distributed.client  # noqa: F401
        return
    spec = importlib.util.find_spec("distributed")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        import distributed  # noqa: F401 - not a package as expected: the plain way
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["distributed"] = package
    with _c_yaml():
        try:
            import distributed.config  # noqa: F401 - Dask's settings for distributed first
            import distributed.client  # noqa: F401
        except Exception:  # noqa: BLE001 - whatever it was, the plain way settles it
            _complete(package, spec)
            return
    state = {"complete": False}
    lock = threading.RLock()

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook
        submodule = sys.modules.get(f"distributed.{name}")
        if submodule is not None:  # being imported (`from distributed import scheduler`
            return submodule  # inside the scheduler's own import chain)
        if _is_submodule(package, name):  # the import system loads it
            return _missing(name)
        with lock:
            if state["complete"]:  # running the __init__, or done
                return _missing(name)
            state["complete"] = True
            _complete(package, spec)
        return package.__dict__[name] if name in package.__dict__ else _missing(name)

    package.__getattr__ = __getattr__  # type: ignore[attr-defined]


def whole() -> Any:
    """The package with its `__init__` run (for what the client side lacks: LocalCluster).

    Run before importing the deploy modules: completing the package from inside their
    import chain would import them circularly."""
    load()
    import distributed

    getattr(distributed, "__version__", None)  # completes it, if it is not yet
    return distributed


def _is_submodule(package: Any, name: str) -> bool:
    from importlib.machinery import PathFinder

    return PathFinder.find_spec(f"distributed.{name}", package.__path__) is not None


def _complete(package: Any, spec: Any) -> None:
    """Run the package's own `__init__` in `package` (its submodules loaded stay)."""
    with _c_yaml():
        spec.loader.exec_module(package)


def _missing(name: str) -> Any:
    raise AttributeError(f"module 'distributed' has no attribute {name!r}")


@contextlib.contextmanager
def _c_yaml() -> Iterator[None]:
    """`yaml.safe_load` through PyYAML's C loader (the same documents, read by libyaml)."""
    try:
        import yaml
    except ImportError:
        yield
        return
    loader = getattr(yaml, "CSafeLoader", None)
    plain = yaml.safe_load
    if loader is None:
        yield
        return

    def safe_load(stream: Any) -> Any:
        return yaml.load(stream, Loader=loader)  # noqa: S506 - the safe loader, in C

    yaml.safe_load = safe_load
    try:
        yield
    finally:
        yaml.safe_load = plain
