"""The PostgreSQL store's group commit: lease changes made at once share one statement.

Every lease change of the store (an acquire, a release, a renewal, a resource slot) is a
`Change` handed to the `Combiner`. One thread at a time leads: it takes every change
waiting, makes them (`apply(batch)`: one statement per kind, all the batch's releases in
one, then all its acquires in another, then all its renewals in a third, whoever sent
them), answers each, and hands the lead to the oldest change that arrived meanwhile.
While one statement runs, the changes that arrive wait for the next, so under load N
changes cost one round trip and one commit instead of N; alone, a change is made at once.

The lock server does not wait on its event loop, nor keep a thread per request: its
change functions go through `Rounds` (`PgLeaseStore.off_loop`). A round runs each
function waiting with its store calls answered from what was already made for it
(`Replayed`); the call it makes next is collected, those of every function are made in
one batch in a thread of their own while the loop serves on, and the functions go round
again. A change function must therefore do nothing but call the store (the server's do
just that: the releases an acquire carries, then the acquire).

Each statement commits before any change in it is answered (a statement of grants with its
own WAL flush, so a grant is on disk before it is announced, in a batch as alone). One
statement is one transaction: should it fail, `apply` makes each change of the batch again
on its own, so one bad request never fails another (a connection error fails every change,
with StoreUnavailable: nothing was decided, and each is safe to send again).

The statements themselves are in pgwrites.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar


T = TypeVar("T")
#: changes of one kind share a statement; SOLO changes (a resource slot) are made alone
ACQUIRE, RELEASE, RENEW, SOLO = "acquire", "release", "renew", "solo"


class Change:
    """One call's change, waiting for the statement that makes it."""

    __slots__ = ("kind", "args", "result", "error", "finished", "wake")

    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        self.kind = kind
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.wake = threading.Event()  # set when answered, or when it is to lead

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.finished = True


class Combiner:
    """Changes from many threads, made in batches by one leading thread at a time."""

    def __init__(self, apply: Callable[[list[Change]], None]) -> None:
        self.apply = apply  # answers every change of the batch; raises nothing
        self.batches = 0  # batches made
        self.changes = 0  # changes made in them
        self._lock = threading.Lock()
        self._waiting: list[Change] = []
        self._leading = False

    def submit(self, kind: str, *args: Any) -> Any:
        """Make the change (`kind`, `args`) with those waiting; its result, or raise."""
        change = Change(kind, args)
        with self._lock:
            self._waiting.append(change)
            lead = not self._leading
            self._leading = True
        if not lead:
            change.wake.wait()
        if not change.finished:  # it leads: the batch it takes includes itself
            self._lead()
        if change.error is not None:
            raise change.error
        return change.result

    def submit_many(self, changes: Sequence[Change]) -> None:
        """Make `changes` with those waiting; each is then answered (result or error)."""
        if not changes:
            return
        with self._lock:
            self._waiting.extend(changes)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()  # the batch it takes holds every one of them
        for change in changes:
            change.wake.wait()
            if not change.finished:  # it leads: the batch it takes holds the rest of ours
                self._lead()

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self.apply(batch)
        except BaseException as exc:  # noqa: BLE001 - a bug in apply: each change hears of it
            for change in batch:
                if not change.finished:
                    change.answer(error=exc)
        finally:
            self.batches += 1
            self.changes += len(batch)
            with self._lock:
                if self._waiting:
                    self._waiting[0].wake.set()  # the oldest waiting change leads next
                else:
                    self._leading = False
            for change in batch:
                if not change.finished:
                    change.answer(error=RuntimeError("a lease change was not made"))
                change.wake.set()


class Deferred(BaseException):
    """Raised by a store call made while replaying a change past its log: the change it
    wants made next (a BaseException, so that no `except Exception` in between stops it)."""

    def __init__(self, change: Change) -> None:
        super().__init__(change.kind)
        self.change = change


class Replay:
    """The answers to a change's store calls so far, in order (see `Replayed`)."""

    __slots__ = ("answers", "used")

    def __init__(self) -> None:
        self.answers: list[Change] = []  # the changes made for it, answered
        self.used = 0


class Replayed:
    """Calls of a server's change function answered from its log, on the event loop.

    The lock server's GroupCommit runs a change (a function that does nothing but call the
    store) with `run()`: each store call it makes is answered from the change's `Replay`
    while there is an answer, and the first one beyond raises `Deferred` with the change it
    wants. The server collects those of every request waiting, has them made together in
    one batch off the loop (`make()`), and runs each function again: so the event loop
    never waits for the database, and there is no thread per request.
    """

    def __init__(self, combiner: Combiner) -> None:
        self.combiner = combiner
        self._local = threading.local()  # the Replay being run on this thread, if any

    def run(self, replay: Replay, call: Callable[[], Any]) -> Any:
        """`call()` with its store calls answered from `replay` (Deferred past it)."""
        self._local.replay = replay
        replay.used = 0
        try:
            return call()
        finally:
            self._local.replay = None

    def change(self, kind: str, *args: Any) -> Any:
        """A store call's change: from the replay being run, or made now (`submit`)."""
        replay: Replay | None = getattr(self._local, "replay", None)
        if replay is None:
            return self.combiner.submit(kind, *args)
        if replay.used == len(replay.answers):
            raise Deferred(Change(kind, args))
        done = replay.answers[replay.used]
        replay.used += 1
        if done.kind != kind or done.args != args:
            raise RuntimeError(f"a lease change replayed differently ({kind}, not "
                               f"{done.kind}): a change function must only call the store")
        if done.error is not None:
            raise done.error
        return done.result

    def make(self, changes: Sequence[Change]) -> None:
        """Make `changes` in one batch (from a thread off the event loop)."""
        self.combiner.submit_many(changes)


class Rounds:
    """The server's changes (`PgLeaseStore.off_loop`), made in rounds on its event loop.

    A round replays every change function waiting (`Replayed.run`): those that finish are
    answered; the store calls that the others want next are made together in one batch,
    in the one thread this keeps for it, while the loop serves on (one call alone is made
    at once, on the loop); then those functions go round again, with the changes handed in
    meanwhile. A request whose change is two
    calls (the releases an acquire carries, then the acquire) takes two rounds.
    """

    def __init__(self, replayed: Replayed) -> None:
        self.replayed = replayed
        self.rounds = 0  # batches made
        self._waiting: list[tuple[Replay, Callable[[], Any], asyncio.Future[Any]]] = []
        self._going: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._waiting.append((Replay(), call, future))
        if self._going is None:
            self._going = loop.create_task(self._go())
        return await future

    async def _go(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                wanted: list[tuple[tuple[Replay, Callable[[], Any], asyncio.Future[Any]],
                                   Change]] = []
                for entry in batch:
                    replay, call, future = entry
                    if future.done():  # its request is gone: nothing more is made for it
                        continue
                    try:
                        result = self.replayed.run(replay, call)
                    except Deferred as more:
                        wanted.append((entry, more.change))
                    except Exception as exc:  # noqa: BLE001 - this request's own answer
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
                if not wanted:
                    continue
                changes = [change for _, change in wanted]
                if len(changes) == 1:
                    # Alone: made here, a thread hand-over and back fewer (the requests that
                    # come meanwhile wait in their sockets and make the next round).
                    self.replayed.make(changes)
                else:
                    if self._thread is None:
                        self._thread = ThreadPoolExecutor(1, "batchdeps-lease-changes")
                    await loop.run_in_executor(self._thread, self.replayed.make, changes)
                self.rounds += 1
                for (replay, _, _), change in wanted:
                    replay.answers.append(change)
                self._waiting[:0] = [entry for entry, _ in wanted]
        finally:
            self._going = None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
