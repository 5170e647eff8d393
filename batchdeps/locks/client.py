"""The lock provider over a lock server: `HttpLockProvider`, leases with heartbeats and fencing.

Requests go through `LockTransport` (locks/transport.py: HTTP, retries, error mapping),
to the replica in use; one that fails is left for the next at once (locks/replicas.py).
A heartbeat thread renews every held lease every ttl/3; leases asked for ahead
(`acquire_ahead`) are taken by an acquirer thread, so the runner does not wait for them. A lease is marked lost when the
server says it is no longer ours, or when no renewal succeeded for a whole TTL (measured
from when the last successful renewal was sent, which is never later than the server's
own expiry). Every request, releases included, is retried with backoff for up to one TTL
while no replica can be reached, so a server restart, or the loss of a replica while
another serves the same database, within the TTL goes unnoticed; after that the run stops
with LockServerUnavailable.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import logs
from ..errors import LeaseLostError, LockAuthError, LockError, LockServerUnavailable
from ..procinfo import hostname
from . import protocol as p
from .auth import WORKER, client_token
from .base import Lease
from .protocol import describe_holder
from .transport import LockTransport, NoReplicaAnswered

log = logs.get()

START_RETRY_SECONDS = 1.0


def lease_clock() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended.

    Lease ages are measured on it: `time.monotonic()` stops during a suspend on Linux, so
    a resumed client would think its lease younger than the server (which kept running)
    knows it to be, and could pass the local fence check on a lease already gone.
    """
    return time.clock_gettime(_BOOTTIME)


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
#: A lease confirmed by the server less than this part of its TTL ago passes `check()`
#: without a round trip: the server cannot have granted it to anyone else yet, since its
#: expiry is at least `confirmed_at + ttl` (confirmed_at is when the request was *sent*),
#: and a forced release keeps the key from everyone until `confirmed_at` plus this part.
LOCAL_CHECK_FRACTION = p.LOCAL_FENCE_FRACTION
#: A refused acquire's holder answers `holder()` for this long without a round trip (it
#: names the holder in a message; a run busy starting many steps may ask seconds later).
HOLDER_NOTE_SECONDS = 30.0
#: Released task leases wait this long for company, then go in one release-many request.
RELEASE_BATCH_WINDOW = 0.1
#: Bytes of an acquire's body that its keys and the releases riding along may fill.
RIDE_ALONG_BYTES = 48 * 1024
#: Room in a request body for everything but the batched keys (holder, field names).
BODY_OVERHEAD_BYTES = 4096

T = TypeVar("T")


def sent_length(key: str) -> int:
    """Characters of `key` as JSON in a request body (quotes and escapes included)."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return len(key) + 2  # nothing to escape: the common case, without encoding it
    return len(json.dumps(key))


def batches(items: list[T], key_of: Callable[[T], str]) -> Iterator[list[T]]:
    """`items` in order, cut so that no batch has more than MAX_BATCH_KEYS entries and
    its request body stays under MAX_BODY_BYTES (long task ids fill a body quickly)."""
    budget = p.MAX_BODY_BYTES - BODY_OVERHEAD_BYTES
    batch: list[T] = []
    used = 0
    for item in items:
        size = sent_length(key_of(item)) + 32  # the key as sent, its token and commas
        if batch and (len(batch) >= p.MAX_BATCH_KEYS or used + size > budget):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += size
    if batch:
        yield batch


@dataclass
class _Held:
    """Client-side bookkeeping of one held lease."""

    confirmed_at: float  # lease_clock() time the last successful grant/renewal was sent


@dataclass
class _Ahead:
    """The answer to a lease asked for ahead, once the acquirer thread has it."""

    done: threading.Event = field(default_factory=threading.Event)
    lease: Lease | None = None
    error: BaseException | None = None


def _key(lease: Lease) -> str:
    return lease.key


class HttpLockProvider:
    """LockProvider backed by a batchdeps lock server."""

    def __init__(self, url: str | Sequence[str], token: str = "", ttl: float = 30.0,
                 run_id: str | None = None, request_timeout: float | None = None) -> None:
        self.ttl = max(p.MIN_TTL, float(ttl))
        # A replica that does not answer costs at most request_timeout before the next is
        # tried: a third of the TTL, so a renewal still gets through another within it.
        self.transport = LockTransport(
            url, token or client_token(),
            request_timeout=request_timeout or min(10.0, max(1.0, self.ttl / 3)),
            retry_for=self.ttl)
        self.me = p.Holder(hostname()[: p.MAX_HOST_CHARS], os.getpid(),
                           (run_id or uuid.uuid4().hex[:12])[: p.MAX_RUN_ID_CHARS])
        self._lock = threading.Lock()  # guards _held and lease flags
        self._held: dict[Lease, _Held] = {}
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._to_release: list[Lease] = []  # task leases given back, not yet sent
        self._sending = threading.Lock()  # held while a batch of releases is taken and sent
        self._release_wanted = threading.Event()
        self._releaser: threading.Thread | None = None
        self._refused_by: dict[str, tuple[float, str]] = {}  # key -> (when, holder text)
        self._ahead: dict[str, _Ahead] = {}  # key -> answer asked for ahead, not claimed
        self._ahead_queue: list[tuple[str, _Ahead]] = []  # asked for ahead, not yet sent
        self._ahead_wanted = threading.Event()
        self._acquirer: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The replica in use."""
        return self.transport.url

    def _call(self, route: str, body: Any = None, retry_for: float | None = None) -> tuple[int, Any]:
        return self.transport.call(route, body, retry_for)

    def _release_budget(self) -> float:
        """How long a release is retried: one TTL, like every request, unless the server was
        already found unreachable for a whole TTL (the run is stopping; the lease frees by
        its TTL)."""
        return 0.0 if self.transport.unreachable else self.ttl

    # -- LockProvider --------------------------------------------------------------------------
    def start(self) -> None:
        """Check that the server answers and that our token may take leases; nothing has
        run yet."""
        _, data = self._call("whoami", retry_for=START_RETRY_SECONDS)
        roles = data.get("roles", []) if isinstance(data, dict) else []
        if WORKER not in roles:
            raise LockAuthError(f"lock server {self.url}: this token has the role(s) "
                                f"{', '.join(roles) or 'none'}; a run needs {WORKER}")

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None:
            with self._lock:  # grants come from the runner's thread and the acquirer's
                if self._heartbeat is not None:
                    return
                self._heartbeat = threading.Thread(target=self._heartbeat_loop,
                                                   name="batchdeps-lease-heartbeat",
                                                   daemon=True)
                self._heartbeat.start()

    def _granted(self, key: str, data: Any, sent_at: float) -> Lease:
        lease = Lease(key=key, fencing_token=int(data["token"]))
        with self._lock:
            self._held[lease] = _Held(sent_at)
        self._ensure_heartbeat()
        return lease

    def _acquire_call(self, route: str, body: dict[str, Any], keys: list[str],
                      give_up: threading.Event | None = None) -> Any:
        """Send an acquire with this run's queued releases riding along (the server frees
        them first), so a finished task's release costs no request of its own.

        `_sending` is held throughout: no release batch of ours is on its way meanwhile.
        That matters because the server answers an acquire by the same holder with the same
        token, so a release of an earlier grant that reached it after a new acquire of the
        same key would free the new grant.
        """
        room = RIDE_ALONG_BYTES - sum(sent_length(key) + 32 for key in keys)
        with self._sending:
            with self._lock:
                riding: list[Lease] = []
                for lease in self._to_release:
                    room -= sent_length(lease.key) + 32
                    if room < 0 or len(riding) >= p.MAX_BATCH_KEYS:
                        break
                    riding.append(lease)
                del self._to_release[:len(riding)]
                wanted = set(keys)
                left_behind = any(lease.key in wanted for lease in self._to_release)
            if left_behind:  # too many to ride along: send them first
                self._send_releases()
            if riding:
                body["release"] = [{"key": l.key, "token": l.fencing_token} for l in riding]
            try:
                _, data = self.transport.call(route, body, give_up=give_up)
            except BaseException:
                with self._lock:
                    self._to_release[:0] = riding  # for the releaser or close() to send
                raise
        return data

    def try_acquire(self, key: str) -> Lease | None:
        ahead = self._claim(key)
        if ahead is not None:
            return self._answer_of(ahead)
        sent_at = lease_clock()
        data = self._acquire_call("acquire", {"key": key, "holder": self.me.to_json(),
                                              "ttl": self.ttl}, [key])
        if not data.get("granted"):
            self._note_holder(key, data)
            return None
        return self._granted(key, data, sent_at)

    def _note_holder(self, key: str, answer: Any) -> None:
        """Remember who held `key` when an acquire was refused: `holder()` asked right after
        (the runner's "waiting for X, held by ...") then needs no round trip."""
        text = describe_holder(answer.get("holder")) if isinstance(answer, dict) else ""
        with self._lock:
            if len(self._refused_by) > 4096:
                self._refused_by.clear()
            self._refused_by[key] = (lease_clock(), text)

    def try_acquire_many(self, keys: list[str]) -> list[Lease | None]:
        """`try_acquire` for many keys, in one request per MAX_BATCH_KEYS keys (keys asked
        for ahead get that answer instead)."""
        claimed = {key: ahead for key in keys if (ahead := self._claim(key)) is not None}
        asked = iter(self._acquire_keys([key for key in keys if key not in claimed]))
        return [self._answer_of(claimed[key]) if key in claimed else next(asked)
                for key in keys]

    def _acquire_keys(self, keys: list[str],
                      give_up: threading.Event | None = None) -> list[Lease | None]:
        """Acquire-many requests for `keys`: a Lease or None (held elsewhere) for each."""
        results: list[Lease | None] = []
        for chunk in batches(keys, str):
            sent_at = lease_clock()
            data = self._acquire_call("acquire_many", {
                "keys": chunk, "holder": self.me.to_json(), "ttl": self.ttl, "brief": True},
                chunk, give_up=give_up)
            answers = data.get("results") if isinstance(data, dict) else None
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise LockError(f"lock server {self.url} gave a malformed acquire-many answer")
            for key, answer in zip(chunk, answers):
                granted = isinstance(answer, dict) and answer.get("granted")
                if not granted:
                    self._note_holder(key, answer)
                results.append(self._granted(key, answer, sent_at) if granted else None)
        return results

    # -- leases asked for ahead ------------------------------------------------------------
    def acquire_ahead(self, keys: list[str]) -> None:
        """Have the acquirer thread take the leases of `keys` (one acquire-many for all
        that are asked for before it sends, releases riding along); `try_acquire` of one
        of them then answers from it."""
        with self._lock:
            for key in keys:
                if key not in self._ahead:
                    ahead = self._ahead[key] = _Ahead()
                    self._ahead_queue.append((key, ahead))
            if self._acquirer is None:
                self._acquirer = threading.Thread(target=self._acquire_loop,
                                                  name="batchdeps-lease-acquirer", daemon=True)
                self._acquirer.start()
        self._ahead_wanted.set()

    def _claim(self, key: str) -> _Ahead | None:
        with self._lock:
            return self._ahead.pop(key, None) if self._ahead else None

    @staticmethod
    def _answer_of(ahead: _Ahead) -> Lease | None:
        ahead.done.wait()
        if ahead.error is not None:
            raise ahead.error
        return ahead.lease

    def _acquire_loop(self) -> None:
        while True:
            self._ahead_wanted.wait()
            self._ahead_wanted.clear()
            with self._lock:
                queued, self._ahead_queue = self._ahead_queue, []
            for chunk in batches(queued, lambda item: item[0]):
                self._send_ahead(chunk)
            if self._stop.is_set():
                return

    def _send_ahead(self, chunk: list[tuple[str, _Ahead]]) -> None:
        """One acquire-many for leases asked for ahead; each waiting answer is set (the
        error, should the request fail, is raised by the `try_acquire` that claims it).
        Retried for one TTL like any request, unless the provider is closing."""
        try:
            leases = self._acquire_keys([key for key, _ in chunk], give_up=self._stop)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever claims the answer
            for _, ahead in chunk:
                ahead.error = exc
                ahead.done.set()
            return
        for (_, ahead), lease in zip(chunk, leases):
            ahead.lease = lease
            ahead.done.set()

    def try_acquire_resource(self, name: str, slots: int) -> Lease | None:
        sent_at = lease_clock()
        _, data = self._call("acquire_resource", {"name": name, "slots": int(slots),
                                                  "holder": self.me.to_json(), "ttl": self.ttl})
        if not data.get("granted"):
            return None
        return self._granted(str(data["key"]), data, sent_at)

    def holder(self, key: str) -> str:
        with self._lock:
            noted = self._refused_by.pop(key, None)
        if noted is not None and noted[1] and lease_clock() - noted[0] < HOLDER_NOTE_SECONDS:
            return noted[1]
        try:
            _, data = self._call("holder", {"key": key}, retry_for=min(self.ttl, 5.0))
        except LockServerUnavailable:
            return ""
        return describe_holder(data.get("holder")) if data.get("held") else ""

    def _mark_lost(self, lease: Lease, reason: str) -> None:
        with self._lock:
            already = lease.lost
            lease.lost = True
            lease.lost_reason = reason
            self._held.pop(lease, None)
        if not already:
            log.warning("lease on %s lost: %s", lease.key, reason)

    def check(self, lease: Lease) -> None:
        """Raise LeaseLostError unless `lease` is still ours.

        A lease confirmed within the last LOCAL_CHECK_FRACTION of its TTL is ours without
        asking; an older one (a worker paused past its lease, a slow attempt) is checked
        with the server, which also extends it.
        """
        if not lease.lost:
            with self._lock:
                held = self._held.get(lease)
            remaining = (held.confirmed_at + self.ttl - lease_clock()) if held else 0.0
            if remaining > self.ttl * (1 - LOCAL_CHECK_FRACTION):
                return
            sent_at = lease_clock()
            try:
                status, data = self._call("check", {"key": lease.key,
                                                    "token": lease.fencing_token,
                                                    "holder": self.me.to_json()},
                                          retry_for=max(0.0, remaining))
            except LockServerUnavailable as exc:
                self._mark_lost(lease, f"the lock server could not confirm it in time ({exc})")
            else:
                if status == p.LEASE_LOST:
                    self._mark_lost(lease, str(data.get("error", "taken over")))
                else:
                    with self._lock:
                        if lease in self._held:
                            self._held[lease].confirmed_at = sent_at
                    return
        raise LeaseLostError(f"lease on {lease.key} lost (fencing token "
                             f"{lease.fencing_token}): {lease.lost_reason}; its outputs were "
                             "not committed")

    def release(self, lease: Lease) -> None:
        """Give `lease` back. Task leases are queued and sent together a moment later by a
        background thread; resource slots, which this run may want again at once, now."""
        with self._lock:
            held = self._held.pop(lease, None)
            if held is not None and not lease.key.startswith(p.RESOURCE_PREFIX):
                self._to_release.append(lease)
                queued = True
            else:
                queued = False
        if held is None:
            return
        if queued:
            if self._releaser is None and not self._stop.is_set():
                self._releaser = threading.Thread(target=self._release_loop,
                                                  name="batchdeps-lease-release", daemon=True)
                self._releaser.start()
            self._release_wanted.set()
            return
        try:
            self._call("release", {"key": lease.key, "token": lease.fencing_token,
                                   "holder": self.me.to_json()},
                       retry_for=self._release_budget())
        except LockError as exc:  # the lease frees itself when its TTL runs out
            log.warning("could not release the lease on %s: %s", lease.key, exc)

    def _release_loop(self) -> None:
        while not self._stop.is_set():
            self._release_wanted.wait()
            if self._stop.is_set():
                return
            time.sleep(RELEASE_BATCH_WINDOW)
            self._release_wanted.clear()
            self.flush_releases()

    def flush_releases(self) -> None:
        """Send every queued release; a lease that cannot be released frees by its TTL."""
        with self._sending:
            self._send_releases()

    def _send_releases(self) -> None:
        with self._lock:
            leases, self._to_release = self._to_release, []
        for chunk in batches(leases, _key):
            body = {"holder": self.me.to_json(),
                    "leases": [{"key": l.key, "token": l.fencing_token} for l in chunk]}
            try:
                self._call("release_many", body, retry_for=self._release_budget())
            except LockError as exc:
                log.warning("could not release %d lease(s) (%s ...): %s", len(chunk),
                            chunk[0].key, exc)

    def close(self) -> None:
        self._stop.set()
        self._release_wanted.set()
        self._ahead_wanted.set()
        if self._acquirer is not None:  # its grants are then held, and released below
            self._acquirer.join(timeout=self.transport.request_timeout + 1)
        if self._releaser is not None:
            self._releaser.join(timeout=self.transport.request_timeout + 1)
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.transport.request_timeout + 1)
        with self._lock:
            leases = list(self._held)
        for lease in leases:
            self.release(lease)
        self.flush_releases()
        self.transport.close()

    # -- heartbeat -----------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = self.ttl / 3
        wait = interval
        while not self._stop.wait(wait):
            wait = interval
            with self._lock:
                held = list(self._held)
            for leases in batches(held, _key):
                if not self._renew(leases):
                    wait = min(interval, 1.0)  # retry sooner while the server is away

    def _renew(self, leases: list[Lease]) -> bool:
        """One renew request for `leases`; False when it failed (they may then be lost)."""
        sent_at = lease_clock()
        body = {"holder": self.me.to_json(),
                "leases": [{"key": l.key, "token": l.fencing_token} for l in leases]}
        try:
            _, data = self.transport.once("renew", body)  # through any replica, no waiting
        except NoReplicaAnswered as exc:
            self._renew_failed(leases, str(exc))
            return False
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._renew_failed(leases, f"{type(exc).__name__}: {exc}")
            return False
        if not isinstance(data, dict) or "renewed" not in data:
            self._renew_failed(leases, f"unexpected answer {str(data)[:200]}")
            return False
        renewed = {(item["key"], item["token"]) for item in data.get("renewed", [])}
        lost = {(item["key"], item["token"]): item.get("reason", "")
                for item in data.get("lost", [])}
        for lease in leases:
            ident = (lease.key, lease.fencing_token)
            if ident in renewed:
                with self._lock:
                    if lease in self._held:
                        self._held[lease].confirmed_at = sent_at
            elif ident in lost:
                with self._lock:
                    still_held = lease in self._held  # not released meanwhile
                if still_held:
                    self._mark_lost(lease, lost[ident] or "refused by the lock server")
        return True

    def _renew_failed(self, leases: list[Lease], problem: str) -> None:
        now = lease_clock()
        for lease in leases:
            with self._lock:
                held = self._held.get(lease)
            if held is not None and now - held.confirmed_at >= self.ttl:
                self._mark_lost(lease, f"no renewal succeeded for {self.ttl:g} s "
                                       f"(lock server unreachable: {problem})")
