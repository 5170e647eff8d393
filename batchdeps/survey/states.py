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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from ..targets.sidecar import record_target, records_of
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


#: The value of a Node's sequence fields while they hold nothing: one shared empty tuple,
#: not an empty list per node (a graph of a million nodes kept five million of them).
_NONE: tuple[Any, ...] = ()
#: A node's `newest` before its outputs' modification times are looked at.
_UNSEEN: Any = object()


class Node:
    """One task of the graph, its requirements and what is known about it.

    Slotted, with the shared empty tuple for every empty sequence: `status` keeps a node
    per task of the graph until it has printed them all.
    """

    __slots__ = ("task", "requires", "outputs", "complete", "state", "missing_outputs",
                 "needed", "blocked_by", "upstream_missing", "upstream_newer", "holder",
                 "stale", "unrecorded", "yielded", "not_arrived", "worker", "checked",
                 "newest")

    def __init__(self, task: Task, requires: Sequence[Node] = _NONE,
                 outputs: Sequence[Target] = _NONE) -> None:
        self.task = task
        self.requires: Sequence[Node] = requires
        self.outputs: Sequence[Target] = outputs
        self.complete = False
        self.state = ""
        self.missing_outputs: Sequence[str] = _NONE
        #: `batchdeps run` would build it (or it blocks something run would build).
        self.needed = False
        self.blocked_by: Node | None = None
        self.upstream_missing: Node | None = None
        self.upstream_newer: Node | None = None
        self.holder = ""
        #: Why a complete task is stale by the rerun triggers asked for (empty: it is not).
        self.stale: Sequence[str] = _NONE
        #: Complete, could have a build record, has none (only looked at with triggers).
        self.unrecorded = False
        #: those of `requires` that its run() yielded in the last run that recorded it
        self.yielded: Sequence[Node] = _NONE
        #: an external input with `ready_after`/`stable_for` not taken yet: why (arrival.py)
        self.not_arrived = ""
        #: the worker its last recorded attempt ran on, when an executor named one (Dask)
        self.worker = ""
        #: its outputs were looked at in the survey's batch (the built-in complete())
        self.checked = False
        #: the latest modification time of its outputs (None: none known; `_UNSEEN`:
        #: not looked at yet), for "upstream newer"
        self.newest: Any = _UNSEEN

    def __repr__(self) -> str:
        return f"Node({self.task_id}, {self.state or 'undecided'})"

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
    # Each node holds its requirements' tasks until every node is made, then their nodes:
    # the graph's own lists are let go of early, and an empty one is the shared tuple.
    nodes = {task: Node(task, reqs) for task, reqs in graph.items()}
    del graph
    for node in nodes.values():
        reqs = node.requires
        node.requires = tuple([nodes[req] for req in reqs]) if reqs else _NONE  # type: ignore[index]
    for task, extra in dynamic.items():
        nodes[task].yielded = tuple([nodes[req] for req in extra])
    del dynamic
    order = _order([nodes[task] for task in roots])

    # 1. every output of every task, checked in one batch.
    batch: list[Target] = []
    batched: dict[type, bool] = {}  # a class -> its outputs are checked in the batch
    for node in order:
        cls = type(node.task)
        in_batch = batched.get(cls)
        if in_batch is None:
            in_batch = batched[cls] = default_complete(node.task) and not node.wrapper
        if in_batch:
            node.outputs = flatten_outputs(node.task)
            node.checked = True
            batch.extend(node.outputs)
    identities: dict[Target, dict[str, Any] | None] = {}
    stamps: list[float | None] = []
    if triggers or newer:
        # the same batch, identities instead of existence: their modification times answer
        # "upstream newer" (on S3 from the listing that answers existence, not a HEAD per
        # output), and with triggers the records' files come with it
        slots = _record_slots(order, batch) if triggers else {}
        exists, stamps, identities = _identities(batch, keep=bool(triggers))
    else:
        exists = check_exists(batch) if batch else []
    del batch

    # 2. requirements first: completeness, blocked, upstream missing / newer.
    mtimes: dict[Target, float | None] = {}  # outputs looked at outside the batch
    if newer and identities:
        mtimes.update((target, None if found is None else stamp(found))
                      for target, found in identities.items())
    at = 0  # where the next checked node's outputs are in the batch's answers
    for node in order:
        own: list[float | None] | None = None  # its outputs' times, when known
        if node.checked:
            end = at + len(node.outputs)
            missing = [t.url for t, ok in zip(node.outputs, exists[at:end]) if not ok]
            node.missing_outputs = missing or _NONE
            node.complete = bool(node.outputs) and not missing
            if newer:
                own = stamps[at:end]
                node.newest = _latest(own)
            at = end
        elif node.wrapper:
            node.complete = all(r.complete for r in node.requires)
        elif guarded(node.task):
            # ready_after / stable_for: the reason it is not taken yet ("still growing")
            arrival = look(node.task)
            node.complete = arrival.arrived
            node.not_arrived = arrival.reason
            if not node.outputs:
                node.outputs = flatten_outputs(node.task)
            if not arrival.arrived:
                node.missing_outputs = list(arrival.paths)
        else:
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
                node.upstream_newer = _newer_upstream(node, own, mtimes)
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
    records = {node.task: record for node, record in records_of(
        slots, [node for node in slots if node.complete], identities).items()}
    # identities of outputs that custom complete() tasks declare come from the batch too
    assessment = assess([node.task for node in order],
                        {node.task: [req.task for req in node.requires] for node in order},
                        {node.task: node.outputs for node in order},
                        {node.task: node.complete for node in order},
                        records, identities, triggers)
    for node in order:
        node.stale = assessment.stale.get(node.task, _NONE)
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


def _newer_upstream(node: Node, own: list[float | None] | None,
                    mtimes: dict[Target, float | None]) -> Node | None:
    """A requirement whose output changed after `node`'s oldest output (or passed that on);
    `own`: the modification times of `node`'s outputs, when the batch gave them."""
    for req in node.requires:
        if req.upstream_newer is not None:
            return req.upstream_newer
    if not node.outputs or not node.requires:
        return None
    if own is None:
        own = [_mtime(t, mtimes) for t in node.outputs]
    if any(m is None for m in own):
        return None
    oldest = min(m for m in own if m is not None)
    for req in node.requires:
        newest = req.newest
        if newest is _UNSEEN:  # outputs not in the batch (a complete() of its own)
            newest = req.newest = _latest([_mtime(t, mtimes) for t in req.outputs])
        if newest is not None and newest > oldest:
            return req
    return None


def _latest(times: list[float | None]) -> float | None:
    """The latest of the known times (None: none known)."""
    known = [m for m in times if m is not None]
    return max(known) if known else None


def _identities(batch: list[Target], keep: bool) -> tuple[
        list[bool], list[float | None], dict[Target, dict[str, Any] | None]]:
    """Whether each target of `batch` exists and its modification time, from one batch of
    identities; the identities themselves (by target) only when `keep`.

    Without `keep`, targets whose class looks at each alone (a local file) are asked a
    few thousand at a time, so a million outputs never hold a million identity dicts.
    """
    if not batch:
        return [], [], {}
    classes = {type(target) for target in batch}
    alone = all(getattr(cls.identity_many, "__func__", None) is _EACH_IDENTITY
                for cls in classes)
    if keep or not alone:
        found = check_identities(batch)
        kept = dict(zip(batch, found)) if keep else {}
        return ([f is not None for f in found],
                [None if f is None else stamp(f) for f in found], kept)
    exists: list[bool] = []
    stamps: list[float | None] = []
    for start in range(0, len(batch), IDENTITIES_PER_CALL):
        found = check_identities(batch[start:start + IDENTITIES_PER_CALL])
        exists.extend([f is not None for f in found])
        stamps.extend([None if f is None else stamp(f) for f in found])
    return exists, stamps, {}


#: Identities asked for at once, for targets that are looked at one by one anyway.
IDENTITIES_PER_CALL = 4096
_EACH_IDENTITY = Target.identity_many.__func__  # type: ignore[attr-defined]


def _is_here(holder: str) -> bool:
    return hostname() in holder.split()
