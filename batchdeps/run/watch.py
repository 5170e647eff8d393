"""Watching a target (`batchdeps watch`): build it again whenever its external inputs change.

    watcher = Watcher(requested, new_session, provider, every=600)
    watcher.run()          # until a signal (KeyboardInterrupt) or stop()

One watcher per target builds: it holds the *watch lease* `watch:<task id>` from the
run's lock provider (machine-local locks, or the lock server), taken before the first
round and kept for the life of the process. A second watcher of the same target stands
by, asking for the lease every `STANDBY_RETRY` seconds, and takes over when the first
stops or dies (machine-local: at its next try; lock server: once the lease's TTL has run
out). The lease only decides which watcher builds: every round is an ordinary run under
the usual task leases, so a watcher and a `batchdeps run` of the same target from cron
never build one task twice either.

Rounds: one when the lease is taken (as `batchdeps run` would), then one each time a
look at the external inputs finds that one has *arrived* (missing, or not yet arrived by
its `ready_after` / `stable_for`, and now there) or was *rewritten* (present before and
after, with another identity: a local file's mtime and size, an S3 object's ETag). An
input that disappears is logged, not acted on. Looks are made every `every` seconds, all
inputs in one batch (`InputWatch.look`: one LIST per prefix on S3, as completeness), and
sooner when an input that has not arrived can arrive sooner (`stable_for`). A failed
task is tried again at the next round, that is, when an input changes. An error that ends
a round early (storage or the lock server unreachable) ends the watcher when it is the
first round (nothing was ever built: as `batchdeps run`, with its exit code), and is
otherwise logged and the round made again at the next look.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import logs
from ..arrival import Sightings, look_many
from ..durations import format_duration
from ..errors import BatchdepsError, ExitCode, TargetCheckError
from ..paths import shown_all
from ..resolver import MISSING, default_complete, full_graph
from ..task import ExternalTask, Task, flatten_outputs

if TYPE_CHECKING:
    from ..locks.base import Lease, LockProvider
    from .session import Session

log = logs.get()

#: Seconds between two tries for the watch lease while another watcher holds it.
STANDBY_RETRY = 2.0
#: Never look at the inputs again sooner than this after a look.
MIN_GAP = 0.5
#: Prefix of watch lease keys (task leases are task ids, resource slots `resource:...`).
WATCH_PREFIX = "watch:"


def watch_key(requested: Sequence[Task]) -> str:
    """The watch lease's key: `watch:<task id>`, or for a range of requested tasks its
    family, count and a hash of the ids (short enough for the lock server's keys)."""
    ids = sorted(task.task_id for task in requested)
    if len(ids) == 1 and len(ids[0]) <= 200:
        return WATCH_PREFIX + ids[0]
    digest = hashlib.blake2b("\n".join(ids).encode(), digest_size=10).hexdigest()
    return f"{WATCH_PREFIX}{requested[0].family()}[{len(ids)}]:{digest}"


@dataclass(frozen=True)
class InputState:
    """What one look saw of an external input: arrived or not, and its outputs' identities."""

    arrived: bool
    identities: tuple[Any, ...]


@dataclass
class Look:
    """What changed since the previous look (one line per input), and when to look next."""

    changes: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    #: wall-clock time at which an input that has not arrived may have (None: no such)
    not_before: float | None = None


class InputWatch:
    """The external inputs of a target, looked at in one batch; what changed since last."""

    def __init__(self, tasks: Iterable[Task] = (), wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.wall = wall
        self.sightings = Sightings(clock)
        self.tasks: dict[Task, None] = {}
        self.seen: dict[Task, InputState] = {}
        #: from the last look: when an input that had not arrived may have (wall clock)
        self.not_before: float | None = None
        self.add(tasks)

    def add(self, tasks: Iterable[Task]) -> int:
        """Watch the external ones of `tasks` too; how many were new."""
        before = len(self.tasks)
        for task in tasks:
            if isinstance(task, ExternalTask):
                self.tasks.setdefault(task)
        return len(self.tasks) - before

    def missing(self, tasks: Iterable[Task]) -> None:
        """Note `tasks` as not there (a round found them missing), so that the next look
        that finds one there tells it as arrived, even if it is the first look at it."""
        for task in tasks:
            if task in self.tasks:
                self.seen[task] = InputState(False, ())

    def look(self) -> Look:
        """Look at every input once; the first look of an input only notes what it saw.

        Raises:
            TargetCheckError: the storage could not say (nothing is noted then).
            TaskDefinitionError: a bad `ready_after`/`stable_for`, or `complete()` raised.
        """
        from ..targets import check_identities

        tasks = list(self.tasks)
        outputs = [flatten_outputs(task) for task in tasks]
        identities = check_identities([target for group in outputs for target in group])
        # Inputs with their own rules (ready_after, stable_for, complete()) are decided by
        # arrival.py; the others have arrived when every output has an identity.
        ruled = [task for task in tasks if not default_complete(task)]
        arrivals = dict(zip(ruled, look_many(ruled, self.sightings, self.wall))) if ruled \
            else {}
        result = Look()
        position = 0
        for task, group in zip(tasks, outputs):
            seen = identities[position:position + len(group)]
            position += len(group)
            arrival = arrivals.get(task)
            arrived = arrival.arrived if arrival is not None else all(
                identity is not None for identity in seen)
            if arrival is not None and arrival.not_before is not None and not arrived:
                result.not_before = arrival.not_before if result.not_before is None else min(
                    result.not_before, arrival.not_before)
            state = InputState(arrived, tuple(_frozen(identity) for identity in seen))
            previous = self.seen.get(task)
            self.seen[task] = state
            if previous is None:
                continue
            paths = shown_all([target.url for target in group]) or task.task_id
            if arrived and not previous.arrived:
                result.changes.append(f"input {paths} arrived")
            elif arrived and state.identities != previous.identities:
                result.changes.append(f"input {paths} rewritten")
            elif previous.arrived and not arrived:
                result.gone.append(f"input {paths} gone")
        self.not_before = result.not_before
        return result


def _frozen(identity: dict[str, Any] | None) -> Any:
    return None if identity is None else tuple(sorted(identity.items()))


class Watcher:
    """The watch loop of one target (see the module docstring).

    Args:
        requested: the tasks to keep built.
        new_session: a Session for one round (a new run id per round).
        provider: the lock provider the watch lease comes from (started and closed here).
        every: seconds between two looks at the inputs.
        clock, sleep, wall: injectable for tests.
    """

    def __init__(self, requested: Sequence[Task], new_session: Callable[[], Session],
                 provider: LockProvider, every: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time) -> None:
        self.requested = list(requested)
        self.new_session = new_session
        self.provider = provider
        self.every = float(every)
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self.key = watch_key(self.requested)
        self.inputs = InputWatch(wall=wall, clock=clock)
        self.lease: Lease | None = None
        self.rounds = 0
        self.stopped = False
        self.exit_code = ExitCode.OK
        self._standing_by = False
        #: the last round stopped on an error (storage, lock server): the next look runs
        #: it again even if no input changed
        self._round_failed = False

    @property
    def name(self) -> str:
        first = self.requested[0].task_id
        return first if len(self.requested) == 1 else f"{first} and " \
            f"{len(self.requested) - 1} more"

    def stop(self) -> None:
        """Stop after the current step (a round, a look, a sleep)."""
        self.stopped = True

    def run(self) -> ExitCode:
        """Watch until stopped; the exit code: INTERRUPTED when a round was interrupted.

        Raises:
            BatchdepsError: the lock provider cannot start, or the first round could not
                be resolved (a bad task definition: nothing would ever build).
        """
        self.provider.start()
        try:
            self._loop()
        finally:
            if self.lease is not None:
                self.provider.release(self.lease)
            self.provider.close()
        return self.exit_code

    def _loop(self) -> None:
        pending: list[str] = []
        next_look = 0.0
        while not self.stopped:
            if self.lease is None or self.lease.lost:
                if not self._take_lease():
                    self.sleep(min(self.every, STANDBY_RETRY))
                    continue
                self.inputs.add(full_graph(self.requested))
                self._look()  # what is there now: later looks compare with it
                pending = ["the watch lease was taken"]
            if pending:
                self._round(pending)
                pending = []
                if self.stopped:
                    return
                next_look = self._next_look()
            self._sleep_until(next_look)
            if self.stopped or self.lease is None or self.lease.lost:
                continue
            look = self._look()
            next_look = self._next_look()
            if look is not None:
                pending = look.changes or (
                    ["the last round could not finish: trying again"] if self._round_failed
                    else [])

    def _next_look(self) -> float:
        """`every` from now, or sooner when an input that has not arrived can by then."""
        now = self.clock()
        soonest = self.inputs.not_before
        if soonest is None:
            return now + self.every
        return now + min(self.every, max(MIN_GAP, soonest - self.wall()))

    def _sleep_until(self, moment: float) -> None:
        """Sleep until `moment` (clock time), waking now and then to notice a lost lease."""
        while not self.stopped and not (self.lease is not None and self.lease.lost):
            left = moment - self.clock()
            if left <= 0:
                return
            self.sleep(min(left, STANDBY_RETRY))

    def _take_lease(self) -> bool:
        if self.lease is not None and self.lease.lost:
            log.warning("watch lease on %s lost (%s): standing by", self.name,
                        self.lease.lost_reason or "taken over")
            self.lease = None
            self._standing_by = False
        lease = self.provider.try_acquire(self.key)
        if lease is None:
            if not self._standing_by:
                holder = self.provider.holder(self.key)
                log.info("another watcher of %s holds its watch lease%s: standing by "
                         "(trying every %s)", self.name, f" ({holder})" if holder else "",
                         format_duration(min(self.every, STANDBY_RETRY)))
                self._standing_by = True
            return False
        self.lease = lease
        self._standing_by = False
        log.info("watching %s: looking at its external inputs every %s", self.name,
                 format_duration(self.every))
        return True

    def _look(self) -> Look | None:
        try:
            look = self.inputs.look()
        except TargetCheckError as exc:
            log.warning("could not look at the %d input(s) of %s (%s); looking again in %s",
                        len(self.inputs.tasks), self.name, exc, format_duration(self.every))
            return None
        for line in look.gone:
            log.warning("%s (not rebuilt for that; the next round will say it is missing)",
                        line)
        return look

    def _round(self, why: list[str]) -> None:
        """One run over the requested tasks; the watcher stops when it was interrupted."""
        self.rounds += 1
        shown = "; ".join(why[:5]) + (f"; and {len(why) - 5} more" if len(why) > 5 else "")
        log.info("round %d of %s: %s", self.rounds, self.name, shown)
        session = self.new_session()
        self._round_failed = False
        try:
            plan = session.resolve(self.requested)
            self.inputs.add(step.task for step in plan.steps)
            if not plan.steps:
                hint = ""
                if any(line.endswith(" rewritten") for line in why) and \
                        "upstream" not in (session.rerun_triggers or ()):
                    hint = (" (a rewritten input rebuilds what reads it only with "
                            "--rerun-triggers upstream)")
                log.info("round %d: nothing to do: every requested task is complete%s",
                         self.rounds, hint)
                return
            result = session.execute(plan)
            # and what the run()s yielded; those the round found missing count as such
            self.inputs.add(step.task for step in plan.steps)
            self.inputs.missing(step.task for step in plan.steps if step.kind is MISSING)
        except BatchdepsError as exc:
            if self.rounds == 1:
                raise
            log.error("round %d could not finish: %s; trying again at the next look",
                      self.rounds, exc)
            self._round_failed = True
            return
        if result.interrupted:
            self.exit_code = ExitCode.INTERRUPTED
            self.stopped = True
            return
        log.info("round %d done (exit %d); watching %d input(s)", self.rounds,
                 int(result.exit_code), len(self.inputs.tasks))
