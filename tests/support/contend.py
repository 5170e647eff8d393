"""Contenders for one key at a time, in processes of their own, started together each round.

`contend_http` asks a lock server (one replica of several) over its own persistent HTTP
connection. Each contender waits at a shared barrier before every round, so all of them
ask for round r's key at the same instant, and puts (me, [(round, token) of each round it
won]) on the queue. Run with multiprocessing's spawn context: the function is found by its
module name.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from support.lockutil import TOKEN


def contend_http(port: int, me: int, rounds: int, barrier: Any, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    holder = {"host": "contender", "pid": me, "run_id": "run"}
    won: list[tuple[int, int]] = []
    for r in range(rounds):
        body = json.dumps({"key": f"Race(r={r})", "holder": holder, "ttl": 60})
        barrier.wait()
        conn.request("POST", "/v1/acquire", body=body, headers=headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"round {r}: HTTP {response.status} {answer}")
        if answer["granted"]:
            won.append((r, int(answer["token"])))
    conn.close()
    out.put((me, won))


def race(target: Any, firsts: list[Any], contenders: int, rounds: int
         ) -> dict[int, list[tuple[int, int]]]:
    """Run `contenders` processes of `target(firsts[me % len(firsts)], me, rounds, ...)`;
    round -> [(contender, token)] of its winners."""
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(contenders, timeout=60)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(firsts[me % len(firsts)], me, rounds, barrier,
                                              out)) for me in range(contenders)]
    for proc in procs:
        proc.start()
    winners: dict[int, list[tuple[int, int]]] = {}
    answered = 0
    try:
        while answered < contenders:
            try:
                me, won = out.get(timeout=1.0)
            except queue.Empty:
                failed = [proc.exitcode for proc in procs if proc.exitcode not in (None, 0)]
                assert not failed, f"a contender failed (exit codes {failed})"
                continue
            answered += 1
            for r, token in won:
                winners.setdefault(r, []).append((me, token))
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]
    return winners
