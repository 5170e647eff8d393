"""The lock server process over raw HTTP: routes, status codes, token, limits, restarts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lockutil import BATCHDEPS, TOKEN, LockServer

A = {"host": "host-a", "pid": 1, "run_id": "run-a"}
B = {"host": "host-b", "pid": 2, "run_id": "run-b"}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockServer]:
    server = LockServer(tmp_path_factory.mktemp("shared") / "locks.db").start()
    yield server
    server.stop()


def _acquire(server: LockServer, key: str, holder: dict, ttl: float = 30) -> dict:
    status, body = server.request("POST", "/v1/acquire", {"key": key, "holder": holder,
                                                          "ttl": ttl})
    assert status == 200, body
    return body


def test_acquire_check_release_and_fencing(lock_server: LockServer) -> None:
    first = _acquire(lock_server, "T(x=1)", A)
    assert first["granted"] is True and first["token"] >= 1
    refused = _acquire(lock_server, "T(x=1)", B)
    assert refused["granted"] is False and refused["holder"] == A and "token" not in refused
    ref = {"key": "T(x=1)", "token": first["token"], "holder": A}
    assert lock_server.request("POST", "/v1/check", ref)[0] == 200
    assert lock_server.request("POST", "/v1/check", {**ref, "holder": B})[0] == 409
    assert lock_server.request("POST", "/v1/release", {**ref, "token": ref["token"] + 1})[1] == {
        "released": False}
    assert lock_server.request("POST", "/v1/release", ref)[1] == {"released": True}
    assert lock_server.request("POST", "/v1/check", ref)[0] == 409
    second = _acquire(lock_server, "T(x=1)", B)
    assert second["granted"] is True and second["token"] > first["token"]


def test_renew_reports_renewed_and_lost_leases(lock_server: LockServer) -> None:
    token = _acquire(lock_server, "K1", A)["token"]
    status, body = lock_server.request("POST", "/v1/renew", {
        "holder": A, "leases": [{"key": "K1", "token": token}, {"key": "K2", "token": 1}]})
    assert status == 200
    assert [item["key"] for item in body["renewed"]] == ["K1"]
    assert [item["key"] for item in body["lost"]] == ["K2"]


def test_wrong_or_missing_token_gets_401_and_changes_nothing(lock_server: LockServer) -> None:
    body = {"key": "T", "holder": A, "ttl": 30}
    assert lock_server.request("POST", "/v1/acquire", body, token="wrong")[0] == 401
    assert lock_server.request("POST", "/v1/acquire", body, token="")[0] == 401
    assert lock_server.request("GET", "/v1/leases", token=TOKEN[:-1])[0] == 401
    status, listing = lock_server.request("GET", "/v1/leases")
    assert status == 200 and listing == {"leases": []}


@pytest.mark.parametrize("raw, content_type, status", [
    (b"{not json", "application/json", 400),
    (b"[]", "application/json", 400),
    (b'{"key": "T", "holder": {"host": "h", "pid": -1, "run_id": "r"}, "ttl": 30}',
     "application/json", 400),
    (b'{"key": "T", "holder": {"host": "h", "pid": 1, "run_id": "r"}, "ttl": 0.1}',
     "application/json", 400),
    (b'{"key": "", "holder": {"host": "h", "pid": 1, "run_id": "r"}, "ttl": 30}',
     "application/json", 400),
    (b"key=T", "application/x-www-form-urlencoded", 400),
    (b"\xff\xfe", "application/json", 400),
    (b"[" * 100_000, "application/json", 413),
])
def test_malformed_requests_get_4xx_and_change_nothing(
        shared_server: LockServer, raw: bytes, content_type: str, status: int) -> None:
    got, body = shared_server.request("POST", "/v1/acquire", raw=raw,
                                      headers={"Content-Type": content_type})
    assert got == status, body
    assert isinstance(body, dict) and body["error"]
    assert shared_server.request("GET", "/v1/leases")[1] == {"leases": []}
    assert shared_server.alive()


def test_unknown_route_and_wrong_method(lock_server: LockServer) -> None:
    assert lock_server.request("GET", "/v1/nothing")[0] == 404
    assert lock_server.request("GET", "/v1/acquire")[0] == 405


def test_kill_9_and_restart_keeps_leases_and_tokens(lock_server: LockServer) -> None:
    held = _acquire(lock_server, "T", A)["token"]
    released = _acquire(lock_server, "U", A)["token"]
    lock_server.request("POST", "/v1/release", {"key": "U", "token": released, "holder": A})
    lock_server.kill9()
    lock_server.start(port=lock_server.port)
    status, body = lock_server.request("POST", "/v1/holder", {"key": "T"})
    assert status == 200 and body["held"] and body["holder"] == A and body["token"] == held
    assert _acquire(lock_server, "T", B)["granted"] is False
    assert lock_server.request("POST", "/v1/check", {"key": "T", "token": held,
                                                     "holder": A})[0] == 200
    assert _acquire(lock_server, "U", B)["token"] > released  # never reuses a token


def test_rate_limit_answers_429(tmp_path: Path) -> None:
    server = LockServer(tmp_path / "locks.db", extra=["--rate-limit", "5"]).start()
    try:
        statuses = [server.request("GET", "/v1/leases")[0] for _ in range(30)]
        assert 429 in statuses and statuses[0] == 200
        assert server.alive()
    finally:
        server.stop()


def test_refuses_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BATCHDEPS_LOCK_TOKEN"}
    done = subprocess.run(check=False, args=[BATCHDEPS, "lock-server", "--host", "0.0.0.0", "--port", "0",
                           "--db", str(tmp_path / "l.db")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "without a token" in done.stderr and "Traceback" not in done.stderr


def test_a_second_server_on_the_same_database_is_refused(lock_server: LockServer) -> None:
    done = subprocess.run([BATCHDEPS, "lock-server", "--port", "0", "--db", str(lock_server.db)],
                          env={**os.environ, "BATCHDEPS_LOCK_TOKEN": TOKEN}, check=False,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "already using" in done.stderr
    assert lock_server.alive()


def test_bad_database_path_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(check=False, args=[BATCHDEPS, "lock-server", "--port", "0", "--db",
                           str(tmp_path / "missing" / "dir" / "l.db")],
                          env={**os.environ, "BATCHDEPS_LOCK_TOKEN": TOKEN},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "lease database" in done.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_server_with_client_that_trusts_its_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(args=["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = LockServer(tmp_path / "locks.db", extra=["--cert", str(cert), "--key",
                                                      str(key)]).start()
    try:
        assert server.url.startswith("https://")
        script = ("from batchdeps.locks.client import HttpLockProvider\n"
                  f"p = HttpLockProvider({server.url!r}, token={TOKEN!r}, ttl=5)\n"
                  "p.start(); lease = p.try_acquire('T'); p.check(lease); print(lease.fencing_token)\n"
                  "p.close()\n")
        env = {**os.environ, "SSL_CERT_FILE": str(cert)}
        done = subprocess.run(check=False, args=[sys.executable, "-c", script], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and int(done.stdout) >= 1, done.stderr
        with socket.create_connection(("127.0.0.1", server.port)) as plain:
            plain.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()


def test_acquire_many_and_release_many_routes(lock_server) -> None:
    import json as _json
    import urllib.request

    def post(route: str, body: object) -> tuple[int, object]:
        request = urllib.request.Request(
            lock_server.url + route, data=_json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, _json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json.loads(exc.read())

    me = {"host": "h", "pid": 1, "run_id": "r"}
    you = {"host": "h", "pid": 2, "run_id": "s"}
    status, body = post("/v1/acquire-many", {"keys": ["a", "b"], "holder": me, "ttl": 30})
    assert status == 200
    assert [r["granted"] for r in body["results"]] == [True, True]
    tokens = [r["token"] for r in body["results"]]
    status, body = post("/v1/acquire-many", {"keys": ["b", "c"], "holder": you, "ttl": 30})
    assert [r["granted"] for r in body["results"]] == [False, True]
    assert "token" not in body["results"][0]
    status, body = post("/v1/release-many", {"holder": me, "leases": [
        {"key": "a", "token": tokens[0]}, {"key": "b", "token": tokens[1] + 5}]})
    assert status == 200 and body["released"] == [True, False]
    # "brief": granted keys answered with granted, token and expires_in only; a refused
    # key in full, as without it (which is what clients that do not send it get above).
    status, body = post("/v1/acquire-many", {"keys": ["d", "c", "a"], "holder": me,
                                             "ttl": 30, "brief": True})
    assert status == 200
    granted_d, refused_c, granted_a = body["results"]
    assert set(granted_d) == {"granted", "token", "expires_in"} == set(granted_a)
    assert granted_d["granted"] is True and granted_d["token"] > max(tokens)
    assert 0 < granted_a["expires_in"] <= 30
    assert refused_c["granted"] is False and refused_c["holder"] == you
    assert refused_c["key"] == "c" and "token" not in refused_c
    for bad in ({"keys": [], "holder": me, "ttl": 30},
                {"keys": ["k"], "holder": me, "ttl": 30, "brief": "yes"},
                {"keys": ["x", "x"], "holder": me, "ttl": 30},
                {"keys": ["k"] * 0 + [f"k{i}" for i in range(257)], "holder": me, "ttl": 30},
                {"keys": [1], "holder": me, "ttl": 30}):
        status, body = post("/v1/acquire-many", bad)
        assert status == 400, bad
        assert "error" in body


def test_concurrent_batches_grant_each_key_once_durably_with_growing_tokens(
        lock_server: LockServer) -> None:
    """Many clients at once, acquire-many with releases riding along and release-many:
    the server puts requests that arrive together in one commit and one fsync. A key is
    never granted to two holders at once, tokens grow with every grant, and every grant
    answered is there again, same holder and token, after a kill -9 and a restart."""
    import http.client
    import json as _json
    import random
    import threading

    keys = [f"Task(n={n})" for n in range(48)]
    answered: list[tuple[str, int, str]] = []  # (key, token, run_id) of every grant seen
    held: dict[str, dict[str, int]] = {}  # run_id -> key -> token it holds at the end
    lock = threading.Lock()

    def client(index: int) -> None:
        me = {"host": "h", "pid": index, "run_id": f"run-{index}"}
        conn = http.client.HTTPConnection("127.0.0.1", lock_server.port, timeout=30)
        mine: dict[str, int] = {}
        rand = random.Random(index)
        try:
            for round_ in range(6):
                wanted = rand.sample(keys, 12)
                body: dict[str, object] = {"keys": wanted, "holder": me, "ttl": 30}
                if round_ % 2 and mine:  # give some back with the next acquire
                    back = sorted(mine)[: len(mine) // 2]
                    body["release"] = [{"key": k, "token": mine.pop(k)} for k in back]
                conn.request("POST", "/v1/acquire-many", body=_json.dumps(body),
                             headers={"Authorization": f"Bearer {TOKEN}",
                                      "Content-Type": "application/json"})
                answer = _json.loads(conn.getresponse().read())
                assert all(answer.get("released", [True]))
                for key, result in zip(wanted, answer["results"]):
                    if result["granted"]:
                        assert mine.get(key, result["token"]) == result["token"]
                        mine[key] = result["token"]
                        with lock:
                            answered.append((key, result["token"], me["run_id"]))
                if round_ == 4 and mine:
                    back = sorted(mine)[:2]
                    conn.request("POST", "/v1/release-many", body=_json.dumps({
                        "holder": me, "leases": [{"key": k, "token": mine.pop(k)}
                                                 for k in back]}),
                        headers={"Authorization": f"Bearer {TOKEN}",
                                 "Content-Type": "application/json"})
                    released = _json.loads(conn.getresponse().read())["released"]
                    assert released == [True] * len(back)  # one key only when one is held
        finally:
            conn.close()
        with lock:
            held[me["run_id"]] = mine

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(held) == 8
    # One token per grant, never shared between two keys or two holders.
    grants = {(key, token): run for key, token, run in answered}
    assert len({token for _, token in grants}) == len(grants)
    status, audit = lock_server.request("GET", "/v1/audit?limit=10000")
    assert status == 200
    granted = [line for line in reversed(audit["audit"]) if line["event"] == "grant"]
    tokens = [line["token"] for line in granted]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # strictly growing
    assert {(line["key"], line["token"]) for line in granted} == set(grants)
    # A key's next grant comes only after its holder gave it back.
    live: dict[str, int] = {}
    for line in reversed(audit["audit"]):
        if line["event"] == "grant":
            assert line["key"] not in live, f"{line['key']} granted while held"
            live[line["key"]] = line["token"]
        elif line["event"] == "release":
            assert live.pop(line["key"]) == line["token"]
    lock_server.kill9()
    lock_server.start(port=lock_server.port)
    status, body = lock_server.request("GET", "/v1/leases")
    assert status == 200
    after = {(lease["key"], lease["token"], lease["holder"]["run_id"])
             for lease in body["leases"]}
    assert after == {(key, token, run) for run, mine in held.items()
                     for key, token in mine.items()}


def test_a_batch_of_requests_answers_as_each_request_alone(tmp_path: Path) -> None:
    """GroupCommit: changes of requests that arrive together share one transaction; the
    answers and the database are those of each change made in a transaction of its own,
    and a change that fails fails alone."""
    import asyncio

    from batchdeps.locks.protocol import Holder
    from batchdeps.locks.server import GroupCommit
    from batchdeps.locks.store import SqliteLeaseStore

    a, b = Holder("h", 1, "a"), Holder("h", 2, "b")

    def changes(store: SqliteLeaseStore) -> list:
        def broken() -> None:
            store.acquire("half-done", a, 30)
            raise RuntimeError("a bug in one request")

        return [lambda: store.acquire("x", a, 30), lambda: store.acquire("x", b, 30),
                lambda: store.acquire_many(["y", "z"], b, 30), broken,
                lambda: store.release("x", store.token("x"), a),
                lambda: store.acquire("x", b, 30)]

    async def grouped(store: SqliteLeaseStore) -> list:
        commits = GroupCommit(store)
        results = await asyncio.gather(*(commits.run(c) for c in changes(store)),
                                       return_exceptions=True)
        assert commits.batches == 1 + len(results)  # rolled back once, then one by one
        good = await asyncio.gather(*(commits.run(c) for i, c in enumerate(changes(store))
                                      if i != 3))
        assert commits.batches == 2 + len(results)  # without the bug: one commit for all
        return [*results, *good]

    def alone(store: SqliteLeaseStore) -> list:
        results: list = []
        for round_ in range(2):
            for i, change in enumerate(changes(store)):
                if round_ and i == 3:
                    continue
                try:
                    with store.transaction():
                        results.append(change())
                except RuntimeError as exc:
                    results.append(exc)
        return results

    def shape(value: object, rank: dict[int, int]) -> object:
        """Results with tokens as their rank: a batch rolled back has used up a few tokens
        (tokens only grow), so only their order can be the same."""
        if isinstance(value, Exception):
            return repr(value)
        if isinstance(value, (tuple, list)):
            return [shape(v, rank) for v in value]
        if hasattr(value, "token"):
            return (value.key, rank[value.token], value.holder)  # type: ignore[attr-defined]
        return value

    def seen(store: SqliteLeaseStore, results: list) -> tuple[object, object, object]:
        audit = [(r.event, r.key, r.token) for r in store.audit_since(0)]
        rank = {token: i for i, token in enumerate(sorted({t for _, _, t in audit}))}
        return (shape(results, rank),
                [(lease.key, rank[lease.token], lease.holder) for lease in store.live()],
                [(event, key, rank[token]) for event, key, token in audit])

    wall = lambda: 1000.0  # noqa: E731 - tokens from the mark alone, in step in both stores
    fast = SqliteLeaseStore(str(tmp_path / "grouped.db"), wall=wall)
    slow = SqliteLeaseStore(str(tmp_path / "alone.db"), wall=wall)
    got = asyncio.run(grouped(fast))
    assert seen(fast, got) == seen(slow, alone(slow))
    assert isinstance(got[3], RuntimeError) and fast.get("half-done") is None
    assert [g for g, _ in got[0:2]] == [True, False] and got[4] is True
    fast.close()
    slow.close()
