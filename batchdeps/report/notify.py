"""Alerts when a run did not succeed: a webhook POST of JSON and/or a command, with retries.

Configured in `[notify]`: `on_failure` (a URL), `command` (run by the shell, with the same
JSON on stdin), `retries` (default 3), `retry_delay` (seconds before the first retry,
default 1; doubling, with jitter) and `timeout` (seconds per delivery, default 10). An alert
goes out when the run's exit code is not 0 (failed, missing input, lock wait timed out,
interrupted). A delivery that keeps failing is logged; it never changes the exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .. import logs
from ..backoff import Backoff
from ..errors import BatchdepsError, DeliveryError, ExitCode
from ..paths import shown_all
from ..procinfo import hostname
from .events import Event, RunFinished
from .result import BuildResult, Status

log = logs.get()

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 1.0
DEFAULT_TIMEOUT = 10.0
MAX_RETRY_DELAY = 60.0


def redact_url(url: str) -> str:
    """Scheme and host of `url` only: webhook paths and queries often hold secrets."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


def _headline(result: BuildResult) -> str:
    code = result.exit_code
    if result.interrupted:
        return "interrupted"
    if code == ExitCode.FAILED:
        return "failed"
    if code == ExitCode.MISSING_INPUT:
        return "missing input"
    if code == ExitCode.LOCK_WAIT_TIMEOUT:
        return "lock wait timed out"
    return f"exit {int(code)}"


def alert_payload(result: BuildResult, host: str | None = None) -> dict[str, Any]:
    """The JSON document an alert carries."""
    host = host or hostname()
    failed = [
        {"task_id": r.task_id, "error": r.error, "attempts": r.attempts, "log_path": r.log_path}
        for r in result.by_status(Status.FAILED)
    ]
    missing = [
        {"task_id": r.task_id, "paths": r.missing_paths or [r.error]}
        for r in result.by_status(Status.MISSING_INPUT)
    ]
    pipeline = ", ".join(result.requested)
    status = _headline(result)
    text = (f"batchdeps: {pipeline} {status} on {host} "
            f"(exit {int(result.exit_code)}, run {result.run_id})")
    error = str(result.stopped_by) if result.stopped_by is not None else ""
    if error:
        status = "error"
        text = (f"batchdeps: {pipeline} stopped by an error on {host} "
                f"(exit {int(result.exit_code)}, run {result.run_id}): {error}")
    if failed:
        text += "; failed: " + "; ".join(f"{f['task_id']}: {f['error']}" for f in failed[:10])
        if len(failed) > 10:
            text += f"; and {len(failed) - 10} more"
    if missing:
        text += "; missing: " + "; ".join(shown_all(r.missing_paths) or r.error
                                          for r in result.by_status(Status.MISSING_INPUT)[:10])
    payload: dict[str, Any] = {
        "pipeline": pipeline,
        "requested": list(result.requested),
        "status": status,
        "exit_code": int(result.exit_code),
        "run_id": result.run_id,
        "host": host,
        "elapsed": round(result.elapsed, 3),
        "counts": result.counts(),
        "failed": failed,
        "missing_inputs": missing,
        "log_paths": [f["log_path"] for f in failed if f["log_path"]],
        "text": text,
    }
    if error:
        payload["error"] = error
    return payload


class Notifier:
    """A listener that sends an alert when the run finishes with a non-zero exit code."""

    def __init__(self, webhook_url: str | None = None, command: str | None = None, *,
                 retries: int = DEFAULT_RETRIES, retry_delay: float = DEFAULT_RETRY_DELAY,
                 timeout: float = DEFAULT_TIMEOUT, cwd: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[], float] = random.random) -> None:
        self.webhook_url = webhook_url
        self.command = command
        self.retries = retries
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.cwd = cwd
        self.sleep = sleep
        self.rand = rand
        self.delivered: list[str] = []  # what went out, for callers that want to know

    listens_to = (RunFinished,)

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunFinished) and event.result.exit_code != ExitCode.OK:
            self.notify(event.result)

    def notify(self, result: BuildResult) -> None:
        """Send the alert by every configured way; log, never raise."""
        self._send(alert_payload(result))

    def notify_error(self, error: BatchdepsError, run_id: str, requested: list[str]) -> None:
        """Alert about an error that ended the run before it started (lock server down, ...)."""
        self.notify(BuildResult(run_id, requested=list(requested), stopped_by=error))

    def _send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, default=str).encode("utf-8")
        if self.webhook_url:
            url = self.webhook_url
            self._deliver(f"webhook {redact_url(url)}", lambda: self._post(url, body))
        if self.command:
            command = self.command
            self._deliver(f"command `{command}`", lambda: self._run(command, body, payload))

    def _deliver(self, what: str, send: Callable[[], None]) -> bool:
        backoff = Backoff(self.retry_delay, 2.0, MAX_RETRY_DELAY)
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - any failure of a delivery is logged, never raised
                retry = getattr(exc, "retry", True)
                if attempt >= attempts or not retry:
                    log.error("alert via %s failed after %d attempt(s): %s", what, attempt, exc,
                              extra={"event": "alert_failed"})
                    return False
                delay = backoff.delay(attempt, self.rand)
                log.warning("alert via %s failed (attempt %d of %d): %s; retrying in %.3g s",
                            what, attempt, attempts, exc, delay,
                            extra={"event": "alert_retrying"})
                self.sleep(delay)
            else:
                log.info("alert sent via %s", what, extra={"event": "alert_sent"})
                self.delivered.append(what)
                return True
        return False  # pragma: no cover - the loop always returns

    def _post(self, url: str, body: bytes) -> None:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "batchdeps"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            # 4xx other than 408/429 will not get better by trying again
            retry = exc.code >= 500 or exc.code in (408, 429)
            raise DeliveryError(f"HTTP {exc.code} {exc.reason}", retry=retry) from None
        except urllib.error.URLError as exc:
            raise DeliveryError(str(exc.reason)) from None
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None

    def _run(self, command: str, body: bytes, payload: dict[str, Any]) -> None:
        import subprocess

        env = dict(os.environ)
        env.update({
            "BATCHDEPS_RUN_ID": str(payload["run_id"]),
            "BATCHDEPS_EXIT_CODE": str(payload["exit_code"]),
            "BATCHDEPS_STATUS": str(payload["status"]),
            "BATCHDEPS_PIPELINE": str(payload["pipeline"]),
            "BATCHDEPS_FAILED": " ".join(f["task_id"] for f in payload["failed"]),
            "BATCHDEPS_TEXT": str(payload["text"]),
        })
        try:
            # a session of its own: on timeout the whole group goes, so a child that keeps
            # the pipes open cannot keep the run waiting
            process = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       cwd=self.cwd, env=env, start_new_session=True)
        except OSError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        try:
            _, stderr = process.communicate(body, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise DeliveryError(f"timed out after {self.timeout:g} s") from None
        if process.returncode != 0:
            err = stderr.decode("utf-8", "replace").strip().splitlines()
            detail = f": {err[-1]}" if err else ""
            raise DeliveryError(f"exit code {process.returncode}{detail}")


def notifier_from(config: Any) -> Notifier | None:
    """A Notifier from `[notify]`, or None when neither a URL nor a command is configured."""
    settings = config.notify
    url = settings.get("on_failure")
    command = settings.get("command")
    if not url and not command:
        return None
    if url and urlsplit(url).scheme not in ("http", "https"):
        from ..errors import ConfigError

        raise ConfigError(f"{config.where()}: [notify] on_failure must be an http:// or "
                          f"https:// URL, got {redact_url(url)!r}")
    return Notifier(
        url, command,
        retries=int(settings.get("retries", DEFAULT_RETRIES)),
        retry_delay=float(settings.get("retry_delay", DEFAULT_RETRY_DELAY)),
        timeout=float(settings.get("timeout", DEFAULT_TIMEOUT)),
        cwd=config.root,
    )
