"""The lock server: an aiohttp application in front of the SQLite lease table.

Imported only by `batchdeps lock-server`. Handlers run on one event loop and call the
store synchronously, so each request's read-modify-write is atomic. Every request must
carry the shared token (compared in constant time); bodies are size-limited and each
client address is rate-limited. A malformed request gets a 4xx and changes nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import UsageError
from . import protocol as p
from .store import LeaseLost, LeaseRow, LeaseStore

log = logging.getLogger("batchdeps.lock_server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _lease_json(lease: LeaseRow, now_wall: float) -> dict[str, Any]:
    return {
        "key": lease.key,
        "token": lease.token,
        "holder": lease.holder.to_json(),
        "holder_text": lease.holder.describe(),
        "ttl": lease.ttl,
        "age": max(0.0, now_wall - lease.granted_at),
        "expires_in": max(0.0, lease.expires_in),
    }


class RateLimiter:
    """A token bucket per client address: `rate` requests/s, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, address: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) > 10_000:  # forget idle addresses; bounded memory
            self._buckets.clear()
        if tokens < 1:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1, now)
        return True


class GroupSync:
    """Makes grants durable before they are announced, with one fsync for all that piled up.

    While one fsync runs in a thread the event loop keeps serving; the grants committed
    meanwhile wait for the next fsync together.
    """

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.synced = 0  # store.grants covered by a finished fsync
        self._running: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        target = self.store.grants
        while self.synced < target:
            if self._running is None:
                self._running = asyncio.ensure_future(self._sync())
            await asyncio.shield(self._running)

    async def _sync(self) -> None:
        upto = self.store.grants
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.store.sync)
            self.synced = max(self.synced, upto)
        finally:
            self._running = None


class LockServer:
    """Routes of the lock protocol over one LeaseStore."""

    def __init__(self, store: LeaseStore, token: str, rate: float = 2000.0) -> None:
        self.store = store
        self.token = token.encode()
        self.limiter = RateLimiter(rate, max(rate, 1.0))
        self.durable = GroupSync(store)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=p.MAX_BODY_BYTES,
                              middlewares=[self._guard])
        handlers: dict[str, Handler] = {
            "health": self.health, "acquire": self.acquire,
            "acquire_many": self.acquire_many,
            "acquire_resource": self.acquire_resource, "renew": self.renew,
            "check": self.check, "release": self.release, "release_many": self.release_many,
            "holder": self.holder, "leases": self.leases,
        }
        for name, (method, path) in p.ROUTES.items():
            app.router.add_route(method, path, handlers[name])
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Token, rate limit, body size, and a 4xx/500 instead of a crash for anything."""
        address = request.remote or "?"
        if not self.limiter.allow(address):
            return _error(p.TOO_MANY_REQUESTS, "too many requests; slow down", **{"Retry-After": "1"})
        if self.token:
            given = request.headers.get("Authorization", "")
            expected = b"Bearer " + self.token
            if not hmac.compare_digest(given.encode("utf-8", "replace"), expected):
                return _error(p.UNAUTHORIZED, "missing or wrong lock token (BATCHDEPS_LOCK_TOKEN)")
        if request.content_length is not None and request.content_length > p.MAX_BODY_BYTES:
            return _error(p.TOO_LARGE, f"request body over {p.MAX_BODY_BYTES} bytes")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason or "bad request")
        except p.ProtocolError as exc:
            return _error(p.BAD_REQUEST, str(exc))
        except Exception:  # a bug: answer 500, keep serving; the store is unchanged or whole
            log.exception("request %s %s failed", request.method, request.path)
            return _error(p.SERVER_ERROR, "internal error (see the server log)")

    @staticmethod
    async def _body(request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise p.ProtocolError("the body must be JSON (Content-Type: application/json)")
        raw = await request.read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise p.ProtocolError(f"the body is not valid JSON: {exc}") from None

    # -- routes ------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "leases": len(self.store.live())})

    async def acquire(self, request: web.Request) -> web.Response:
        req = p.parse_acquire(await self._body(request))
        granted, lease = self.store.acquire(req.key, req.holder, req.ttl)
        assert lease is not None
        if granted:
            await self.durable.wait()
        body = _lease_json(lease, time.time())
        body["granted"] = granted
        if not granted:
            del body["token"]
        return web.json_response(body)

    async def acquire_many(self, request: web.Request) -> web.Response:
        req = p.parse_acquire_many(await self._body(request))
        results: list[dict[str, Any]] = []
        any_granted = False
        now = time.time()
        for key in req.keys:
            granted, lease = self.store.acquire(key, req.holder, req.ttl)
            assert lease is not None
            body = _lease_json(lease, now)
            body["granted"] = granted
            if granted:
                any_granted = True
            else:
                del body["token"]
            results.append(body)
        if any_granted:
            await self.durable.wait()  # one fsync for the whole batch
        return web.json_response({"results": results})

    async def acquire_resource(self, request: web.Request) -> web.Response:
        req = p.parse_resource(await self._body(request))
        lease = self.store.acquire_resource(req.name, req.slots, req.holder, req.ttl)
        if lease is None:
            return web.json_response({"granted": False, "name": req.name})
        await self.durable.wait()
        body = _lease_json(lease, time.time())
        body["granted"] = True
        return web.json_response(body)

    async def renew(self, request: web.Request) -> web.Response:
        req = p.parse_renew(await self._body(request))
        renewed: list[dict[str, Any]] = []
        lost: list[dict[str, Any]] = []
        for key, token in req.leases:
            try:
                lease = self.store.renew(key, token, req.holder)
            except LeaseLost as exc:
                lost.append({"key": key, "token": token, "reason": str(exc)})
            else:
                renewed.append({"key": key, "token": token, "expires_in": lease.expires_in})
        return web.json_response({"renewed": renewed, "lost": lost})

    async def check(self, request: web.Request) -> web.Response:
        ref = p.parse_lease_ref(await self._body(request))
        try:
            lease = self.store.renew(ref.key, ref.token, ref.holder)
        except LeaseLost as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=p.LEASE_LOST)
        return web.json_response({"ok": True, "expires_in": lease.expires_in})

    async def release(self, request: web.Request) -> web.Response:
        ref = p.parse_lease_ref(await self._body(request))
        return web.json_response({"released": self.store.release(ref.key, ref.token, ref.holder)})

    async def release_many(self, request: web.Request) -> web.Response:
        req = p.parse_release_many(await self._body(request))
        return web.json_response({"released": [
            self.store.release(key, token, req.holder) for key, token in req.leases]})

    async def holder(self, request: web.Request) -> web.Response:
        req = p.parse_key(await self._body(request))
        lease = self.store.get(req.key)
        if lease is None:
            return web.json_response({"held": False, "key": req.key})
        body = _lease_json(lease, time.time())
        body["held"] = True
        return web.json_response(body)

    async def leases(self, request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response({"leases": [_lease_json(l, now) for l in self.store.live()]})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DB_LOCKS: list[int] = []  # kept open for the life of the process


def _lock_database(db: str) -> None:
    """One server per database: two would each think they alone grant leases."""
    import fcntl
    import os

    try:
        fd = os.open(db + ".server-lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot open the lease database {db}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"another lock server is already using {db}; run one server per "
                         "database") from None
    _DB_LOCKS.append(fd)


def serve(host: str, port: int, db: str, token: str, cert: str | None = None,
          key: str | None = None, rate: float = 2000.0) -> None:
    """Run the server until SIGINT/SIGTERM; prints `listening on URL` once bound."""
    if not token and not is_loopback(host):
        raise UsageError(f"refusing to listen on {host} without a token: set "
                         "BATCHDEPS_LOCK_TOKEN (or listen on 127.0.0.1)")
    if bool(cert) != bool(key):
        raise UsageError("--cert and --key go together: give both for TLS, or neither")
    ssl_context = None
    if cert and key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    _lock_database(db)
    try:
        store = LeaseStore(db)
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: one clear message
        raise UsageError(f"cannot open the lease database {db}: {exc}") from None
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                    else socket.AF_INET, reuse_port=False)
    except OSError as exc:
        store.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    asyncio.run(_serve(LockServer(store, token, rate), sock, ssl_context))


async def _serve(server: LockServer, sock: socket.socket,
                 ssl_context: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    scheme = "https" if ssl_context else "http"
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"listening on {scheme}://{shown}:{bound_port} "
          f"({len(server.store.live())} live leases loaded from {server.store.path})", flush=True)
    if not server.token:
        log.warning("no BATCHDEPS_LOCK_TOKEN set: every request is accepted (loopback only)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    server.store.close()
