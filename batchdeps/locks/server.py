"""The lock server: an aiohttp application in front of a lease store (SQLite or PostgreSQL).

Imported only by `batchdeps lock-server`. Handlers run on one event loop and call the
store (the `store.LeaseStore` interface, nothing else) synchronously, so each request's
read-modify-write is atomic in one process; across replicas the PostgreSQL store makes
each call atomic in the database (its `off_loop()` makes the lease changes of the
requests waiting at once together, off the loop, which never waits for the database).
Each route needs a role (`protocol.ROUTE_ROLES`, tokens in locks/auth.py); tokens are compared in constant time,
bodies are size-limited, authenticated requests and authentication failures are
rate-limited per client address in separate budgets, and connections are capped and timed
out (locks/connections.py). A malformed request gets a 4xx and changes nothing.

Other packages add routes from above: `ServerOptions.routes` (or `LockServer.add_routes`)
takes functions that register theirs on the app (the CLI passes web/'s), so this package
imports nothing of theirs.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import os
import signal
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from .. import logs
from ..errors import BatchdepsError, UsageError
from . import protocol as p
from .auth import ADMIN, NO_ROLE, TOKEN_COOKIE, Tokens, roles_text
from .connections import (
    ConnectionTable,
    GuardedProtocol,
    Limits,
    quiet_exception_handler,
    raise_file_limit,
)
from .store import (
    LeaseNotHeld,
    LeaseRow,
    LeaseStore,
    SqliteLeaseStore,
    StoreUnavailable,
    fence_window_left,
    is_postgres_url,
)

log = logs.get("batchdeps.lock_server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: adds a package's routes to a server's app: `register(server, app)`
RouteSet = Callable[["LockServer", web.Application], None]
ROLES_KEY = "batchdeps_roles"  # request[ROLES_KEY]: the roles of the request's token
T = TypeVar("T")
EXPIRY_SWEEP_SECONDS = 1.0
AUDIT_PRUNE_SECONDS = 600.0


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def lease_json(lease: LeaseRow, now_wall: float, with_token: bool = True,
               holders: dict[p.Holder, tuple[dict[str, Any], str]] | None = None
               ) -> dict[str, Any]:
    """A lease as the API shows it. `holders`: a cache of holders already described (a
    batch's answers name the same one again and again)."""
    holder = lease.holder
    described = holders.get(holder) if holders is not None else None
    if described is None:
        described = (holder.to_json(), holder.describe())
        if holders is not None:
            holders[holder] = described
    body: dict[str, Any] = {"key": lease.key}
    if with_token:
        body["token"] = lease.token
    body["holder"], body["holder_text"] = described
    body["ttl"] = lease.ttl
    body["age"] = max(0.0, now_wall - lease.granted_at)
    body["expires_in"] = max(0.0, lease.expires_in)
    return body


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


class GroupCommit:
    """Makes the lease changes of requests that arrive together in one store transaction.

    A handler hands its change (a function that calls the store and does not await) to
    `run()`. The changes handed in while the event loop serves what came in from its
    sockets in one pass are made one after another, in arrival order, inside one
    `transaction()`: SQLite then writes and commits them once, and the grants among them
    then wait for one fsync together (`GroupSync`) before any is answered. Should one
    change raise, the whole transaction is rolled back and every change of the batch is
    made again in a transaction of its own, so one bad request never fails another. A
    store whose `transaction()` groups nothing (`groups` False: PostgreSQL, where every
    call commits on its own) gets each change through its `off_loop()`, which makes the
    calls of the changes handed in meanwhile together, without the loop waiting for the
    database.
    """

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.batches = 0  # transactions made, each for one batch (or one retried change)
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    async def run(self, change: Callable[[], T]) -> T:
        """The result of `change()`, made inside a transaction shared with its batch."""
        if not self.store.groups:
            return await self.store.off_loop(change)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((change, future))
        if len(self._queue) == 1:
            loop.call_soon(self._commit)
        return await future

    def _commit(self) -> None:
        batch = [(change, future) for change, future in self._queue
                 if not future.cancelled()]  # a request gone before its turn changes nothing
        self._queue = []
        if not batch:
            return
        try:
            with self.store.transaction():
                results = [change() for change, _ in batch]
        except Exception:  # noqa: BLE001 - rolled back whole: each change on its own now
            self.one_at_a_time(batch)
            return
        finally:
            self.batches += 1
        for (_, future), result in zip(batch, results):
            if not future.cancelled():
                future.set_result(result)

    def one_at_a_time(self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]) -> None:
        """Each change of `batch` in a transaction of its own (the slow twin of a batch)."""
        for change, future in batch:
            try:
                with self.store.transaction():
                    result = change()
            except Exception as exc:  # noqa: BLE001 - this request's own error: 4xx/500/503
                if not future.cancelled():
                    future.set_exception(exc)
            else:
                if not future.cancelled():
                    future.set_result(result)
            finally:
                self.batches += 1


@dataclass
class ServerOptions:
    """Everything `batchdeps lock-server` is told, besides where to listen."""

    rate: float = 2000.0              # authenticated requests/s per client address
    auth_failure_rate: float = 5.0    # failed authentications/s per client address
    limits: Limits = field(default_factory=Limits)
    public_status: bool = False       # the status page and metrics without a token
    audit_days: float = 90.0
    history_days: float = 30.0        # run history kept (web/routes.py prunes it)
    routes: tuple[RouteSet, ...] = ()  # other packages' routes (the status page, ...)


class LockServer:
    """Routes of the lock protocol over one LeaseStore."""

    def __init__(self, store: LeaseStore, tokens: Tokens | str,
                 options: ServerOptions | None = None) -> None:
        self.store = store
        self.tokens = tokens if isinstance(tokens, Tokens) else Tokens(tokens)
        self.options = options or ServerOptions()
        self.public_status = self.options.public_status
        self.limiter = RateLimiter(self.options.rate, max(self.options.rate, 1.0))
        self.failures = RateLimiter(self.options.auth_failure_rate,
                                    max(4 * self.options.auth_failure_rate, 1.0))
        self.durable = GroupSync(store)
        self.commits = GroupCommit(store)
        self._roles: dict[Any, str | None] = {}  # aiohttp route -> role it needs
        self.served: Counter[str] = Counter()  # requests by route name, logged at the end
        self._route_sets: list[RouteSet] = list(self.options.routes)

    def add_routes(self, register: RouteSet) -> None:
        """Have `register(self, app)` add its routes when the app is built."""
        self._route_sets.append(register)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=p.MAX_BODY_BYTES, middlewares=[self._guard])
        handlers: dict[str, Handler] = {
            "health": self.health, "acquire": self.acquire,
            "acquire_many": self.acquire_many,
            "acquire_resource": self.acquire_resource, "renew": self.renew,
            "check": self.check, "release": self.release, "release_many": self.release_many,
            "holder": self.holder, "leases": self.leases, "whoami": self.whoami,
            "force_release": self.force_release, "audit": self.audit,
        }
        for name, (method, path) in p.ROUTES.items():
            self.add_route(app, method, path, handlers[name], p.ROUTE_ROLES[name], name)
        for register in self._route_sets:
            register(self, app)
        return app

    def add_route(self, app: web.Application, method: str, path: str, handler: Handler,
                  role: str | None, name: str | None = None) -> None:
        """Serve `method path` with `handler` for tokens with `role` (None: no token needed)."""
        self._roles[app.router.add_route(method, path, handler, name=name)] = role

    def roles_of(self, request: web.Request) -> frozenset[str]:
        """The roles of the request's token: `Authorization: Bearer`, or (GET only) the
        status page's login cookie."""
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer "):
            return self.tokens.roles(given[7:])
        cookie = request.cookies.get(TOKEN_COOKIE) if request.method == "GET" else None
        if cookie:
            return self.tokens.roles(cookie)
        return self.tokens.roles("") if self.tokens.open else NO_ROLE

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Token and role, rate limits, body size, and a 4xx/500 instead of a crash."""
        address = request.remote or "?"
        route = request.match_info.route
        needed = self._roles.get(route, "reader")  # unknown paths: a token first, then 404
        if needed is not None:
            roles = self.roles_of(request)
            if not roles:
                if not self.failures.allow(address):
                    return _error(p.TOO_MANY_REQUESTS, "too many failed authentications; "
                                  "slow down", **{"Retry-After": "1"})
                self.store.audit("auth-failure", address,
                                 f"{request.method} {request.path[:200]}: "
                                 + ("wrong token" if "Authorization" in request.headers
                                    else "no token"))
                return _error(p.UNAUTHORIZED, "missing or wrong lock token "
                              "(BATCHDEPS_LOCK_TOKEN or BATCHDEPS_LOCK_TOKEN_FILE)")
            if needed not in roles:
                return _error(p.FORBIDDEN, f"this token has the role(s) {roles_text(roles)}; "
                              f"{request.method} {request.path} needs {needed}")
            request[ROLES_KEY] = roles
        else:
            request[ROLES_KEY] = NO_ROLE
        if not self.limiter.allow(address):
            return _error(p.TOO_MANY_REQUESTS, "too many requests; slow down",
                          **{"Retry-After": "1"})
        if request.content_length is not None and request.content_length > p.MAX_BODY_BYTES:
            return _error(p.TOO_LARGE, f"request body over {p.MAX_BODY_BYTES} bytes")
        self.served[route.name or request.path] += 1
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason or "bad request")
        except p.ProtocolError as exc:
            return _error(p.BAD_REQUEST, str(exc))
        except StoreUnavailable as exc:  # nothing was decided: the client tries again
            log.warning("%s %s: %s", request.method, request.path, exc)
            return _error(p.UNAVAILABLE, str(exc), **{"Retry-After": "1"})
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

    @staticmethod
    def _admin(request: web.Request) -> bool:
        return ADMIN in request.get(ROLES_KEY, NO_ROLE)

    # -- routes ------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        """Liveness and the database: which kind, and whether it answers (503 when not)."""
        state = self.store.health()
        body = {"ok": bool(state["answers"]), "database": state["database"],
                "answers": bool(state["answers"])}
        return web.json_response(body, status=p.OK if body["ok"] else p.UNAVAILABLE)

    async def whoami(self, request: web.Request) -> web.Response:
        roles = request[ROLES_KEY]
        return web.json_response({"roles": [r for r in ("reader", "worker", "admin")
                                             if r in roles]})

    def _release_first(self, address: str, holder: p.Holder,
                       leases: tuple[tuple[str, int], ...]) -> list[bool]:
        """The releases an acquire carries, done before it (as release-many would)."""
        return self.store.release_many(leases, holder, address=address)

    async def acquire(self, request: web.Request) -> web.Response:
        req = p.parse_acquire(await self._body(request))
        address = request.remote or ""

        def change() -> tuple[list[bool], bool, LeaseRow | None]:
            released = self._release_first(address, req.holder, req.release)
            return (released, *self.store.acquire(req.key, req.holder, req.ttl,
                                                  address=address))

        released, granted, lease = await self.commits.run(change)
        assert lease is not None
        if granted:
            await self.durable.wait()
        body = lease_json(lease, time.time(), with_token=granted)
        body["granted"] = granted
        if req.release:
            body["released"] = released
        return web.json_response(body)

    async def acquire_many(self, request: web.Request) -> web.Response:
        req = p.parse_acquire_many(await self._body(request))
        address = request.remote or ""

        def change() -> tuple[list[bool], list[tuple[bool, LeaseRow]]]:
            released = self._release_first(address, req.holder, req.release)
            return released, self.store.acquire_many(req.keys, req.holder, req.ttl,
                                                     address=address)

        released, answers = await self.commits.run(change)  # one commit for the batch
        results: list[dict[str, Any]] = []
        any_granted = False
        now = time.time()
        holders: dict[p.Holder, tuple[dict[str, Any], str]] = {}  # each described once
        brief = req.brief
        for granted, lease in answers:
            if granted and brief:  # the caller knows the key (its place) and the holder
                results.append({"granted": True, "token": lease.token,
                                "expires_in": max(0.0, lease.expires_in)})
                any_granted = True
                continue
            body = lease_json(lease, now, with_token=granted, holders=holders)
            body["granted"] = granted
            any_granted = any_granted or granted
            results.append(body)
        if any_granted:
            await self.durable.wait()  # one fsync for the whole batch
        answer: dict[str, Any] = {"results": results}
        if req.release:
            answer["released"] = released
        return web.json_response(answer)

    async def acquire_resource(self, request: web.Request) -> web.Response:
        req = p.parse_resource(await self._body(request))
        address = request.remote or ""
        lease = await self.commits.run(lambda: self.store.acquire_resource(
            req.name, req.slots, req.holder, req.ttl, address=address))
        if lease is None:
            return web.json_response({"granted": False, "name": req.name})
        await self.durable.wait()
        body = lease_json(lease, time.time())
        body["granted"] = True
        return web.json_response(body)

    async def renew(self, request: web.Request) -> web.Response:
        req = p.parse_renew(await self._body(request))
        renewed: list[dict[str, Any]] = []
        lost: list[dict[str, Any]] = []
        answers = await self.store.off_loop(
            lambda: self.store.renew_many(req.leases, req.holder))
        for (key, token), answer in zip(req.leases, answers):
            if isinstance(answer, LeaseNotHeld):
                lost.append({"key": key, "token": token, "reason": str(answer)})
            else:
                renewed.append({"key": key, "token": token, "expires_in": answer.expires_in})
        return web.json_response({"renewed": renewed, "lost": lost})

    async def check(self, request: web.Request) -> web.Response:
        ref = p.parse_lease_ref(await self._body(request))
        try:
            lease = await self.store.off_loop(
                lambda: self.store.check(ref.key, ref.token, ref.holder))
        except LeaseNotHeld as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=p.LEASE_LOST)
        return web.json_response({"ok": True, "expires_in": lease.expires_in})

    async def release(self, request: web.Request) -> web.Response:
        ref = p.parse_lease_ref(await self._body(request))
        address = request.remote or ""
        return web.json_response({"released": await self.commits.run(
            lambda: self.store.release(ref.key, ref.token, ref.holder, address=address))})

    async def release_many(self, request: web.Request) -> web.Response:
        req = p.parse_release_many(await self._body(request))
        address = request.remote or ""
        released = await self.commits.run(
            lambda: self.store.release_many(req.leases, req.holder, address=address))
        return web.json_response({"released": released})

    async def holder(self, request: web.Request) -> web.Response:
        req = p.parse_key(await self._body(request))
        lease = self.store.get(req.key)
        if lease is None:
            return web.json_response({"held": False, "key": req.key})
        body = lease_json(lease, time.time(), with_token=self._admin(request))
        body["held"] = True
        return web.json_response(body)

    async def leases(self, request: web.Request) -> web.Response:
        now = time.time()
        admin = self._admin(request)
        return web.json_response({"leases": [lease_json(lease, now, with_token=admin)
                                             for lease in self.store.live()]})

    async def force_release(self, request: web.Request) -> web.Response:
        req = p.parse_force_release(await self._body(request))
        address = request.remote or ""
        reason = req.reason or "forced by an operator"
        if req.pid is not None:
            keys = [lease.key for lease in self.store.by_holder(req.host, req.pid)]
        else:
            keys = req.keys
        released: list[dict[str, Any]] = []
        not_held: list[str] = []
        now = time.time()
        with self.store.transaction():
            for key in keys:
                lease = self.store.force_release(key, address, reason)
                if lease is None:
                    not_held.append(key)
                else:  # closed to new holders while the old one may commit on its own answer
                    body = lease_json(lease, now)
                    body["closed_for"] = max(0.0, fence_window_left(lease))
                    released.append(body)
        for lease_body in released:
            log.warning("forced release of %s (held by %s) from %s: %s", lease_body["key"],
                        lease_body["holder_text"], address, reason)
        return web.json_response({"released": released, "not_held": not_held})

    async def audit(self, request: web.Request) -> web.Response:
        since, limit = p.parse_audit_query(request.query)
        return web.json_response({"audit": [row.to_json()
                                            for row in self.store.audit_since(since, limit)]})

    # -- background --------------------------------------------------------------------------
    async def housekeeping(self) -> None:
        """Delete expired leases every second, old audit lines every ten minutes."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
            try:
                while self.store.expire_due(500) == 500:
                    await asyncio.sleep(0)  # many at once: let requests in between
                if time.monotonic() - last_prune > AUDIT_PRUNE_SECONDS:
                    last_prune = time.monotonic()
                    before = time.time() - self.options.audit_days * 86400
                    while self.store.prune_audit(before, 1000) == 1000:
                        await asyncio.sleep(0)
            except Exception:
                log.exception("housekeeping of the lease database failed")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DB_LOCKS: list[int] = []  # kept open for the life of the process


def lock_database(db: str) -> bool:
    """One server per database: an exclusive lock on the database file itself, so the same
    file reached through a symlink or another relative path is refused too. True when the
    file did not exist (it is created empty)."""
    try:
        try:
            fd = os.open(db, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(db, os.O_RDWR)
            created = False
    except OSError as exc:
        raise UsageError(f"cannot open the lease database {db}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"another lock server is already using {db} "
                         f"({os.path.realpath(db)}); run one server per database") from None
    _DB_LOCKS.append(fd)  # closed only at exit: closing it would drop SQLite's own locks
    return created


def open_store(db: str) -> LeaseStore:
    """The store `--db` names: a postgresql:// URL, else an SQLite file (locked to us)."""
    if is_postgres_url(db):
        from .store.postgres import PgLeaseStore

        return PgLeaseStore(db)
    created = lock_database(db)
    try:
        return SqliteLeaseStore(db, existed=not created)
    except BatchdepsError:
        raise
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: one clear message
        raise UsageError(f"cannot open the lease database {db}: {exc}") from None


def init_database(db: str) -> str:
    """`lock-server --init`: create or migrate the database's schema; what was done."""
    if is_postgres_url(db):
        from .store.postgres import init_database as init_postgres

        return init_postgres(db)
    store = open_store(db)  # an SQLite file is created or migrated when it is opened
    store.close()
    return f"the lease database {db} is ready"


def skew_clock_for_tests() -> None:
    """BATCHDEPS_TEST_CLOCK_SKEW=SECONDS moves this process's wall clock (a test hook: a
    replica whose clock is off must not expire a lease early)."""
    skew = os.environ.get("BATCHDEPS_TEST_CLOCK_SKEW")
    if skew:
        real = time.time
        offset = float(skew)
        time.time = lambda: real() + offset  # type: ignore[assignment]


def serve(host: str, port: int, db: str, tokens: Tokens | str, cert: str | None = None,
          key: str | None = None, options: ServerOptions | None = None) -> None:
    """Run the server until SIGINT/SIGTERM; prints `listening on URL` once bound."""
    skew_clock_for_tests()
    tokens = tokens if isinstance(tokens, Tokens) else Tokens(tokens)
    options = options or ServerOptions()
    if not is_loopback(host):
        if tokens.open:
            raise UsageError(f"refusing to listen on {host} without a token: set "
                             "BATCHDEPS_LOCK_TOKEN or give --tokens-file (or listen on "
                             "127.0.0.1)")
        if tokens.too_short():
            raise UsageError(f"refusing to listen on {host}: {tokens.too_short()}")
    if bool(cert) != bool(key):
        raise UsageError("--cert and --key go together: give both for TLS, or neither")
    ssl_context = None
    if cert and key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    store = open_store(db)
    raise_file_limit()
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                    else socket.AF_INET, reuse_port=False)
    except OSError as exc:
        store.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    asyncio.run(_serve(LockServer(store, tokens, options), sock, ssl_context))


async def _serve(server: LockServer, sock: socket.socket,
                 ssl_context: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    limits = server.options.limits
    loop.set_exception_handler(quiet_exception_handler(limits.log_interval))
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False,
                           keepalive_timeout=limits.keepalive_timeout)
    await runner.setup()
    table = ConnectionTable(limits)
    inner = runner.server
    assert inner is not None
    listener = await loop.create_server(lambda: GuardedProtocol(table, inner), sock=sock,
                                        ssl=ssl_context, backlog=1024)
    bound_host, bound_port = sock.getsockname()[:2]
    scheme = "https" if ssl_context else "http"
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"listening on {scheme}://{shown}:{bound_port} "
          f"({server.store.held_count} leases loaded from {server.store.path})", flush=True)
    if server.tokens.open:
        log.warning("no BATCHDEPS_LOCK_TOKEN set: every request is accepted (loopback only)")
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tokens, server)
    background = [asyncio.ensure_future(table.sweep_forever()),
                  asyncio.ensure_future(server.housekeeping())]
    await stop.wait()
    for task in background:
        task.cancel()
    served = server.served
    log.info("stopping after %d requests (%s); lease changes in %d commits",
             sum(served.values()),
             ", ".join(f"{name} {count}" for name, count in served.most_common()),
             server.commits.batches)
    listener.close()
    await runner.cleanup()
    server.store.close()


def _reload_tokens(server: LockServer) -> None:
    try:
        server.tokens.reload()
    except BatchdepsError as exc:
        log.error("tokens file not reloaded, the old tokens stay in force: %s", exc)
    else:
        log.info("tokens file %s reloaded", server.tokens.path)
