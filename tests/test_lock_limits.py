"""Connection limits of the real lock server: idle and half-sent connections, caps, timeouts,
and failed authentications that cannot use up a legitimate client's budget."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lockutil import TOKEN, LockServer
from support.waiting import wait_for

from batchdeps.locks.client import HttpLockProvider

ATTACKER = "127.0.0.2"  # loopback too: every 127/8 address reaches the server here


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[LockServer]:
    server = LockServer(tmp_path / "locks.db", extra=[
        "--max-connections", "200", "--max-connections-per-address", "20",
        "--request-timeout", "2", "--keepalive-timeout", "30"]).start()
    yield server
    server.stop()


def _connect(server: LockServer, source: str = ATTACKER) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                    source_address=(source, 0))
    return sock


def _closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing (b'' when nothing), or None while still open."""
    sock.settimeout(0.05)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""
    return data if data == b"" or b"HTTP/1.1" in data else data


def _served(provider: HttpLockProvider, key: str) -> bool:
    lease = provider.try_acquire(key)
    assert lease is not None
    provider.check(lease)
    provider.release(lease)
    provider.flush_releases()
    return True


def test_idle_and_half_sent_connections_cannot_lock_a_client_out(
        limited_server: LockServer) -> None:
    provider = HttpLockProvider(limited_server.url, token=TOKEN, ttl=30, run_id="legit")
    provider.start()
    sockets: list[socket.socket] = []
    try:
        for index in range(60):  # three times the per-address limit
            sock = _connect(limited_server)
            if index % 2:  # half of them send half a request head and stop
                sock.sendall(b"POST /v1/acquire HTTP/1.1\r\nHost: x\r\nContent-Le")
            sockets.append(sock)
        # Past the 20th, each connection is refused at once with a 503 and closed.
        refused = wait_for(lambda: [s for s in sockets[20:] if _closed_by_server(s)
                                    is not None] if len(sockets) == 60 else [],
                           timeout=10, what="connections over the limit to be refused")
        assert len(refused) >= 35
        # The legitimate client, from another address, is served meanwhile.
        for n in range(20):
            assert _served(provider, f"Legit(n={n})")
        # The 20 admitted ones are closed once they miss the request deadline (2 s).
        wait_for(lambda: all(_closed_by_server(s) is not None for s in sockets[:20]),
                 timeout=15, what="idle and half-sent connections to be timed out")
        # Then the attacker's address may connect again (the slots were given back).
        again = _connect(limited_server)
        again.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        again.settimeout(10)
        assert again.recv(4096).startswith(b"HTTP/1.1 200")
        again.close()
        assert _served(provider, "Legit(after)")
        assert limited_server.alive()
    finally:
        for sock in sockets:
            sock.close()
        provider.close()


def test_a_refused_connection_gets_a_503_with_retry_after(limited_server: LockServer) -> None:
    held = [_connect(limited_server) for _ in range(20)]
    try:
        extra = _connect(limited_server)
        extra.settimeout(10)
        answer = b""
        while chunk := extra.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
        assert b"too many connections" in answer
        extra.close()
    finally:
        for sock in held:
            sock.close()


def test_a_flood_of_wrong_tokens_does_not_use_up_a_clients_budget(tmp_path: Path) -> None:
    server = LockServer(tmp_path / "locks.db", extra=["--rate-limit", "50"]).start()
    try:
        statuses = [server.request("GET", "/v1/leases", token="wrong-token-xxxxxxxx")[0]
                    for _ in range(200)]
        assert statuses.count(401) >= 10 and statuses.count(429) >= 100
        # Same address, right token: its own budget is untouched by the flood.
        ok = [server.request("GET", "/v1/leases")[0] for _ in range(40)]
        assert ok == [200] * 40
    finally:
        server.stop()


def test_event_loop_errors_are_logged_at_most_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    from batchdeps.locks.connections import Throttled

    now = [0.0]
    notes = Throttled(10.0, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="batchdeps.lock_server"):
        for _ in range(1000):  # asyncio's "accept failed" when out of file descriptors
            notes.log("accept", "socket.accept() out of system resource")
            now[0] += 0.001
        now[0] += 10
        notes.log("accept", "socket.accept() out of system resource")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "999 more like it in the last 10 s" in lines[1]


def test_the_server_raises_its_soft_open_file_limit_to_the_hard_one(tmp_path: Path) -> None:
    import resource
    import subprocess

    from support.lockutil import BATCHDEPS

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"a hard limit of {hard} leaves nothing to raise")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    env = {**os.environ, "BATCHDEPS_LOCK_TOKEN": TOKEN}
    proc = subprocess.Popen([BATCHDEPS, "lock-server", "--port", "0", "--db",
                             str(tmp_path / "l.db")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, preexec_fn=lower)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("listening on")
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert row.split()[3:5] == [str(hard), str(hard)], row
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(
        tmp_path: Path) -> None:
    server = LockServer(tmp_path / "locks.db", extra=["--keepalive-timeout", "1"]).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # kept alive after the answer
        wait_for(lambda: _closed_by_server(sock) is not None, timeout=15,
                 what="the idle keep-alive connection to be closed")
        sock.close()
    finally:
        server.stop()
