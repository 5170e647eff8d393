"""Reaching a Dask cluster's scheduler: the client, its worker threads, its dashboard's link.

`batchdeps run --scheduler ADDRESS` connects early: `start_early` runs in the thread that
imports `distributed` (dask_import.py), as soon as that import is done and while the main
thread still resolves the plan, so that the connection's round trips to the scheduler wait
on the network beside the resolution instead of after it. The executor then takes that
connection (`connect`), or connects there and then when none was started (the Python API,
or another address). A connection nobody took (nothing to run, a run refused) is closed
at exit.

The dashboard's link is printed only when the scheduler serves a dashboard: Dask names
the port of the scheduler's HTTP server "dashboard" even when it runs without one (`dask
scheduler --no-dashboard`; a LocalCluster with `dashboard_address=None`), and that server
then answers only its health and metrics routes. So the link is given once its page
answers.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..errors import ExecutorError, UsageError
from . import dask_import

#: Seconds to reach a scheduler given by address, when Dask's config does not say.
CONNECT_TIMEOUT = 30.0
#: Seconds the dashboard's page may take to answer before no link is printed.
DASHBOARD_TIMEOUT = 2.0

#: Connections started early, by address, until the executor takes them.
_early: dict[str, Future[Connection]] = {}
_LOCK = threading.Lock()


@dataclass
class Connection:
    """A client connected to a scheduler, and what one look at the scheduler told."""

    client: Any  # distributed.Client
    threads: int  # worker threads in the cluster (at least 1)
    dashboard: str | None  # the dashboard's link (and a note), None: no dashboard


def start_early(address: str) -> None:
    """Connect to `address` once `distributed` is imported, in a thread (see the module
    docstring); the executor's `connect(address)` takes the result, or its error."""
    future: Future[Connection] = Future()
    with _LOCK:
        if address in _early:
            return
        _early[address] = future

    def work() -> None:
        try:
            connection = _connect(address)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever takes it
            future.set_exception(exc)
            return
        # Registered after `distributed`'s own exit handlers: it runs before them.
        atexit.register(_close_untaken)
        future.set_result(connection)

    dask_import.start_in_background(work)


def connect(address: str) -> Connection:
    """The connection to the scheduler at `address`: the one started early, else a new one.

    Raises:
        ExecutorError: the scheduler cannot be reached (exit 1).
        UsageError: `address` is not a Dask scheduler address (exit 2).
    """
    with _LOCK:
        early = _early.pop(address, None)
    try:
        return early.result() if early is not None else _connect(address)
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(f"cannot reach the Dask scheduler at {address}: "
                            f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
    except ValueError as exc:
        raise UsageError(f"--scheduler {address}: not a Dask scheduler address "
                         f"({exc})") from None


def _connect(address: str) -> Connection:
    dask_import.load()
    import dask
    from distributed.client import Client

    quiet_logs()
    # Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s).
    timeout = dask.config.get("distributed.comm.timeouts.connect", CONNECT_TIMEOUT)
    client = Client(address, timeout=timeout, set_as_default=False)
    try:
        # One look at the scheduler for both (`Client.nthreads()` and
        # `Client.dashboard_link` take one each, and the latter imports the scheduler's
        # module).
        info = client.scheduler_info(n_workers=-1)
        threads = sum(int(worker.get("nthreads", 0))
                      for worker in info.get("workers", {}).values())
        host = client.scheduler.address.split("://")[-1].rsplit(":", 1)[0]
        return Connection(client, max(1, threads), dashboard_link(host, info))
    except BaseException:
        with contextlib.suppress(Exception):
            client.close(timeout=2)
        raise


def quiet_logs() -> None:
    """The cluster's own chatter below warnings."""
    with contextlib.suppress(Exception):
        logging.getLogger("distributed").setLevel(logging.ERROR)


def dashboard_link(host: str, info: dict[str, Any]) -> str | None:
    """The link to the dashboard of the scheduler on `host` whose `scheduler_info` is
    `info`, if its page answers (see the module docstring); else None."""
    port = info.get("services", {}).get("dashboard")
    if not port:
        return None
    import http.client
    import urllib.request

    try:
        from distributed.utils import format_dashboard_link

        link = str(format_dashboard_link(host, port))
        # Straight to the scheduler's host, as the client itself connects: no proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(link, timeout=DASHBOARD_TIMEOUT) as response:
            if response.status != 200:
                return None
            page = response.read(4096)
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None  # a 404 (no dashboard), or no answer: no link to give
    if b"bokeh" in page and b"for the dashboard" in page:  # Dask's page when bokeh is missing
        return f"{link} (the scheduler lacks bokeh, which the dashboard needs)"
    return link


def _close_untaken() -> None:
    with _LOCK:
        futures = list(_early.values())
        _early.clear()
    for future in futures:
        if future.done() and future.exception() is None:
            with contextlib.suppress(Exception):
                future.result().client.close(timeout=2)
