"""The lock server's monitoring routes: status page, login, /metrics, history in and out.

    GET  /             the status page (reader; the login form without a token)
    POST /login        token -> HTTP-only cookie for the page (no token needed to try)
    POST /logout       forget the cookie
    GET  /favicon.ico  204 (so a browser's automatic request is not a failed login)
    GET  /metrics      Prometheus text format (reader; none with --public-status)
    POST /v1/history   a runner's batch of history rows (worker)
    GET  /v1/history   task records, as `batchdeps history --json` prints them (reader)

`register()` adds them to a LockServer's app; `batchdeps lock-server` (cli/locks.py) hands
it to the server, which imports nothing of this package. The history tables live in the
server's own database (the SQLite file, or PostgreSQL), beside the leases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import logs
from ..history.records import FINISHED, RowError, row_from_json, run_from_json
from ..history.store import HistoryStore, TaskQuery
from ..locks import protocol as p
from ..locks.auth import ADMIN, READER, TOKEN_COOKIE, WORKER
from ..metrics import TaskMetrics, exposition
from .page import login_page, render
from .status import BadQuery, page_data

if TYPE_CHECKING:
    from ..locks.server import LockServer

log = logs.get("batchdeps.lock_server")

HISTORY_ROUTE = f"{p.API_PREFIX}/history"
COOKIE_MAX_AGE = 12 * 3600
MAX_QUERY_LIMIT = 10_000
TITLE = "batchdeps status"
#: statuses of tasks whose run() ran (their durations go into the histogram)
RAN = frozenset({"built", "failed"})


class MonitoringRoutes:
    """The routes above over one LockServer (its store, tokens and options)."""

    def __init__(self, server: LockServer) -> None:
        self.server = server
        self.history: HistoryStore = server.store.history()
        self.metrics = TaskMetrics()
        self.acquisitions: dict[str, float] = {"granted": 0.0, "held_elsewhere": 0.0}
        self.fence_refusals = 0.0
        self._seed_metrics()
        self._paths = {path: name for name, (_, path) in p.ROUTES.items()}
        self._pruning: Any = None

    def register(self, app: web.Application) -> None:
        server = self.server
        page_role = None if server.public_status else READER
        server.add_route(app, "GET", "/", self.status_page, None)  # checks the role itself
        server.add_route(app, "POST", "/login", self.login, None)
        server.add_route(app, "POST", "/logout", self.logout, None)
        server.add_route(app, "GET", "/favicon.ico", self.no_icon, None)  # browsers ask
        server.add_route(app, "GET", "/metrics", self.metrics_page, page_role)
        server.add_route(app, "POST", HISTORY_ROUTE, self.ingest, WORKER)
        server.add_route(app, "GET", HISTORY_ROUTE, self.query, READER)
        app.middlewares.append(self._observe)
        app.on_startup.append(self._start_pruning)
        app.on_cleanup.append(self._close)

    async def _start_pruning(self, app: web.Application) -> None:
        import asyncio

        self._pruning = asyncio.ensure_future(self._prune_forever())

    async def _prune_forever(self) -> None:
        """Remove history past `--history-days`, now and every ten minutes."""
        import asyncio

        while True:
            try:
                self.history.prune(time.time() - self.server.options.history_days * 86400)
            except Exception:
                log.exception("pruning the run history failed")
            await asyncio.sleep(600)

    async def _close(self, app: web.Application) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
        self.history.close()

    def _seed_metrics(self) -> None:
        """Counters start from the history kept in the database (so a restart does not
        zero them while the history is there); the histogram starts empty."""
        db = self.history.db
        for family, status, count in db.execute(
                f"SELECT family, status, count(*) FROM history_events WHERE kind = '{FINISHED}' "
                "GROUP BY family, status"):
            self.metrics.tasks[(family, status.replace(" ", "_"))] = float(count)
        for (exit_code,) in db.execute(
                "SELECT exit_code FROM history_runs WHERE exit_code IS NOT NULL"):
            self.metrics.run(int(exit_code))

    # -- the page ----------------------------------------------------------------------------
    async def status_page(self, request: web.Request) -> web.Response:
        server = self.server
        roles = server.roles_of(request)
        if READER not in roles and not server.public_status:
            if request.cookies.get(TOKEN_COOKIE) or request.headers.get("Authorization"):
                refused = self._refuse_login(request, "GET /: wrong token")
                if refused is not None:
                    return refused
                return self._login_form(request, "That token is not valid (any more); log in "
                                        "again.", status=p.UNAUTHORIZED)
            return self._login_form(request, "", status=p.UNAUTHORIZED)
        admin = ADMIN in roles
        try:
            data = page_data(
                self.history, request.query, title=TITLE,
                source=f"lock server, database {server.store.path}", leases=server.store,
                audit=admin, audit_note="the audit log is shown to admin tokens only")
        except BadQuery as exc:
            return _error(p.BAD_REQUEST, str(exc))
        data.logout = TOKEN_COOKIE in request.cookies
        return web.Response(text=render(data), content_type="text/html",
                            headers=_page_headers())

    def _login_form(self, request: web.Request, message: str, status: int) -> web.Response:
        """The login form for a browser; a JSON error, as every API answer, for the rest."""
        if "text/html" not in request.headers.get("Accept", ""):
            return _error(status, message or "missing or wrong lock token: send "
                          "Authorization: Bearer TOKEN, or log in with a browser")
        return web.Response(text=login_page(TITLE, message, secure_hint=not request.secure),
                            status=status, content_type="text/html", headers=_page_headers())

    def _refuse_login(self, request: web.Request, detail: str) -> web.Response | None:
        """Audit a failed login; 429 when this address fails too often."""
        address = request.remote or "?"
        if not self.server.failures.allow(address):
            return _error(p.TOO_MANY_REQUESTS, "too many failed logins; wait a little",
                          **{"Retry-After": "1"})
        self.server.store.audit("auth-failure", address, detail)
        return None

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("token")
        token = token if isinstance(token, str) else ""
        if token and READER in self.server.tokens.roles(token):
            response = web.HTTPSeeOther("/")
            response.set_cookie(TOKEN_COOKIE, token, max_age=COOKIE_MAX_AGE, path="/",
                                httponly=True, samesite="Strict", secure=request.secure)
            return response  # type: ignore[return-value]
        refused = self._refuse_login(request, "POST /login: wrong token")
        if refused is not None:
            return refused
        return self._login_form(request, "Wrong token.", status=p.UNAUTHORIZED)

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(TOKEN_COOKIE, path="/")
        return response  # type: ignore[return-value]

    # -- metrics -----------------------------------------------------------------------------
    async def metrics_page(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        body = exposition(self._families)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def _families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield from self.metrics.families()
        store = self.server.store
        yield GaugeMetricFamily("batchdeps_leases_held", "Leases the lock server holds now.",
                                value=store.held_count)
        acquisitions = CounterMetricFamily(
            "batchdeps_lock_acquisitions", "Lease requests by result: granted, or held by "
            "another worker.", labels=["outcome"])
        for outcome, count in sorted(self.acquisitions.items()):
            acquisitions.add_metric([outcome], count)
        yield acquisitions
        counts = store.event_counts
        yield CounterMetricFamily(
            "batchdeps_leases_expired", "Leases that ran past their TTL without renewal.",
            value=counts.get("expire", 0) + counts.get("takeover", 0))
        yield CounterMetricFamily(
            "batchdeps_fence_refusals", "Commits refused by the fence: the lease was no "
            "longer the committer's.", value=self.fence_refusals)

    @web.middleware
    async def _observe(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Count lease requests by result and fence refusals, from the answers given."""
        response = await handler(request)
        name = self._paths.get(request.path)
        if name in ("acquire", "acquire_many", "acquire_resource") and isinstance(
                response, web.Response) and response.status == p.OK:
            body = response.body
            if isinstance(body, bytes):
                self.acquisitions["granted"] += body.count(b'"granted": true')
                self.acquisitions["held_elsewhere"] += body.count(b'"granted": false')
        elif name == "check" and response.status == p.LEASE_LOST:
            self.fence_refusals += 1
        return response

    # -- history -----------------------------------------------------------------------------
    async def ingest(self, request: web.Request) -> web.Response:
        body = await self.server._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            raise p.ProtocolError("the body must be an object with an `events` list")
        unknown = set(body) - {"run", "events", "dropped"}
        if unknown:
            raise p.ProtocolError(f"unknown field(s) {', '.join(sorted(unknown))}")
        dropped = body.get("dropped", 0)
        if isinstance(dropped, bool) or not isinstance(dropped, int) or not 0 <= dropped < 2**31:
            raise p.ProtocolError("dropped must be a whole number >= 0")
        try:
            run = run_from_json(body["run"]) if body.get("run") is not None else None
            rows = [row_from_json(event, f"events[{i}]")
                    for i, event in enumerate(body["events"])]
        except RowError as exc:
            raise p.ProtocolError(str(exc)) from None
        newly_finished = False
        if run is not None:
            run["last_seen"] = time.time()  # the server's clock says when it was heard from
            if run["exit_code"] is not None:
                before = self.history.db.execute(
                    "SELECT exit_code FROM history_runs WHERE run_id = ?",
                    (run["run_id"],)).fetchone()
                newly_finished = before is None or before[0] is None
        self.history.write(rows, run)
        for row in rows:
            if row[2] == FINISHED:  # kind
                family, status, duration = row[4], row[5], row[7]
                self.metrics.task(family, status, duration, status in RAN)
        if newly_finished and run is not None:
            self.metrics.run(int(run["exit_code"]))
        self.metrics.history_dropped += dropped
        return web.json_response({"stored": len(rows)})

    async def query(self, request: web.Request) -> web.Response:
        q = request.query
        for name in q:
            if name not in ("task", "family", "status", "since", "limit", "offset"):
                raise p.ProtocolError(f"unknown query parameter {name[:40]!r}")
        try:
            since = float(q["since"]) if "since" in q else None
            limit = int(q.get("limit", "50"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            raise p.ProtocolError("since must be a number (Unix time); limit and offset "
                                  "whole numbers") from None
        if not 1 <= limit <= MAX_QUERY_LIMIT or not 0 <= offset <= 10**9:
            raise p.ProtocolError(f"limit must be from 1 to {MAX_QUERY_LIMIT}, offset >= 0")
        records = self.history.tasks(TaskQuery(
            task=q.get("task"), family=q.get("family"), status=q.get("status"), since=since,
            limit=limit, offset=offset))
        return web.json_response({"tasks": records}, dumps=json.dumps)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _page_headers() -> dict[str, str]:
    return {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "img-src 'self'; form-action 'self'; "
                                       "frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer"}


def register(server: LockServer, app: web.Application) -> None:
    """Add the monitoring routes to `server`'s `app`."""
    MonitoringRoutes(server).register(app)
