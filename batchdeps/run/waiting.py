"""Waiting for missing external inputs (`--wait-for-inputs`): batched polls until they arrive.

With a wait set, the runner hands every missing external input of the plan to an
`InputWaiter` when the run starts, instead of closing it as "missing input"; everything
that does not depend on one is built meanwhile. The waiter looks at all inputs still
missing at once (`arrival.look_many`: one batch of existence checks, one LIST per prefix
on S3), with delays growing from `FIRST_POLL` to `poll` with jitter (`backoff.Backoff`).
An input that arrived closes as `complete`, so its downstream goes on in the same run.
When the wait runs out, one last look; what is still missing then closes as "missing
input" (exit 3), its downstream as blocked, as without a wait.

An input that cannot arrive before a known time (`ready_after`, or a file that must stay
unchanged for `stable_for` more seconds) is not looked at again before then. A look that
fails (storage unreachable) is logged and made again at the next poll; only the last
look's failure stops the run, as any failed check does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from .. import logs
from ..arrival import Sightings, look_many
from ..backoff import Backoff
from ..durations import format_duration
from ..errors import TargetCheckError
from ..report.events import WaitingForInput
from ..report.result import Status
from ..resolver import Step
from .attempt import Host, RunOptions

log = logs.get()

#: Seconds before the first look again (less if `poll` is shorter); doubling up to `poll`.
FIRST_POLL = 1.0
#: Never look again sooner than this after a look.
MIN_GAP = 0.05


class InputWaiter:
    """The missing inputs one run waits for, and when it looks at them next.

    Args:
        host: the runner: told of events and of each input that is closed.
        options: `wait_for_inputs` (seconds the run waits in all) and `poll` (the cap).
        clock: the runner's monotonic clock; `wall`: seconds since the epoch.
    """

    def __init__(self, host: Host, options: RunOptions,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random) -> None:
        assert options.wait_for_inputs is not None
        self.host = host
        self.run_id = options.run_id
        self.wait = float(options.wait_for_inputs)
        self.backoff = Backoff(first=min(FIRST_POLL, options.poll), factor=2.0,
                               cap=options.poll, jitter=0.5)
        self.clock = clock
        self.wall = wall
        self.rand = rand
        self.sightings = Sightings(clock)
        #: step -> wall-clock time its wait began
        self.waiting: dict[Step, float] = {}
        self.due = float("inf")  # clock time of the next look
        self.deadline = float("inf")
        self._until = float("inf")  # the deadline as seconds since the epoch
        self.polls = 0

    def start(self, steps: list[Step]) -> None:
        """Begin the wait, from now, with `steps` (MISSING steps of the plan)."""
        self.deadline = self.clock() + self.wait
        since = self.wall()
        self._until = since + self.wait
        self.add(steps, since)

    def add(self, steps: list[Step], since: float | None = None) -> None:
        """Wait for `steps` too (missing inputs of tasks a run() yielded), until the same
        deadline; they are looked at with the others."""
        since = self.wall() if since is None else since
        for step in steps:
            self.waiting[step] = since
            self.host.emit(WaitingForInput(self.run_id, step.task_id, step.task.family(),
                                           tuple(step.missing_paths), since, self._until,
                                           step.reason))
        if steps and self.due == float("inf"):
            self._schedule(self.clock(), [None])

    def poll(self) -> None:
        """Look at every input still waited for; close those that arrived (and, when the
        wait has run out, the rest as missing)."""
        now = self.clock()
        final = now >= self.deadline
        self.polls += 1
        steps = list(self.waiting)
        try:
            looks = look_many([step.task for step in steps], self.sightings, self.wall)
        except TargetCheckError as exc:
            if final:
                raise
            log.warning("could not look at the %d input(s) waited for (%s); looking again "
                        "later", len(steps), exc)
            self._schedule(now, [None])
            return
        still = []
        for step, arrival in zip(steps, looks):
            if arrival.arrived:
                since = self.waiting.pop(step)
                waited = format_duration(max(0.0, self.wall() - since))
                log.info("input %s arrived after %s of waiting", step.task_id, waited)
                self.host.close(step, Status.COMPLETE, reason=f"arrived after {waited} "
                                "of waiting")
            else:
                still.append((step, arrival))
        log.debug("look %d at the inputs waited for: %d arrived, %d still missing",
                  self.polls, len(steps) - len(still), len(still))
        if not still:
            self.due = float("inf")
            return
        if final:
            waited = format_duration(self.wait)
            self.due = float("inf")
            for step, arrival in still:
                del self.waiting[step]
                self.host.close(step, Status.MISSING_INPUT,
                                error=f"{arrival.reason}; still so after waiting {waited}",
                                missing_paths=list(arrival.paths) or step.missing_paths)
            return
        self._schedule(now, [arrival.not_before for _, arrival in still])

    def _schedule(self, now: float, not_before: list[float | None]) -> None:
        """The next look: after the backoff's delay, or when the first input that cannot
        arrive sooner can (when every input waited for has such a time)."""
        delay = self.backoff.delay(self.polls + 1, self.rand)
        known = [t for t in not_before if t is not None]
        if known:
            until_first = min(known) - self.wall()
            delay = until_first if len(known) == len(not_before) else min(delay, until_first)
        self.due = min(now + max(delay, MIN_GAP), self.deadline)
