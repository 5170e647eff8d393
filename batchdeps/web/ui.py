"""`batchdeps ui`: the status page over the local history file, served on 127.0.0.1 only.

For a machine with no lock server: the same page as the server's `GET /`, without the
leases and the audit log (machine-local locks keep neither). Loopback only, so no token.
"""

from __future__ import annotations

import asyncio
import signal
import socket

from aiohttp import web

from ..errors import UsageError
from ..history.store import HistoryStore
from .page import render
from .status import BadQuery, page_data

HOST = "127.0.0.1"
TITLE = "batchdeps status"


def make_app(history_path: str) -> web.Application:
    history = HistoryStore(history_path)

    async def status_page(request: web.Request) -> web.Response:
        try:
            data = page_data(history, request.query, title=TITLE,
                             source=f"history file {history_path}",
                             audit_note="no lock server here: machine-local locks keep no "
                                        "audit log")
        except BadQuery as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(text=render(data), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def close(app: web.Application) -> None:
        history.close()

    app = web.Application()
    app.router.add_get("/", status_page)
    app.on_cleanup.append(close)
    return app


def serve(history_path: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; prints `serving ... on URL` once bound."""
    try:
        sock = socket.create_server((HOST, port))
    except OSError as exc:
        raise UsageError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    try:
        app = make_app(history_path)
    except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: one clear message
        sock.close()
        raise UsageError(f"cannot open the history file {history_path}: {exc}") from None
    asyncio.run(_serve(app, sock, history_path))


async def _serve(app: web.Application, sock: socket.socket, history_path: str) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    print(f"serving the status page of {history_path} on http://{HOST}:{port}/ "
          "(Ctrl-C to stop)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
