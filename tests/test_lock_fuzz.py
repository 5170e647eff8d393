"""Hypothesis against a real lock server: hostile requests never crash it or bend its leases."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.lockutil import TOKEN, LockServer

SENTINEL = {"host": "sentinel-host", "pid": 4242, "run_id": "sentinel-run"}
ROUTES = ["/v1/health", "/v1/acquire", "/v1/acquire-many", "/v1/acquire-resource",
          "/v1/renew", "/v1/check", "/v1/release", "/v1/release-many", "/v1/holder",
          "/v1/leases"]
ALLOWED = {200, 400, 401, 404, 405, 409, 413, 429}

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LockServer]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "locks.db"
    server = LockServer(path, extra=["--rate-limit", "0"]).start()
    status, body = server.request("POST", "/v1/acquire", {"key": "Sentinel()",
                                                          "holder": SENTINEL, "ttl": 3600})
    assert status == 200 and body["granted"] and body["token"] >= 1
    server.sentinel_token = body["token"]  # type: ignore[attr-defined]
    yield server
    server.stop()


def _consistent(server: LockServer) -> None:
    assert server.alive()
    status, body = server.request("GET", "/v1/leases")
    assert status == 200
    keys = [lease["key"] for lease in body["leases"]]
    assert len(keys) == len(set(keys))
    assert all(lease["token"] >= 1 and lease["expires_in"] >= 0 for lease in body["leases"])
    sentinel = [lease for lease in body["leases"] if lease["key"] == "Sentinel()"]
    assert len(sentinel) == 1 and sentinel[0]["holder"] == SENTINEL
    assert sentinel[0]["token"] == server.sentinel_token  # type: ignore[attr-defined]


# Lone surrogates survive json.dumps/loads but cannot be stored as UTF-8.
hostile_text = st.text(max_size=50) | st.text(
    alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.just("a"),
    min_size=1, max_size=5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True) | hostile_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20,
)
plausible_holders = st.fixed_dictionaries({
    "host": st.text(min_size=1, max_size=20) | hostile_text,
    "pid": st.integers(min_value=0, max_value=2**31 - 1),
    "run_id": st.text(min_size=1, max_size=10) | hostile_text,
})
holders = plausible_holders | st.fixed_dictionaries({
    "host": st.text(max_size=300) | hostile_text | st.integers(),
    "pid": st.integers(min_value=-5, max_value=2**40) | st.text(max_size=5),
    "run_id": st.text(max_size=80) | st.none(),
})
near_valid = st.fixed_dictionaries({}, optional={
    "key": hostile_text | st.sampled_from(["Sentinel()", "resource:x:0"]) | json_values,
    "keys": st.lists(hostile_text | st.just("Sentinel()"), max_size=4) | json_values,
    "name": st.text(max_size=20) | json_values,
    "slots": st.integers(min_value=-3, max_value=20_000) | json_values,
    "token": st.integers(min_value=-3, max_value=2**63) | json_values,
    "ttl": st.floats(min_value=1, max_value=5) | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers() | json_values,
    "holder": holders | json_values,
    "leases": st.lists(st.fixed_dictionaries({"key": st.sampled_from(["Sentinel()", "x"]),
                                              "token": st.integers(-2, 5)}), max_size=4)
    | json_values,
})


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
       path=st.sampled_from(ROUTES) | st.text(alphabet="/v1abcdefghijklmnop-?=%", max_size=30)
       .map(lambda tail: "/" + tail),
       body=st.one_of(near_valid.map(lambda d: json.dumps(d).encode()),
                      json_values.map(lambda v: json.dumps(v).encode()),
                      st.binary(max_size=300)),
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]),
       token=st.sampled_from([TOKEN, TOKEN, TOKEN, "", "wrong", TOKEN + "x"]))
def test_hostile_requests_get_4xx_and_leave_leases_consistent(
        server: LockServer, method: str, path: str, body: bytes, content_type: str,
        token: str) -> None:
    # The status page's own routes (HTML, a login form, redirects) are tested with it.
    assume(path.split("?")[0] not in ("/", "/login", "/logout", "/favicon.ico", "/metrics"))
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer = server.request(method, path, raw=body, token=token, headers=headers)
    assert status in ALLOWED, (status, answer)
    if status >= 400:
        assert isinstance(answer, dict) and answer.get("error")
    if token != TOKEN and not (method == "GET" and path == "/v1/health"):
        assert status in (401, 429)  # 429: failed authentications have their own rate limit
    _consistent(server)


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=500))
def test_garbage_on_the_socket_does_not_take_the_server_down(server: LockServer,
                                                             garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(garbage + b"\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
    _consistent(server)


small_holders = st.sampled_from([
    {"host": "h1", "pid": 1, "run_id": "a"}, {"host": "h1", "pid": 1, "run_id": "b"},
    {"host": "h2", "pid": 7, "run_id": "a"},
])
operations = st.lists(st.tuples(st.sampled_from(["acquire", "acquire_many", "release",
                                                 "release_many", "check"]),
                                st.sampled_from(["K1", "K2"]), small_holders,
                                st.integers(min_value=1, max_value=4)), max_size=25)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_valid_operations_match_a_simple_lease_model(server: LockServer,
                                                     ops: list[tuple[str, str, Any, int]]) -> None:
    """With long TTLs nothing expires, so the server must act exactly like this model.

    Tokens are one growing sequence for the whole server; an operation's token number `n`
    stands for the key's n-th token issued so far (or, past those, a token never issued)."""
    prefix = uuid.uuid4().hex[:8]
    model: dict[str, tuple[dict[str, Any] | None, int]] = {}  # key -> (holder, last token)
    issued: dict[str, list[int]] = {}
    high = 0
    for op, name, holder, choice in ops:
        key = f"{prefix}:{name}"
        current, last = model.get(key, (None, 0))
        tokens = issued.setdefault(key, [])
        token = tokens[choice - 1] if choice <= len(tokens) else choice
        if op in ("acquire", "acquire_many"):
            if op == "acquire":
                status, body = server.request("POST", "/v1/acquire",
                                              {"key": key, "holder": holder, "ttl": 3600})
            else:
                status, answer = server.request("POST", "/v1/acquire-many",
                                                {"keys": [key], "holder": holder, "ttl": 3600})
                body = answer["results"][0] if status == 200 else answer
            assert status == 200
            if current is None:
                assert body["granted"] and body["token"] > max(last, high)
                high = body["token"]
                tokens.append(high)
                model[key] = (holder, high)
            elif current == holder:
                assert body["granted"] and body["token"] == last
            else:
                assert not body["granted"] and body["holder"] == current
        else:
            ref = {"key": key, "holder": holder, "token": token}
            mine = current == holder and token == last
            if op == "release":
                status, body = server.request("POST", "/v1/release", ref)
                assert status == 200 and body["released"] is mine
            elif op == "release_many":
                status, body = server.request("POST", "/v1/release-many", {
                    "holder": holder, "leases": [{"key": key, "token": token}]})
                assert status == 200 and body["released"] == [mine]
            if op in ("release", "release_many") and mine:
                model[key] = (None, last)
            if op == "check":
                status, body = server.request("POST", "/v1/check", ref)
                assert status == (200 if mine else 409)
    _consistent(server)


def _valid_body(route: str, holder: dict[str, Any]) -> dict[str, Any]:
    return {
        "/v1/acquire": {"key": "Fuzz()", "holder": holder, "ttl": 2},
        "/v1/acquire-many": {"keys": ["Fuzz()", "Fuzz2()"], "holder": holder, "ttl": 2},
        "/v1/release-many": {"holder": holder, "leases": [{"key": "Fuzz()", "token": 1}]},
        "/v1/acquire-resource": {"name": "fuzzpool", "slots": 2, "holder": holder, "ttl": 2},
        "/v1/check": {"key": "Fuzz()", "token": 1, "holder": holder},
        "/v1/release": {"key": "Fuzz()", "token": 1, "holder": holder},
        "/v1/holder": {"key": "Fuzz()"},
        "/v1/renew": {"holder": holder, "leases": [{"key": "Fuzz()", "token": 1}]},
    }[route]


@FUZZ
@given(route=st.sampled_from(["/v1/acquire", "/v1/acquire-many", "/v1/acquire-resource",
                              "/v1/check", "/v1/release", "/v1/release-many", "/v1/holder",
                              "/v1/renew"]),
       holder=plausible_holders, field=st.sampled_from(["key", "keys", "name", "slots", "token",
                                                        "ttl", "holder", "leases", None]),
       value=hostile_text | json_values | plausible_holders)
def test_one_hostile_field_in_an_otherwise_valid_request(
        server: LockServer, route: str, holder: dict[str, Any], field: str | None,
        value: Any) -> None:
    body = _valid_body(route, holder)
    if field is not None and field in body:
        body[field] = value
    status, answer = server.request("POST", route, raw=json.dumps(body).encode(),
                                    headers={"Content-Type": "application/json"})
    assert status in ALLOWED, (status, answer)
    _consistent(server)
