"""The Dask executor: each attempt's `run()` on a Dask worker; the runner keeps the rest.

`--executor dask` (or `[executor] kind = "dask"`) submits one Dask task per attempt. The
runner stays the brain: resolution, leases, the fence check, commits, retries, timeouts,
history and the exit code never leave it. A worker runs `dask_attempt.run_attempt`: the
attempt in a killable process, its writes handed back as a `Staging` on storage that the
runner reaches (an fsspec URL such as s3://, or a local path every worker shares).

* No address: a `distributed.LocalCluster` of `--workers` processes on this machine, one
  thread each, started for the run and closed after it; its local paths are shared by
  construction. With `--scheduler ADDRESS` (or `[executor] address`) the run uses that
  cluster, and a local output path outside `[executor] shared_paths` is refused before
  anything runs.
* A lost worker fails the attempt (the retry policy decides what follows): our own cluster
  runs with `allowed-failures = 0`, so Dask does not re-run it elsewhere on its own; on
  another scheduler the runner hears of the worker's removal and cancels the attempt, whose
  re-run Dask may have started (it commits nothing: only the runner commits).
* A stop (SIGINT/SIGTERM, or the runner's end) cancels the attempts; each worker then ends
  its attempt's process group and says so, and `terminate()` waits for that.
* The timeout is enforced on the worker (the attempt's process group is killed); the runner
  keeps a backstop deadline a little later for a worker that does not answer.

`distributed` is imported only by a run with this executor, and only its client side
(dask_import.py). The command line starts that import in a thread as soon as it knows the
run uses Dask, so that it overlaps what the run does first that waits on I/O (outputs
checked on S3, the lock server); the executor's own import then finds it done, or waits
for it. With a scheduler address that thread then connects too (dask_connect.py), and
the executor takes the connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import UsageError
from . import dask_connect, dask_import
from .dask_attempt import TOPIC, AttemptReply, AttemptRequest, run_attempt
from .executors import ExecutorSettings, Outcome

if TYPE_CHECKING:
    from ..resolver import Plan, Step

log = logs.get()

#: Seconds past a task's timeout (and the kill grace) after which the runner gives up on
#: a worker that has not answered.
BACKSTOP = 30.0
#: Attempts handed to the cluster per worker thread (running and queued).
QUEUE_DEPTH = 2


def check_shared(plan: Plan | None, shared_paths: list[str]) -> None:
    """Refuse outputs that workers on other machines cannot reach: a local path outside
    every shared path, or an in-memory file system (UsageError naming task and path)."""
    if plan is None:
        return
    shared = [os.path.realpath(path) for path in shared_paths]
    for step in plan.steps:
        for target in step.outputs:
            url = getattr(target, "url", "")
            if url.startswith("memory://"):
                raise UsageError(f"{step.task_id}: output {url} is in this process's memory, "
                                 "which Dask workers cannot reach; use s3:// or a shared path")
            if not getattr(target, "on_local_disk", False):
                continue
            path = os.path.realpath(getattr(target, "path", url))
            if not any(path == root or path.startswith(root.rstrip(os.sep) + os.sep)
                       for root in shared):
                where = ", ".join(shared_paths) if shared_paths else "none declared"
                raise UsageError(
                    f"{step.task_id}: output {url} ({path}) is a local path the Dask workers "
                    f"may not reach; put it on shared storage (s3://...) or under a folder "
                    f"named in [executor] shared_paths ({where})")


@dataclass
class _Attempt:
    future: Any  # None until `_send` hands it to the cluster
    index: int
    attempt: int
    log_path: str | None
    started: float
    backstop: float | None  # set when a worker starts it (it may wait in a queue first)
    worker: str = ""  # where it runs, once the worker said so
    timeout: float | None = None


class DaskExecutor:
    """Runs attempts as Dask tasks (see the module docstring)."""

    inline = False

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> DaskExecutor:
        dask_import.load()
        if settings.address:
            check_shared(settings.plan, settings.shared_paths)
        else:
            check_shared(settings.plan, ["/"])  # only memory:// is out of reach
        return cls(settings)

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.running: dict[int, float] = {}
        self._attempts: dict[str, _Attempt] = {}
        #: (key, result) of attempts whose Dask task ended, from the collector thread
        self._done: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._slots = max(1, settings.workers)
        self._client: Any = None
        self._cluster: Any = None
        self._topic = f"{TOPIC}-{settings.run_id}"
        self._cwd = os.getcwd()
        self._stopped: set[str] = set()
        self._completed: Any = None  # distributed.as_completed over the attempts' futures
        self._collector: threading.Thread | None = None
        self._wake = threading.Event()  # a future was added to `_completed`
        self._closing = False
        #: (key, request) of attempts submitted since the last `_send`
        self._unsent: list[tuple[str, AttemptRequest]] = []

    # -- start and stop ------------------------------------------------------------------
    def start(self, steps: list[Step]) -> None:
        """Connect to the scheduler, or start the local cluster (not for an empty plan)."""
        if not steps:
            return
        dask_import.load()
        import dask
        from distributed.client import Client, as_completed

        address = self.settings.address
        dask_connect.quiet_logs()
        if address:
            connection = dask_connect.connect(address)
            self._client, self._slots = connection.client, connection.threads
            link = connection.dashboard
        else:
            # Worker processes forked from a server that has imported distributed once,
            # rather than each spawned and importing it anew: the cluster starts in about
            # half the time, and closes in a tenth (docs/benchmarks.md, "Dask executor").
            with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                  "distributed.worker.daemon": False,
                                  "distributed.worker.multiprocessing-method": "forkserver"}):
                self._cluster = dask_import.whole().LocalCluster(
                    n_workers=max(1, self.settings.workers), threads_per_worker=1,
                    processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR)
            # Results straight from the workers (all on this machine), not through the
            # scheduler: one hop less per task.
            self._client = Client(self._cluster, set_as_default=False,
                                  direct_to_workers=True)
            link = dask_connect.dashboard_link("127.0.0.1", self._cluster.scheduler_info)
        client = self._client
        if link:
            log.info("Dask dashboard: %s (scheduler %s, %d worker thread(s))", link,
                     client.scheduler.address, self._slots)
        else:
            log.info("Dask scheduler %s (%d worker thread(s); no dashboard)",
                     client.scheduler.address, self._slots)
        # Results are fetched on the client's event loop as tasks end (concurrent fetches
        # go out as one batch) and handed to the runner by a thread: the runner never
        # blocks on one task's result while others are done.
        self._completed = as_completed([], loop=client.loop, with_results=True,
                                       raise_errors=False)
        self._collector = threading.Thread(target=self._collect, daemon=True,
                                           name="batchdeps-dask-results")
        self._collector.start()
        client.subscribe_topic(self._topic, self._events.put)
        client.subscribe_topic("all", self._on_cluster_event)
        if self.settings.upload_pipelines:
            self._upload_pipelines(steps)

    def _collect(self) -> None:
        """Put each ended attempt's (key, result) on `_done`, until the executor closes."""
        completed = self._completed
        while not self._closing:
            self._wake.wait()
            self._wake.clear()
            for future, result in completed:  # ends when no future is left in it
                self._done.put((future.key, result))

    def _on_cluster_event(self, event: Any) -> None:
        _, message = event if isinstance(event, tuple) else (None, event)
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            self._events.put({"removed": message.get("worker", ""),
                              "keys": list(message.get("processing-tasks", ()))})

    def _upload_pipelines(self, steps: list[Step]) -> None:
        """Send each task class's module file to every worker (single-file modules only)."""
        sent: set[str] = set()
        for step in steps:
            name = type(step.task).__module__
            if name in sent:
                continue
            sent.add(name)
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if not path or os.path.basename(path) == "__init__.py" or name == "__main__":
                log.warning("--upload-pipelines: %s is a package or has no file; install it "
                            "on the workers", name)
                continue
            self._client.upload_file(path)
            log.info("sent %s to the Dask workers", path)

    def close(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        self._closing = True
        self._unsent.clear()
        if client is not None and self._attempts:  # none should be left: let the thread end
            with contextlib.suppress(Exception):
                client.cancel(self._futures(self._attempts.values()))
        self._wake.set()
        if self._collector is not None:
            self._collector.join(2.0)
            self._collector = None
        if client is not None:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(self._topic)
                client.unsubscribe_topic("all")
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=10)

    # -- attempts --------------------------------------------------------------------------
    def free_slots(self) -> int:
        # One attempt queued per worker thread beyond the running ones: a thread that
        # finishes starts the next at once, without waiting for a round trip to the runner.
        return max(0, QUEUE_DEPTH * self._slots - len(self._attempts))

    def prefetch_limit(self) -> int:
        return self.free_slots() + self._slots

    def submit(self, step: Step, attempt: int, log_path: str | None = None,
               timeout: float | None = None) -> None:
        settings = self.settings
        task_logs = settings.task_logs
        request = AttemptRequest(
            run_id=settings.run_id, index=step.index, attempt=attempt, task_id=step.task_id,
            module=type(step.task).__module__,
            task_bytes=pickle.dumps(step.task, protocol=pickle.HIGHEST_PROTOCOL),
            timeout=timeout, kill_grace=settings.kill_grace,
            storage_options=settings.storage_options, cwd=self._cwd,
            log_mode=getattr(task_logs, "mode", None) if log_path else None,
            log_level=getattr(task_logs, "level", logging.INFO))
        key = f"batchdeps-{settings.run_id}-{step.index}-{attempt}"
        now = time.monotonic()
        self._attempts[key] = _Attempt(None, step.index, attempt, log_path, now, None,
                                       timeout=timeout)
        self.running[step.index] = now
        self._unsent.append((key, request))

    def _send(self) -> None:
        """Hand the attempts submitted since the last call to the cluster, in one message.

        The runner submits the attempts it can start, then waits: they go out together (one
        graph update for the scheduler instead of one each), in the order submitted."""
        if not self._unsent:
            return
        keys = [key for key, _ in self._unsent]
        requests = [request for _, request in self._unsent]
        self._unsent = []
        futures = self._client.map(run_attempt, requests, key=keys, pure=False)
        for key, future in zip(keys, futures):
            self._attempts[key].future = future
        self._completed.update(futures)
        self._wake.set()

    @staticmethod
    def _futures(attempts: Any) -> list[Any]:
        return [a.future for a in attempts if a.future is not None]

    def wait(self, timeout: float) -> list[Outcome]:
        self._send()
        outcomes: list[Outcome] = []
        ended: list[tuple[str, Any]] = []
        self._take_events(outcomes)
        with contextlib.suppress(queue.Empty):
            if not outcomes:
                ended.append(self._done.get(timeout=max(0.0, min(timeout,
                                                                 self._next_backstop()))))
            while True:
                ended.append(self._done.get_nowait())
        for key, result in ended:
            attempt = self._attempts.pop(key, None)
            if attempt is not None:  # else forgotten: lost, or past its backstop
                outcomes.append(self._outcome(attempt, result))
        self._take_events(outcomes)
        now = time.monotonic()
        for key, attempt in list(self._attempts.items()):
            if attempt.backstop is not None and now >= attempt.backstop:
                self._forget(key)
                outcomes.append(Outcome(attempt.index, attempt.attempt, False, timed_out=True,
                                        error=f"timed out: Dask worker {attempt.worker or '?'} "
                                        "did not answer after the timeout",
                                        duration=now - attempt.started, worker=attempt.worker))
        return outcomes

    def _next_backstop(self) -> float:
        deadlines = [a.backstop for a in self._attempts.values() if a.backstop is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else 3600.0

    def _take_events(self, outcomes: list[Outcome]) -> None:
        """Where attempts run, which stopped, and workers lost with attempts on them."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            message = event[1] if isinstance(event, tuple) else event
            if not isinstance(message, dict):
                continue
            if "removed" in message:
                for key in message["keys"]:
                    attempt = self._attempts.get(key)
                    if attempt is None:
                        continue
                    self._forget(key)
                    outcomes.append(Outcome(
                        attempt.index, attempt.attempt, False,
                        error=f"Dask worker {message['removed'] or attempt.worker} was lost "
                        "while running the attempt", duration=time.monotonic() - attempt.started,
                        worker=message["removed"] or attempt.worker))
                continue
            key = message.get("key")
            if message.get("stopped"):
                self._stopped.add(key)
            attempt = self._attempts.get(key)
            if attempt is not None and message.get("worker"):
                attempt.worker = message["worker"]
                if message.get("started") and attempt.timeout:
                    attempt.backstop = (time.monotonic() + attempt.timeout
                                        + self.settings.kill_grace + BACKSTOP)

    def _forget(self, key: str) -> None:
        attempt = self._attempts.pop(key)
        self.running.pop(attempt.index, None)
        if attempt.future is not None:
            with contextlib.suppress(Exception):
                attempt.future.cancel()

    def _outcome(self, attempt: _Attempt, result: Any) -> Outcome:
        """The attempt's Outcome from what its Dask task ended with: an AttemptReply, None
        (stopped on the worker), or (as `as_completed` gives them) an error's
        (type, exception, traceback) or a CancelledError."""
        self.running.pop(attempt.index, None)
        elapsed = time.monotonic() - attempt.started
        status = attempt.future.status
        if status in ("error", "cancelled") or isinstance(result, BaseException):
            exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
            name = type(exc).__name__
            if name == "KilledWorker":
                error = (f"Dask worker {attempt.worker or '?'} was lost while running the "
                         "attempt")
            elif name == "CancelledError" or status == "cancelled":
                error = "the attempt was cancelled on the Dask cluster"
            else:
                error = f"{name}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            return Outcome(attempt.index, attempt.attempt, False, error=error, duration=elapsed,
                           worker=attempt.worker)
        reply: AttemptReply | None = result
        if reply is None:
            return Outcome(attempt.index, attempt.attempt, False, duration=elapsed,
                           error="the attempt was stopped on its Dask worker",
                           worker=attempt.worker)
        if reply.log_text and attempt.log_path:
            self._write_log(attempt.log_path, reply.log_text)
        return reply.outcome.unpickled()

    @staticmethod
    def _write_log(path: str, text: str) -> None:
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)

    def terminate(self, grace: float) -> None:
        """Cancel every attempt; wait up to `grace` (and a little) for the workers to say
        that those which had started are stopped."""
        if self._client is None:
            return
        self._take_events([])
        self._unsent.clear()  # never sent: nothing to stop
        pending = dict(self._attempts)
        self._attempts.clear()
        self.running.clear()
        # Those a worker said it started, and that had not ended before the cancel.
        started = {key for key, a in pending.items() if a.worker and a.future is not None
                   and a.future.status not in ("finished", "error")}
        with contextlib.suppress(Exception):
            self._client.cancel(self._futures(pending.values()))
        deadline = time.monotonic() + grace + 2.0
        while started and time.monotonic() < deadline:
            self._take_events([])
            started -= self._stopped
            if started:
                time.sleep(0.05)

    def kill_all(self) -> None:
        """Cancel every attempt now (their workers kill their processes), without waiting."""
        self._unsent.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.cancel(self._futures(self._attempts.values()))
