"""The whole graph below the requested tasks, with each task's state and the reasons.

Unlike resolution, which stops at a complete task (Luigi's rule), this walks everything, so
a deleted intermediate under a complete report shows as `complete, upstream missing`, and
an input changed after its output was made as `complete, upstream newer`. Neither changes
what `batchdeps run` does; the exit code answers "would `run` build something?" as
`make -q` does: 0 no, 1 yes, 3 something it needs is blocked by a missing external input.
Cost is O(tasks + edges): one batch of existence checks, one modification-time look-up
per output of a complete task, one question about lock holders for all incomplete tasks.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ExitCode
from ..arrival import guarded, look
from ..procinfo import hostname
from ..resolver import (
    call_complete,
    cycle_error,
    default_complete,
    full_graph,
    is_plain_wrapper,
)
from ..staleness import assess, stamp
from ..targets import Target, check_exists, check_identities
from ..targets.sidecar import read_records, record_target
from ..task import ExternalTask, Task, flatten_outputs
from .holders import HolderLookup

if TYPE_CHECKING:
    from .yielded import YieldedLookup

COMPLETE = "complete"
MISSING = "missing"
EXTERNAL_MISSING = "external-missing"
BLOCKED = "blocked"
RUNNING = "running"
#: Every state, as the JSON of `status` and `graph` spells it (the contract's list).
STATES = (COMPLETE, MISSING, EXTERNAL_MISSING, BLOCKED, RUNNING)


@dataclass(eq=False)
class Node:
    """One task of the graph, its requirements and what is known about it."""

    task: Task
    requires: list[Node] = field(default_factory=list)
    outputs: list[Target] = field(default_factory=list)
    complete: bool = False
    state: str = ""
    missing_outputs: list[str] = field(default_factory=list)
    #: `batchdeps run` would build it (or it blocks something run would build).
    needed: bool = False
    blocked_by: Node | None = field(default=None, repr=False)
    upstream_missing: Node | None = field(default=None, repr=False)
    upstream_newer: Node | None = field(default=None, repr=False)
    holder: str = ""
    #: Why a complete task is stale by the rerun triggers asked for (empty: it is not).
    stale: list[str] = field(default_factory=list)
    #: Complete, could have a build record, has none (only looked at with triggers).
    unrecorded: bool = False
    #: those of `requires` that its run() yielded in the last run that recorded it
    yielded: list[Node] = field(default_factory=list)
    #: an external input with `ready_after`/`stable_for` not taken yet: why (arrival.py)
    not_arrived: str = ""
    #: the worker its last recorded attempt ran on, when an executor named one (Dask)
    worker: str = ""

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def external(self) -> bool:
        return isinstance(self.task, ExternalTask)

    @property
    def wrapper(self) -> bool:
        return is_plain_wrapper(self.task)

    @property
    def label(self) -> str:
        """The state as a person reads it: `complete, upstream missing`, `running here`..."""
        if self.state == RUNNING:
            return "running here" if _is_here(self.holder) else "running elsewhere"
        if self.state == EXTERNAL_MISSING:
            return "external missing"
        if self.state != COMPLETE:
            return self.state
        flags = [COMPLETE]
        if self.stale:
            flags.append("stale")
        elif self.unrecorded:
            flags.append("no record")
        if self.upstream_missing is not None:
            flags.append("upstream missing")
        if self.upstream_newer is not None:
            flags.append("upstream newer")
        return ", ".join(flags)

    def reasons(self) -> list[str]:
        """Why the node has its state, one short sentence each."""
        reasons: list[str] = []
        if self.state == EXTERNAL_MISSING:
            reasons += [self.not_arrived] if self.not_arrived else [
                f"external input {url} missing" for url in self.missing_outputs]
        elif self.state in (MISSING, BLOCKED, RUNNING):
            reasons += [f"output {url} missing" for url in self.missing_outputs]
            if not self.outputs and not self.missing_outputs:
                pending = [r for r in self.requires if not r.complete]
                reasons.append(f"upstream {pending[0].task_id} not complete" if pending
                               else "has no outputs")
        if self.state == BLOCKED and self.blocked_by is not None:
            paths = ", ".join(self.blocked_by.missing_outputs) or self.blocked_by.task_id
            reasons.append(f"blocked: {self.blocked_by.not_arrived}" if
                           self.blocked_by.not_arrived else
                           f"blocked: external input {paths} missing")
        if self.state == RUNNING:
            reasons.append(f"lock held by {self.holder}")
        reasons += [f"stale: {reason}" for reason in self.stale]
        if self.unrecorded and not self.stale:
            reasons.append("no record: outputs built before build records or by another "
                           "tool; up to date unless --rerun-triggers ...,unrecorded")
        if self.upstream_missing is not None:
            reasons.append(f"upstream {self.upstream_missing.task_id} missing")
        if self.upstream_newer is not None:
            reasons.append(f"upstream {self.upstream_newer.task_id} is newer than its user")
        if self.worker:
            reasons.append(f"last attempt ran on {self.worker}")
        if not self.complete and not self.needed and not self.external:
            reasons.append("not rebuilt by `run`: what needs it is complete "
                           "(rebuild it with --force-from)")
        return reasons


@dataclass
class Survey:
    """Every task reachable from the requested ones, requirements before their users."""

    roots: list[Node]
    nodes: list[Node]
    #: the rerun triggers the survey looked at (none: staleness was not looked at)
    triggers: frozenset[str] = frozenset()

    @property
    def stale(self) -> list[Node]:
        """The tasks `run` with the same triggers would rebuild although complete."""
        return [node for node in self.nodes if node.stale]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for node in self.nodes:
            counts[node.state] += 1
        return counts

    @property
    def exit_code(self) -> ExitCode:
        """0 `run` has nothing to do, 1 it would build something, 3 something is blocked."""
        needed = [node for node in self.nodes if node.needed]
        if any(node.state in (BLOCKED, EXTERNAL_MISSING) for node in needed):
            return ExitCode.MISSING_INPUT
        if any(not node.complete or node.stale for node in needed):
            return ExitCode.FAILED  # 1 here means "work to do", as make -q
        return ExitCode.OK


def survey(requested: Iterable[Task], holders: HolderLookup | None = None,
           newer: bool = True, rerun_triggers: Iterable[str] = (),
           yielded: YieldedLookup | None = None) -> Survey:
    """The state of every task below `requested`.

    Args:
        requested: the tasks asked about.
        holders: asked once, without waiting, who holds which incomplete task (None: not
            asked; see holders.py).
        newer: compare modification times to find `upstream newer`.
        rerun_triggers: also find which complete tasks are stale by these triggers
            (staleness.py): their build records are read (none: no record is read).
        yielded: what a task's run() yielded, as last recorded (see yielded.py): shown as
            requirements of that task.

    Raises:
        TaskDefinitionError, CycleError, TargetCheckError: as resolution does.
    """
    was_enabled = gc.isenabled()
    gc.disable()  # as in resolve(): many objects, no cyclic garbage until the end
    try:
        return _survey(list(dict.fromkeys(requested)), holders, newer,
                       frozenset(rerun_triggers), yielded)
    finally:
        if was_enabled:
            gc.enable()


def _survey(roots: list[Task], holders: HolderLookup | None, newer: bool,
            triggers: frozenset[str], yielded: YieldedLookup | None = None) -> Survey:
    graph = full_graph(roots)
    dynamic = _add_yielded(graph, yielded) if yielded is not None else {}
    nodes = {task: Node(task) for task in graph}
    for task, reqs in graph.items():
        nodes[task].requires = [nodes[req] for req in reqs]
    for task, extra in dynamic.items():
        nodes[task].yielded = [nodes[req] for req in extra]
    order = _order([nodes[task] for task in roots])

    # 1. every output of every task, checked in one batch.
    batch: list[Target] = []
    spans: list[tuple[Node, int, int]] = []
    for node in order:
        if default_complete(node.task) and not node.wrapper:
            node.outputs = flatten_outputs(node.task)
            spans.append((node, len(batch), len(batch) + len(node.outputs)))
            batch.extend(node.outputs)
    identities: dict[Target, dict[str, Any] | None] = {}
    if triggers or newer:
        # the same batch, identities instead of existence: their modification times answer
        # "upstream newer" (on S3 from the listing that answers existence, not a HEAD per
        # output), and with triggers the records' files come with it
        slots = _record_slots(order, batch) if triggers else {}
        identities = dict(zip(batch, check_identities(batch))) if batch else {}
        exists = [identities[target] is not None for target in batch]
    else:
        exists = check_exists(batch) if batch else []
    decided: set[Node] = set()
    for node, start, end in spans:
        node.missing_outputs = [t.url for t, ok in zip(node.outputs, exists[start:end]) if not ok]
        node.complete = bool(node.outputs) and not node.missing_outputs
        decided.add(node)

    # 2. requirements first: completeness, blocked, upstream missing / newer.
    mtimes: dict[Target, float | None] = {}
    if newer:
        mtimes.update((target, None if found is None else stamp(found))
                      for target, found in identities.items())
    for node in order:
        if node.wrapper:
            node.complete = all(r.complete for r in node.requires)
        elif node not in decided and guarded(node.task):
            # ready_after / stable_for: the reason it is not taken yet ("still growing")
            arrival = look(node.task)
            node.complete = arrival.arrived
            node.not_arrived = arrival.reason
            if not node.outputs:
                node.outputs = flatten_outputs(node.task)
            if not arrival.arrived:
                node.missing_outputs = list(arrival.paths)
        elif node not in decided:
            node.complete = call_complete(node.task)
            if not node.outputs:
                node.outputs = flatten_outputs(node.task)
        if node.external:
            node.state = COMPLETE if node.complete else EXTERNAL_MISSING
            if not node.complete and not node.missing_outputs:
                node.missing_outputs = [t.url for t in node.outputs]
            continue
        if node.complete:
            node.state = COMPLETE
            for req in node.requires:
                if not req.complete:
                    node.upstream_missing = req
                    break
                if req.upstream_missing is not None:
                    node.upstream_missing = req.upstream_missing
                    break
            if newer:
                node.upstream_newer = _newer_upstream(node, mtimes)
            continue
        for req in node.requires:
            blocker = req if req.state == EXTERNAL_MISSING else req.blocked_by
            if blocker is not None:
                node.blocked_by = blocker
                break
        node.state = BLOCKED if node.blocked_by is not None else MISSING

    if triggers:
        _assess(order, slots, identities, triggers)

    # 3. what `run` would reach: from the requested tasks down through incomplete ones
    # (and stale ones, which `run` rebuilds too).
    stack = [nodes[task] for task in roots]
    for node in stack:
        node.needed = not node.complete or bool(node.stale)
    for node in order:
        if node.stale and not node.needed:  # below a complete task: run goes to it
            node.needed = True
            stack.append(node)
    while stack:
        node = stack.pop()
        if node.complete and not node.stale:
            continue
        for req in node.requires:
            if not req.needed and not req.complete:
                req.needed = True
                stack.append(req)

    # 4. who holds the lock of a task still to build (non-blocking).
    if holders is not None:
        pending = {node.task_id: node for node in order if node.state in (MISSING, BLOCKED)}
        for key, holder in holders(list(pending)).items():
            node = pending[key]
            node.holder = holder
            node.state = RUNNING
    return Survey(roots=[nodes[task] for task in roots], nodes=order, triggers=triggers)


def _record_slots(order: list[Node], batch: list[Target]) -> dict[Node, Target]:
    """Where each task's build record would be; added to `batch`, so that its existence
    comes from the same listing as the outputs'."""
    slots: dict[Node, Target] = {}
    for node in order:
        if node.wrapper:
            continue
        if not default_complete(node.task):  # a custom complete(): its outputs are inputs
            node.outputs = flatten_outputs(node.task)
            batch.extend(node.outputs)
        if node.external:
            continue
        slot = record_target(node.outputs)
        if slot is not None:
            slots[node] = slot
            batch.append(slot)
    return slots


def _assess(order: list[Node], slots: dict[Node, Target],
            identities: dict[Target, dict[str, Any] | None], triggers: frozenset[str]) -> None:
    """Read the records of complete tasks (one batch) and mark the stale nodes."""
    wanted = [node for node in slots if node.complete]
    present = [node for node in wanted if identities.get(slots[node]) is not None]
    records: dict[Task, dict[str, Any] | None] = {node.task: None for node in wanted}
    records.update(zip((node.task for node in present),
                       read_records([slots[node] for node in present])))
    # identities of outputs that custom complete() tasks declare come from the batch too
    assessment = assess([node.task for node in order],
                        {node.task: [req.task for req in node.requires] for node in order},
                        {node.task: node.outputs for node in order},
                        {node.task: node.complete for node in order},
                        records, identities, triggers)
    for node in order:
        node.stale = assessment.stale.get(node.task, [])
        node.unrecorded = node.task in assessment.unrecorded


def _add_yielded(graph: dict[Task, list[Task]],
                 yielded: YieldedLookup) -> dict[Task, list[Task]]:
    """Add to `graph` what each of its tasks' run() yielded last, and everything those
    need (statically, and what they yielded in turn); the yielded ones per task."""
    dynamic: dict[Task, list[Task]] = {}
    pending = list(graph)
    while pending:
        task = pending.pop()
        if isinstance(task, ExternalTask):
            continue
        extra = [t for t in dict.fromkeys(yielded(task)) if t not in graph[task]]
        if not extra:
            continue
        dynamic[task] = extra
        graph[task] = graph[task] + extra
        new = [t for t in extra if t not in graph]
        if new:
            for found, reqs in full_graph(new).items():
                if found not in graph:
                    graph[found] = reqs
                    pending.append(found)
    return dynamic


def _order(roots: list[Node]) -> list[Node]:
    """Requirements before their users (depth-first post-order); a cycle is an error."""
    order: list[Node] = []
    state: dict[Node, int] = {}  # 1: on the current path, 2: done
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(root.requires))]
        while stack:
            node, pending = stack[-1]
            for req in pending:
                seen = state.get(req)
                if seen is None:
                    state[req] = 1
                    stack.append((req, iter(req.requires)))
                    break
                if seen == 1:
                    path = [n.task for n, _ in stack]
                    cycle = path[path.index(req.task):] + [req.task]
                    raise cycle_error(list(reversed(cycle)))
            else:
                stack.pop()
                state[node] = 2
                order.append(node)
    return order


def _newer_upstream(node: Node, mtimes: dict[Target, float | None]) -> Node | None:
    """A requirement whose output changed after `node`'s oldest output (or passed that on)."""
    for req in node.requires:
        if req.upstream_newer is not None:
            return req.upstream_newer
    if not node.outputs or not node.requires:
        return None
    own = [_mtime(t, mtimes) for t in node.outputs]
    if any(m is None for m in own):
        return None
    oldest = min(m for m in own if m is not None)
    for req in node.requires:
        for target in req.outputs:
            modified = _mtime(target, mtimes)
            if modified is not None and modified > oldest:
                return req
    return None


def _mtime(target: Target, cache: dict[Target, float | None]) -> float | None:
    if target not in cache:
        cache[target] = target.modified()
    return cache[target]


def _is_here(holder: str) -> bool:
    return hostname() in holder.split()
