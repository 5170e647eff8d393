"""HttpLockProvider against a real lock-server process: heartbeats, loss, restarts, errors."""

from __future__ import annotations

import os
import socket
import time

import pytest
from support.lockutil import TOKEN, LockServer, holder_json
from support.waiting import wait_for

from batchdeps.errors import LeaseLostError, LockAuthError, LockServerUnavailable
from batchdeps.locks.client import LOCAL_CHECK_FRACTION, HttpLockProvider, lease_clock


def _provider(server: LockServer, ttl: float = 5, run_id: str | None = None,
              token: str = TOKEN) -> HttpLockProvider:
    provider = HttpLockProvider(server.url, token=token, ttl=ttl, run_id=run_id)
    provider.start()
    return provider


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_start_against_a_down_server_raises_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(LockServerUnavailable, match="cannot be reached") as info:
        HttpLockProvider(url, token=TOKEN, ttl=5).start()
    assert url in str(info.value)


def test_start_with_a_wrong_token_raises_auth_error(lock_server: LockServer) -> None:
    with pytest.raises(LockAuthError, match="BATCHDEPS_LOCK_TOKEN"):
        _provider(lock_server, token="wrong")


def test_holder_names_host_pid_and_run(lock_server: LockServer) -> None:
    first, second = _provider(lock_server, run_id="r-one"), _provider(lock_server)
    try:
        assert first.try_acquire("T(x=1)") is not None
        assert second.try_acquire("T(x=1)") is None
        assert second.holder("T(x=1)") == (
            f"host {socket.gethostname()} pid {os.getpid()} run r-one")
        assert second.holder("free") == ""
    finally:
        first.close()
        second.close()


def test_heartbeat_keeps_a_lease_past_its_ttl(lock_server: LockServer) -> None:
    owner, other = _provider(lock_server, ttl=1), _provider(lock_server, ttl=1)
    try:
        lease = owner.try_acquire("T")
        assert lease is not None
        time.sleep(2.5)
        assert other.try_acquire("T") is None
        owner.check(lease)
        assert not lease.lost
    finally:
        owner.close()
        other.close()


def test_close_releases_every_lease(lock_server: LockServer) -> None:
    owner, other = _provider(lock_server), _provider(lock_server)
    try:
        assert owner.try_acquire("T") is not None
        assert owner.try_acquire_resource("pool", 1) is not None
        owner.close()
        assert other.try_acquire("T") is not None
        assert other.try_acquire_resource("pool", 1) is not None
    finally:
        other.close()


def test_resource_slots_are_capped_across_providers(lock_server: LockServer) -> None:
    one, two = _provider(lock_server), _provider(lock_server)
    try:
        first = one.try_acquire_resource("warehouse", 2)
        second = two.try_acquire_resource("warehouse", 2)
        assert first is not None and second is not None and first.key != second.key
        assert one.try_acquire_resource("warehouse", 2) is None
        one.release(first)
        assert two.try_acquire_resource("warehouse", 2) is not None
    finally:
        one.close()
        two.close()


def test_connection_is_reused_between_requests(lock_server: LockServer) -> None:
    provider = _provider(lock_server)
    try:
        provider.try_acquire("T0")
        local = provider.transport._local.conns[0].sock.getsockname()
        for index in range(1, 30):
            provider.release(provider.try_acquire(f"T{index}"))  # type: ignore[arg-type]
        assert provider.transport._local.conns[0].sock.getsockname() == local
    finally:
        provider.close()


def test_server_gone_mid_run_loses_the_lease_after_one_ttl_then_stops(
        lock_server: LockServer) -> None:
    provider = _provider(lock_server, ttl=1)
    try:
        lease = provider.try_acquire("T")
        assert lease is not None
        lock_server.kill9()
        wait_for(lambda: lease.lost, timeout=10, what="the lease to be marked lost")
        assert "unreachable" in lease.lost_reason
        with pytest.raises(LeaseLostError, match="not committed"):
            provider.check(lease)
        started = time.monotonic()
        with pytest.raises(LockServerUnavailable):
            provider.try_acquire("U")
        assert time.monotonic() - started >= 0.9  # it retried for about one TTL first
    finally:
        provider.close()


def test_server_restart_within_the_ttl_keeps_the_lease(lock_server: LockServer) -> None:
    provider = _provider(lock_server, ttl=8)  # a loaded machine may take seconds to restart it
    try:
        lease = provider.try_acquire("T")
        assert lease is not None
        lock_server.kill9()
        lock_server.start(port=lock_server.port)
        time.sleep(8.5)  # longer than the lease: only renewals after the restart keep it
        provider.check(lease)
        assert not lease.lost
    finally:
        provider.close()


def test_check_refuses_a_lease_granted_to_someone_else(lock_server: LockServer) -> None:
    owner, thief = _provider(lock_server, ttl=1), _provider(lock_server, ttl=1)
    try:
        lease = owner.try_acquire("T")
        assert lease is not None
        owner._stop.set()  # the heartbeat stops, as in a paused process
        assert owner._heartbeat is not None
        owner._heartbeat.join()
        taken = wait_for(lambda: thief.try_acquire("T"), timeout=10, what="the lease to expire")
        assert taken.fencing_token > lease.fencing_token
        with pytest.raises(LeaseLostError, match="granted again"):
            owner.check(lease)
        assert lease.lost
    finally:
        owner.close()
        thief.close()


# -- batching: acquire-many, queued releases, the local fence check ------------------------
def test_acquire_many_grants_free_keys_and_reports_held_ones(lock_server: LockServer) -> None:
    first, second = _provider(lock_server), _provider(lock_server)
    try:
        assert first.try_acquire("B(x=2)") is not None
        leases = second.try_acquire_many(["B(x=1)", "B(x=2)", "B(x=3)"])
        assert [lease is not None for lease in leases] == [True, False, True]
        assert leases[0] is not None and leases[0].fencing_token >= 1
        assert first.try_acquire_many(["B(x=1)", "B(x=3)"]) == [None, None]
        many = [f"M(i={i})" for i in range(600)]  # more than one request's worth
        granted = second.try_acquire_many(many)
        assert all(lease is not None for lease in granted)
        assert first.try_acquire(many[-1]) is None
    finally:
        first.close()
        second.close()


def test_released_leases_reach_the_server_soon_in_one_batch(lock_server: LockServer) -> None:
    owner, other = _provider(lock_server), _provider(lock_server)
    try:
        leases = owner.try_acquire_many([f"R(i={i})" for i in range(5)])
        for lease in leases:
            assert lease is not None
            owner.release(lease)
        # queued, then sent by the background thread within a moment
        wait_for(lambda: all(other.try_acquire(f"R(i={i})") is not None for i in range(5)),
                 timeout=5, what="queued releases to reach the server")
    finally:
        owner.close()
        other.close()


def test_queued_release_never_undoes_a_new_grant_of_the_same_key(lock_server: LockServer) -> None:
    owner, other = _provider(lock_server), _provider(lock_server)
    try:
        lease = owner.try_acquire("Q()")
        assert lease is not None
        owner.release(lease)
        again = owner.try_acquire_many(["Q()", "Q2()"])  # flushes the queued release first
        assert again[0] is not None
        time.sleep(0.2)  # longer than the release batch window
        assert other.try_acquire("Q()") is None  # still ours
        owner.check(again[0])
    finally:
        owner.close()
        other.close()


def test_fresh_lease_passes_check_without_asking_stale_one_asks(lock_server: LockServer) -> None:
    owner = _provider(lock_server, ttl=2)
    try:
        lease = owner.try_acquire("F()")
        assert lease is not None
        lock_server.stop()  # a fresh lease is ours without a round trip
        owner.check(lease)
        time.sleep(1.2)  # now older than half its TTL: the server must confirm it
        with pytest.raises(LeaseLostError, match="lost"):
            owner.check(lease)
    finally:
        owner.close()


def test_a_forced_release_gives_the_key_to_nobody_while_its_holder_may_commit_on_its_own_answer(
        lock_server: LockServer) -> None:
    """The holder of a lease confirmed less than half a TTL ago passes the fence check
    without asking: an operator's forced release must not let another holder in before
    that window has closed, or both would commit. The other client asks over and over
    from the moment of the release; the first grant it gets must come after the holder's
    window, and the holder's next check then asks the server and fails."""
    ttl = 6.0
    owner, other = _provider(lock_server, ttl=ttl), _provider(lock_server, ttl=ttl)
    try:
        lease = owner.try_acquire("Forced()")
        assert lease is not None
        window_ends = owner._held[lease].confirmed_at + ttl * LOCAL_CHECK_FRACTION
        status, answer = lock_server.request("POST", "/v1/force-release",
                                             {"keys": ["Forced()"], "reason": "stuck"})
        assert status == 200 and [item["key"] for item in answer["released"]] == ["Forced()"]
        assert 0 < answer["released"][0]["closed_for"] <= ttl * LOCAL_CHECK_FRACTION
        while True:
            taken = other.try_acquire("Forced()")
            answered_at = lease_clock()
            if taken is not None:
                break
            assert other.holder("Forced()").startswith("nobody (released by force")
            assert answered_at < window_ends + 30, "the key never opened again"
            time.sleep(0.05)
        assert answered_at >= window_ends, (
            f"granted to another holder {window_ends - answered_at:.2f} s before the old "
            "holder's fence window closed")
        assert taken.fencing_token > lease.fencing_token
        with pytest.raises(LeaseLostError, match="released by force|granted again"):
            owner.check(lease)
        other.check(taken)
    finally:
        owner.close()
        other.close()


def test_long_task_ids_fill_many_bodies_without_going_over_the_size_limit(
        lock_server: LockServer) -> None:
    """64 keys of 1,100 characters are more than one 64 KiB body: acquire-many, the
    heartbeat's renew and release-many each split them instead of getting 413."""
    owner, other = _provider(lock_server, ttl=1), _provider(lock_server, ttl=1)
    keys = [f"Long(i={i}, days=[{'2026-11-24, ' * 92}])" for i in range(64)]
    assert all(len(key) > 1_100 for key in keys)
    try:
        leases = owner.try_acquire_many(keys)
        assert all(lease is not None for lease in leases)
        time.sleep(2.5)  # past the 1 s TTL: only renewals keep them
        assert not any(lease.lost for lease in leases if lease is not None)
        assert other.try_acquire_many(keys) == [None] * len(keys)
        for lease in leases:
            assert lease is not None
            owner.release(lease)
        owner.flush_releases()
        assert all(lease is not None for lease in other.try_acquire_many(keys))
    finally:
        owner.close()
        other.close()


@pytest.mark.parametrize("how", ["one", "many"])
def test_taking_a_key_again_right_after_releasing_it_keeps_it(lock_server: LockServer,
                                                              how: str) -> None:
    """The server answers a same-holder acquire with the same token, so a queued release
    sent after it, or one on its way meanwhile, would free the new grant for another run."""
    owner = _provider(lock_server)
    try:
        for round_ in range(24):
            key = f"Again(n={round_})"
            first = owner.try_acquire(key)
            assert first is not None
            owner.release(first)
            time.sleep(round_ * 0.002)  # before, during and after the release batch is sent
            again = (owner.try_acquire(key) if how == "one"
                     else owner.try_acquire_many([key, f"Other(n={round_})"])[0])
            assert again is not None
            time.sleep(0.06)  # longer than the release batch window
            _, held = lock_server.request("POST", "/v1/holder", {"key": key})
            assert held["held"] and held["token"] == again.fencing_token, (round_, held)
    finally:
        owner.close()


def test_holder_after_a_refused_acquire_needs_no_round_trip(lock_server: LockServer) -> None:
    owner, other = _provider(lock_server, run_id="owner"), _provider(lock_server, run_id="other")
    try:
        assert owner.try_acquire("T") is not None
        assert other.try_acquire("T") is None
        lock_server.kill9()  # no server: only the refusal's own answer can name the holder
        assert other.holder("T") == f"host {owner.me.host} pid {owner.me.pid} run owner"
    finally:
        owner._stop.set()
        other._stop.set()


def test_a_queued_release_rides_along_with_the_next_acquire(lock_server: LockServer) -> None:
    provider = _provider(lock_server, ttl=30, run_id="rider")
    try:
        first = provider.try_acquire("First")
        assert first is not None
        provider.release(first)  # queued for a moment
        assert provider.try_acquire("Second") is not None  # carries the release along
        assert lock_server.request("POST", "/v1/holder", {"key": "First"})[1]["held"] is False
        again = provider.try_acquire("Second")  # its own lease again: idempotent
        assert again is not None
    finally:
        provider._stop.set()
    lock_server.stop()
    assert lock_server.proc is not None and lock_server.proc.stderr is not None
    log = lock_server.proc.stderr.read()
    assert "stopping after" in log and "release_many" not in log and "release " not in log


def test_the_transport_reads_every_framing_of_an_answer_and_survives_a_closed_connection(
        ) -> None:
    """The client's own HTTP/1.1 reader against a raw socket server on 127.0.0.1: a
    Content-Length body, a chunked one, one that runs to the end of an HTTP/1.0
    connection, `Connection: close`, and a kept-alive connection the server closed
    meanwhile (sent again once on a fresh connection)."""
    import threading

    from batchdeps.locks.transport import LockTransport

    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
        b'{"roles": []}',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"rol\r\n8;ext=1\r\nes": [1]\r\n1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n',
        None,  # close the kept-alive connection without answering
        b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 15\r\n\r\n{"roles": [22]}',
        b'HTTP/1.0 200 OK\r\n\r\n{"roles": [3]}',
    ]
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        pending = list(answers)
        while pending:
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as reader:  # both closed: the peer sees EOF
                while pending:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        byte = reader.read(1)
                        if not byte:
                            break
                        head += byte
                    if not head:
                        break
                    seen.append(head)
                    answer = pending.pop(0)
                    if answer is None:
                        break  # drop the connection: the client must try once more
                    conn.sendall(answer)
                    if b"close" in answer or b"HTTP/1.0" in answer:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = LockTransport(f"http://127.0.0.1:{listener.getsockname()[1]}", "tok-1",
                              retry_for=2.0)
    try:
        assert transport.call("whoami") == (200, {"roles": []})
        assert transport.call("whoami") == (200, {"roles": [1]})
        assert transport.call("whoami") == (200, {"roles": [22]})
        assert transport.call("whoami") == (200, {"roles": [3]})
    finally:
        transport.close()
        listener.close()
    thread.join(timeout=5)
    assert len(seen) == 5
    assert all(head.startswith(b"GET /v1/whoami HTTP/1.1\r\n") for head in seen)
    assert all(b"Authorization: Bearer tok-1\r\n" in head for head in seen)


def test_leases_asked_for_ahead_are_taken_without_waiting_and_answered_once(
        lock_server: LockServer) -> None:
    """acquire_ahead returns at once; the acquirer thread takes the leases (held on the
    server before anyone picks an answer up); try_acquire and try_acquire_many answer
    from it, a refused key with its holder noted; asked again, a key goes to the server."""
    owner, other = _provider(lock_server, run_id="r-ahead"), _provider(lock_server)
    holder = holder_json(lock_server)
    try:
        assert other.try_acquire("Taken()") is not None
        owner.acquire_ahead(["A()", "B()", "C()", "Taken()"])
        wait_for(lambda: all(holder(key).get("holder", {}).get("run_id") == "r-ahead"
                             for key in ("A()", "B()", "C()")),
                 what="the leases asked for ahead to be taken")
        lease_a = owner.try_acquire("A()")
        assert lease_a is not None and lease_a.fencing_token == holder("A()")["token"]
        refused, lease_b, lease_c = owner.try_acquire_many(["Taken()", "B()", "C()"])
        assert refused is None and lease_b is not None and lease_c is not None
        assert owner.holder("Taken()").endswith(f"run {other.me.run_id}")  # from the refusal
        again = owner.try_acquire("A()")  # a request of its own: ours, so the same token
        assert again is not None and again.fencing_token == lease_a.fencing_token
        owner.check(lease_a)
    finally:
        owner.close()
    try:
        assert None not in other.try_acquire_many(["A()", "B()", "C()"])  # close() freed them
    finally:
        other.close()


def test_an_answer_asked_for_ahead_that_never_came_raises_when_it_is_picked_up(
        lock_server: LockServer) -> None:
    owner = _provider(lock_server, ttl=1)
    try:
        lock_server.stop()
        owner.acquire_ahead(["Never()"])
        with pytest.raises(LockServerUnavailable, match="cannot be reached"):
            owner.try_acquire("Never()")
    finally:
        owner.close()


def test_close_releases_leases_asked_for_ahead_that_no_step_picked_up(
        lock_server: LockServer) -> None:
    owner, other = _provider(lock_server, run_id="r-owner"), _provider(lock_server)
    holder = holder_json(lock_server)
    try:
        owner.acquire_ahead([f"U(n={n})" for n in range(5)])
        wait_for(lambda: holder("U(n=4)").get("holder", {}).get("run_id") == "r-owner",
                 what="the leases to be taken")
    finally:
        owner.close()
    try:
        assert all(lease is not None
                   for lease in other.try_acquire_many([f"U(n={n})" for n in range(5)]))
    finally:
        other.close()


def test_a_keys_length_in_a_body_is_what_json_sends() -> None:
    """The batching's fast count of a key's length as sent matches json.dumps, escapes and
    all (quotes, backslashes, control, non-ASCII and format characters)."""
    import json
    import random

    from batchdeps.locks.client import sent_length

    rand = random.Random(22)
    alphabet = 'aZ09 (=,)"\\\t\n\x00\x7f\x1bé€\u202e\U0001f600-_.'
    keys = ["Clean(day=2026-11-24)", "", " ", *("".join(rand.choice(alphabet) for _ in
                                                   range(rand.randint(1, 12)))
                                               for _ in range(500))]
    assert [sent_length(key) for key in keys] == [len(json.dumps(key)) for key in keys]
