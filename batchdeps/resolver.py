"""Resolution: from requested tasks and target existence to a plan of steps with reasons.

Pure apart from existence checks: nothing runs and nothing is written. The walk is
breadth-first so that the existence of a whole level of targets is checked in one batch
(one round of concurrent requests on object storage). A complete task's requirements are
not visited (Luigi's rule), so a nightly run over finished data touches only the top.
Cost is O(tasks + edges).

Forcing (`--force`, `--force-upstream`, `--force-from`) marks tasks as incomplete before
the walk, each with its reason. A step that cannot run because an external input upstream
is missing is marked `blocked_by` that input, so a dry run tells the truth.
"""

from __future__ import annotations

import gc
import graphlib
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

from .arrival import Arrival, guarded, look
from .errors import (
    BatchdepsError,
    BrokenTaskError,
    CycleError,
    ExitCode,
    TaskDefinitionError,
    UsageError,
)
from .paths import shown, shown_all
from .targets import Target, check_exists
from .task import ExternalTask, Task, WrapperTask, flatten_outputs, flatten_requires


class StepKind(str, Enum):
    """What a step of the plan is; its value is what text and JSON output show."""

    RUN = "run"
    MISSING = "missing"  # an external task whose output does not exist

    def __str__(self) -> str:
        return self.value


RUN = StepKind.RUN
MISSING = StepKind.MISSING


class OutputsMissing:
    """A step's reason while it is "its outputs are missing" (all of them): the text is
    made when asked for, from the step's outputs, so a plan of a million steps keeps no
    reason string per step. One per plan: it holds the folder relative paths resolve in."""

    __slots__ = ("cwd",)

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd

    def text(self, step: Step) -> str:
        outputs = step.outputs
        if len(outputs) == 1:  # the usual case, as `_missing_reason` words it (two calls less)
            return f"output {shown(outputs[0].url, self.cwd)} missing"
        return _missing_reason([t.url for t in outputs], self.cwd)


class Step:
    """One task the plan will run (or an external input found missing), and why.

    `upstream` and `downstream` are tuples (the shared empty tuple for none): a plan keeps
    no list per edge end. The resolver and the runner replace them, never change them.
    """

    __slots__ = ("task", "kind", "_reason", "index", "upstream", "downstream", "outputs",
                 "missing_paths", "blocked_by")

    def __init__(self, task: Task, kind: StepKind, reason: str | OutputsMissing,
                 index: int = -1, upstream: Sequence[Step] = (),
                 downstream: Sequence[Step] = (), outputs: Sequence[Target] = (),
                 missing_paths: Sequence[str] = (), blocked_by: Step | None = None) -> None:
        self.task = task
        self.kind = kind
        self._reason = reason
        self.index = index
        self.upstream: tuple[Step, ...] = tuple(upstream)
        self.downstream: tuple[Step, ...] = tuple(downstream)
        self.outputs: tuple[Target, ...] = tuple(outputs)  # () shared when there are none
        #: the missing paths of a MISSING step (a plan of a million steps keeps no empty
        #: list per RUN step: their value is the shared empty tuple)
        self.missing_paths = missing_paths
        #: The missing external input (a MISSING step) that keeps this step from running.
        self.blocked_by = blocked_by

    @property
    def reason(self) -> str:
        reason = self._reason
        return reason if type(reason) is str else reason.text(self)  # type: ignore[union-attr]

    @reason.setter
    def reason(self, value: str) -> None:
        self._reason = value

    @property
    def task_id(self) -> str:
        return self.task.task_id

    def __repr__(self) -> str:
        return f"Step({self.task_id}, {self.kind.value}, index={self.index})"


@dataclass
class Plan:
    """Steps in dependency order; requested tasks that are already complete are listed."""

    requested: list[Task]
    steps: list[Step]
    complete: list[Task]
    forced: frozenset[Task] = frozenset()
    #: those of `forced` that run only because they are stale by `rerun_triggers`: the
    #: runner looks again after taking the lease (another run may have rebuilt them)
    stale: frozenset[Task] = frozenset()
    rerun_triggers: frozenset[str] = frozenset()
    #: task -> its step, made when first asked for (`by_task`), kept by `extend`
    _by_task: dict[Task, Step] | None = field(default=None, repr=False, compare=False)
    #: task id -> its step, as `_by_task` (the resolver's own key: see `_resolve`)
    _by_id: dict[str, Step] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.steps)

    def step_for(self, task: Task) -> Step | None:
        return self.by_task().get(task)

    def by_task(self) -> dict[Task, Step]:
        """Every step by its task."""
        if self._by_task is None:
            self._by_task = {step.task: step for step in self.steps}
        return self._by_task

    def extend(self, tasks: Iterable[Task]) -> list[Step]:
        """Add the steps `tasks` need that the plan lacks, while it runs (a `run()` yielded
        them); the new steps, in dependency order, indexed after the existing ones.

        Resolved as `resolve` does, with the plan's steps taken as they are: a new step
        that requires a task already in the plan is linked to that step (which may be
        done by now: the runner looks). Nothing is forced.

        Raises:
            TaskDefinitionError, CycleError, TargetCheckError: as `resolve`.
        """
        by_task = self.by_task()
        if self._by_id is None:
            self._by_id = {step.task.task_id: step for step in self.steps}
        known = self._by_id
        roots = [task for task in dict.fromkeys(tasks) if task.task_id not in known]
        if not roots:
            return []
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            added = _resolve(roots, {}, known, first_index=len(self.steps)).steps
        finally:
            if was_enabled:
                gc.enable()
        self.steps.extend(added)
        for step in added:
            by_task[step.task] = step
            known[step.task.task_id] = step
        return added

    def describe(self) -> list[str]:
        """One line per step, in order: what runs (or is blocked, or is missing) and why."""
        return list(self.lines())

    def lines(self) -> Iterator[str]:
        """`describe()`'s lines, made one at a time (a dry run of a million steps prints
        them as they come, and keeps no list of a million strings)."""
        for step in self.steps:
            if step.kind == MISSING:
                verb = "missing input"
            elif step.blocked_by is not None:
                verb = "blocked"
            else:
                verb = "run"
            reason = step.reason
            if step.blocked_by is not None:
                reason = f"{reason}; blocked: {step.blocked_by.reason}"
            yield f"{verb:13} {step.task_id}  ({reason})"

    def counts(self) -> dict[str, int]:
        """How many steps would run, are blocked, and are missing external inputs."""
        missing = sum(1 for step in self.steps if step.kind == MISSING)
        blocked = sum(1 for step in self.steps if step.blocked_by is not None)
        return {"run": len(self.steps) - missing - blocked, "blocked": blocked,
                "missing": missing}

    @property
    def exit_code(self) -> ExitCode:
        """As `make -q` and `batchdeps status`: 0 nothing to do, 1 work to do, 3 blocked."""
        counts = self.counts()
        if counts["missing"] or counts["blocked"]:
            return ExitCode.MISSING_INPUT
        return ExitCode.FAILED if self.steps else ExitCode.OK  # 1 here means "work to do"


def default_complete(task: Task) -> bool:
    """True when `task.complete` is the built-in one (so outputs can be checked in batch).

    Not for an external input with `ready_after` or `stable_for`: `arrival.look` decides it.
    """
    return type(task).complete is Task.complete or (
        isinstance(task, ExternalTask) and type(task).complete is ExternalTask.complete
        and not guarded(task)
    )


def is_plain_wrapper(task: Task) -> bool:
    """A WrapperTask with the built-in complete(): complete when all it requires is."""
    return isinstance(task, WrapperTask) and type(task).complete is WrapperTask.complete


def _missing_reason(missing: list[str], cwd: str) -> str:
    if len(missing) == 1:
        return f"output {shown(missing[0], cwd)} missing"
    more = f" and {len(missing) - 2} more" if len(missing) > 2 else ""
    return f"outputs {shown_all(missing[:2], cwd)}{more} missing"


def resolve(
    requested: Iterable[Task],
    force: bool = False,
    *,
    force_upstream: bool = False,
    force_from: Iterable[str] = (),
    rerun_triggers: Iterable[str] = (),
) -> Plan:
    """Walk back from `requested` and return the plan of what must run.

    Args:
        requested: the tasks asked for.
        force: rebuild the requested tasks even if complete (their upstream stays as is).
        force_upstream: rebuild the requested tasks and everything they depend on, except
            external tasks.
        force_from: selectors (a family name or a task id); the tasks they match and every
            task downstream of them, up to the requested ones, are rebuilt. A matched
            external task is not run, but what depends on it is.
        rerun_triggers: also rebuild complete tasks that their build records show to be
            stale by these triggers (staleness.py), with the reasons; none: the default
            existence rule, and no record is read.

    Raises:
        UsageError: a `force_from` selector matches no task of the graph.
        TaskDefinitionError: requires()/output()/complete() raised or returned a wrong type.
        CycleError: tasks that must run require each other in a cycle.
        TargetCheckError: existence of a target could not be decided.
    """
    # The walk allocates several objects per task and frees almost none, which makes the
    # cyclic garbage collector rescan every object so far again and again: half the time
    # at 100,000 tasks. Nothing made here is cyclic garbage, so it waits until the end.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        roots = list(dict.fromkeys(requested))
        for task in roots:
            if not isinstance(task, Task):
                raise TaskDefinitionError(
                    f"can only build tasks, got {type(task).__name__} {task!r}")
        forced = forced_tasks(roots, force, force_upstream, list(force_from))
        triggers = frozenset(rerun_triggers)
        if not triggers:
            plan = _resolve(roots, _by_id(forced))
            plan.forced = frozenset(forced)
            return plan
        from .staleness import find_stale

        assessment = find_stale(roots, triggers)
        stale = [task for task in assessment.stale if task not in forced]
        for task in stale:
            forced[task] = "; ".join(assessment.stale[task])
        plan = _resolve(roots, _by_id(forced),
                        expand=frozenset(task.task_id for task in assessment.above))
        plan.forced = frozenset(forced)
        plan.stale = frozenset(stale)
        plan.rerun_triggers = triggers
        return plan
    finally:
        if was_enabled:
            gc.enable()


def _by_id(tasks: dict[Task, str]) -> dict[str, str]:
    return {task.task_id: value for task, value in tasks.items()}


def _resolve(roots: list[Task], forced: dict[str, str],
             known: dict[str, Step] | None = None, first_index: int = 0,
             expand: Collection[str] = frozenset()) -> Plan:
    """The plan for `roots`; a task in `known` (a running plan's steps) is not looked at
    again: a new step that requires it is linked to its step. `expand`: tasks whose
    requirements are visited even when complete (a stale task is below them).

    Every dict and set here is keyed by task id (`forced`, `known` and `expand` too): a
    task id is a str, whose hash the str keeps, where a task as key is a call of
    `Task.__hash__` per look-up (ten per task of a plan). Equal tasks share their task id,
    so the keys tell the same tasks apart as the tasks would. The plan's `forced` is left
    to the caller.
    """
    known = known or {}

    # task id -> (is complete | None while unknown); requirements of expanded tasks.
    complete: dict[str, bool | None] = {}
    reached: list[Task] = []  # the task of each key of `complete`, in the same order
    requires: dict[str, list[Task]] = {}
    outputs: dict[str, list[Target]] = {}
    missing_paths: dict[str, list[str]] = {}
    custom_false: set[str] = set()
    not_arrived: dict[str, Arrival] = {}  # guarded external inputs (arrival.py)
    wrappers: list[Task] = []

    kinds: dict[type, tuple[int, bool]] = {}  # a class -> (its kind, is it external)
    frontier = roots
    for task in roots:
        complete[task.task_id] = None
    while frontier:
        reached.extend(frontier)
        # 1. gather targets of the whole level and check them in one batch.
        batch: list[Target] = []
        checked: list[list[Target] | None] = []  # per task of the level: its checked targets
        for task in frontier:
            cls = type(task)
            kind = kinds.get(cls)
            if kind is None:
                kind = kinds[cls] = _kind_of(task)
            if kind[0] == _BATCHED:
                targets = flatten_outputs(task)
                checked.append(targets)
                batch.extend(targets)
            else:
                checked.append(None)
        exists = check_exists(batch) if batch else []
        del batch
        # 2. decide each task of the level and expand the incomplete ones.
        next_frontier: list[Task] = []
        end = 0
        for task, targets in zip(frontier, checked):
            kind, external = kinds[type(task)]
            task_id = task.task_id
            is_forced = bool(forced) and task_id in forced
            missing: list[str] = _ALL_MISSING
            there = False  # every output exists (and there is one)
            if targets is not None:
                count = len(targets)
                start, end = end, end + count
                if count == 1:  # the usual case: one output, there or not
                    there = bool(exists[start])
                    missing = _NONE_MISSING if there else _ALL_MISSING
                else:
                    missing = [t.url for t, ok in zip(targets, exists[start:end]) if not ok]
                    there = bool(targets) and not missing
                    # all missing (the usual case of a task that runs): the targets say which
                    if missing and len(missing) == count:
                        missing = _ALL_MISSING
            if is_forced:
                done = False
                if targets is None:
                    outputs[task_id] = flatten_outputs(task)
                else:
                    outputs[task_id] = targets
                    missing_paths[task_id] = missing
            elif kind == _WRAPPER:
                wrappers.append(task)
                done = False  # decided once its requirements are known
            elif targets is not None:
                done = there
                if not done:  # a complete task's outputs are not kept
                    outputs[task_id] = targets
                    missing_paths[task_id] = missing
            elif kind == _GUARDED:
                arrival = look(task)
                done = arrival.arrived
                if not done:
                    not_arrived[task_id] = arrival
                outputs[task_id] = flatten_outputs(task)
            else:
                done = call_complete(task)
                if not done:
                    custom_false.add(task_id)
                outputs[task_id] = flatten_outputs(task)
            complete[task_id] = done if kind != _WRAPPER or is_forced else None
            if done or external:
                if external or not (expand and task_id in expand):
                    continue
                # complete, but a stale task is below: go down only towards it
                reqs = [r for r in flatten_requires(task)
                        if r.task_id in expand or r.task_id in forced]
            else:
                reqs = flatten_requires(task)
            if reqs:  # most tasks of a large plan (the leaves) require none
                requires[task_id] = reqs
                if known:
                    for req in reqs:
                        req_id = req.task_id
                        if req_id not in complete and req_id not in known:
                            complete[req_id] = None
                            next_frontier.append(req)
                else:  # one look-up per requirement, not two
                    seen = len(complete)
                    for req in reqs:
                        complete.setdefault(req.task_id, None)
                        if len(complete) != seen:  # it was new
                            seen += 1
                            next_frontier.append(req)
        frontier = next_frontier

    _decide_wrappers(wrappers, requires, complete, forced)

    # 3. the steps: every incomplete task reached, with its reason.
    steps: dict[str, Step] = {}
    cwd = os.getcwd()  # relative paths in reasons are shown resolved against it
    outputs_missing = OutputsMissing(cwd)
    for task, decided in zip(reached, complete.values()):
        if decided:
            continue
        task_id = task.task_id
        task_outputs = outputs.pop(task_id, ())  # the step keeps them (as a tuple)
        missing = missing_paths.pop(task_id, None)
        all_missing = missing is _ALL_MISSING
        if isinstance(task, ExternalTask):
            if all_missing:
                missing = [t.url for t in task_outputs]
            arrival = not_arrived.get(task_id)
            paths = (list(arrival.paths) if arrival is not None else missing
                     ) or [t.url for t in task_outputs]
            reason = arrival.reason if arrival is not None else \
                f"external input {shown_all(paths, cwd) or task.task_id} missing"
            steps[task_id] = Step(task, MISSING, reason, outputs=task_outputs,
                                  missing_paths=paths)
            continue
        why: str | OutputsMissing
        if forced and task_id in forced:
            why = forced[task_id]
        elif custom_false and task_id in custom_false:
            why = "complete() returned False"
        elif is_plain_wrapper(task) or not task_outputs:
            pending = [r for r in requires.get(task_id, []) if not complete.get(r.task_id)]
            why = f"upstream {pending[0].task_id} runs" if pending else "has no outputs"
            if len(pending) > 1:
                why = f"upstream {pending[0].task_id} and {len(pending) - 1} more run"
        elif all_missing:
            why = outputs_missing  # made from the outputs when asked for
        else:
            why = _missing_reason(missing or [], cwd)
        steps[task_id] = Step(task, RUN, why, outputs=task_outputs)
    del missing_paths, outputs, reached

    # Edges, kept as tuples: a step's downstream is a list only while it gains a second
    # one (most steps of a tree or a chain have one), then a tuple again.
    grown: list[Step] = []
    for task_id, step in steps.items():
        reqs = requires.get(task_id)
        if not reqs:
            continue
        ups: list[Step] = []
        for req in reqs:
            req_id = req.task_id
            up = steps.get(req_id)
            if up is None and known:
                up = known.get(req_id)
            if up is not None and up is not step:
                ups.append(up)
                downs = up.downstream
                if not downs:
                    up.downstream = (step,)
                elif type(downs) is tuple:
                    up.downstream = [*downs, step]  # type: ignore[assignment]
                    grown.append(up)
                else:
                    downs.append(step)  # type: ignore[attr-defined]
            elif up is step:
                raise CycleError(f"task {task_id} requires itself")
        step.upstream = tuple(ups)
    del requires
    for step in grown:
        step.downstream = tuple(step.downstream)
    del grown

    ordered = _order(steps, known_too=bool(known))
    if known:  # the order names the known steps new ones require: they keep their place
        ordered = [step for step in ordered if steps.get(step.task.task_id) is step]
    for index, step in enumerate(ordered, first_index):
        step.index = index
        if step.kind == MISSING:
            continue
        for up in step.upstream:  # upstream steps come first, so theirs is already known
            blocker = up if up.kind == MISSING else up.blocked_by
            if blocker is not None:
                step.blocked_by = blocker
                break
    return Plan(
        requested=roots,
        steps=ordered,
        complete=[t for t in roots if complete.get(t.task_id)],
    )


#: `missing_paths` of a task whose outputs are all missing (no list of them per task)
_ALL_MISSING: list[str] = []
#: what is missing of a task whose outputs are all there (kept only for a forced task,
#: where nothing reads it)
_NONE_MISSING: list[str] = []

#: What a task's class makes of it in resolution (`_kind_of`): a plain WrapperTask, a task
#: whose outputs are checked in the level's batch (the built-in complete()), an external
#: input with `ready_after` or `stable_for` (arrival.look), any other complete().
_WRAPPER, _BATCHED, _GUARDED, _CUSTOM = range(4)


def _kind_of(task: Task) -> tuple[int, bool]:
    """The kind of `task` in resolution and whether it is external; the same for every
    task of its class (each test below reads the class only), so it is asked once per
    class and resolution."""
    if is_plain_wrapper(task):
        kind = _WRAPPER
    elif default_complete(task):
        kind = _BATCHED
    elif guarded(task):
        kind = _GUARDED
    else:
        kind = _CUSTOM
    return kind, isinstance(task, ExternalTask)


def forced_tasks(roots: list[Task], force: bool, force_upstream: bool,
                 force_from: list[str]) -> dict[Task, str]:
    """Every task the forcing options rebuild, with its reason ("forced", "forced: ...")."""
    forced: dict[Task, str] = {}
    if force or force_upstream:
        forced.update((task, "forced") for task in _forced_requested(roots))
    if force_upstream:
        graph = full_graph(roots)
        # Breadth-first from the roots, so the reason names the nearest requested task.
        for root in roots:
            for task in _upstream_of(root, graph):
                if task not in forced and not isinstance(task, ExternalTask):
                    forced[task] = f"forced: upstream of {root.task_id}"
    if force_from:
        graph = full_graph(roots)
        matched = _select(force_from, graph)
        for task in matched:
            if not isinstance(task, ExternalTask) and task not in forced:
                forced[task] = "forced"
        required_by: dict[Task, list[Task]] = {}
        for task, reqs in graph.items():
            for req in reqs:
                required_by.setdefault(req, []).append(task)
        for source in matched:
            stack = [source]
            while stack:
                for down in required_by.get(stack.pop(), ()):
                    if down not in forced:
                        forced[down] = f"forced: downstream of {source.task_id}"
                        stack.append(down)
    return forced


def full_graph(roots: list[Task]) -> dict[Task, list[Task]]:
    """Every task reachable from `roots` (also below complete ones) -> its requirements.

    External tasks are leaves: their requires() is never called.
    """
    graph: dict[Task, list[Task]] = {}
    frontier = list(roots)
    for task in roots:
        graph[task] = []
    while frontier:
        next_frontier: list[Task] = []
        for task in frontier:
            if isinstance(task, ExternalTask):
                continue
            reqs = flatten_requires(task)
            graph[task] = reqs
            for req in reqs:
                if req not in graph:
                    graph[req] = []
                    next_frontier.append(req)
        frontier = next_frontier
    return graph


def _upstream_of(root: Task, graph: dict[Task, list[Task]]) -> list[Task]:
    seen = {root}
    order: list[Task] = []
    frontier = [root]
    while frontier:
        next_frontier = []
        for task in frontier:
            for req in graph.get(task, ()):
                if req not in seen:
                    seen.add(req)
                    order.append(req)
                    next_frontier.append(req)
        frontier = next_frontier
    return order


def _select(selectors: list[str], graph: dict[Task, list[Task]]) -> list[Task]:
    """The tasks of `graph` each selector names (family name or task id), in graph order."""
    wanted = set(selectors)
    matched = [t for t in graph if t.task_id in wanted or t.family() in wanted]
    found = {t.task_id for t in matched} | {t.family() for t in matched}
    unmatched = [s for s in selectors if s not in found]
    if unmatched:
        families = sorted({t.family() for t in graph})
        raise UsageError(
            f"--force-from {unmatched[0]!r} matches no task needed by the requested "
            f"task(s); give a family name or a task id (families here: {', '.join(families)})"
        )
    return matched


def _forced_requested(roots: list[Task]) -> list[Task]:
    """What --force rebuilds: each requested task; for a plain WrapperTask, what it wraps.

    A wrapper has no outputs of its own, so forcing only it would run nothing and report it
    built; forcing a wrapper rebuilds the tasks it requires (through nested wrappers), and
    their own upstream stays as it is.
    """
    forced: list[Task] = []
    seen: set[Task] = set()
    stack = list(reversed(roots))
    while stack:
        task = stack.pop()
        if task in seen:
            continue
        seen.add(task)
        if is_plain_wrapper(task):
            stack.extend(reversed(flatten_requires(task)))
        elif not isinstance(task, ExternalTask):
            forced.append(task)
    return forced


def call_complete(task: Task) -> bool:
    """`task.complete()`, an exception from it turned into a TaskDefinitionError naming it.

    An external input with `ready_after` or `stable_for` is decided by `arrival.look`,
    also when it has a `complete()` of its own.
    """
    if guarded(task):
        return look(task).arrived
    try:
        return bool(task.complete())
    except BatchdepsError:
        raise
    except Exception as exc:
        raise BrokenTaskError(
            f"{task.task_id}: complete() raised {type(exc).__name__}: {exc}", task, exc
        ) from exc


def _decide_wrappers(
    wrappers: list[Task],
    requires: dict[str, list[Task]],
    complete: dict[str, bool | None],
    forced: Collection[str],
) -> None:
    """A plain WrapperTask is complete when all its requirements are (nested ones too).

    `requires`, `complete` and `forced` are keyed by task id (as in `_resolve`)."""
    pending = {w.task_id: w for w in wrappers if w.task_id not in forced}
    if not pending:
        return
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for wrapper_id in pending:
        sorter.add(wrapper_id, *[r.task_id for r in requires.get(wrapper_id, [])
                                 if r.task_id in pending])
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise cycle_error([pending[task_id] for task_id in exc.args[1]]) from None
    for wrapper_id in order:
        complete[wrapper_id] = all(
            [complete.get(r.task_id) for r in requires.get(wrapper_id, ())])


def _order(steps: dict[str, Step], known_too: bool = True) -> list[Step]:
    """The steps in dependency order (and the known steps they require, first), in the
    order graphlib's `static_order` gives; a cycle raises CycleError naming it.

    Kahn's algorithm over the steps' own edges: per step a count of open upstream steps,
    no node record or successor list of its own (graphlib keeps both: a tenth of a plan's
    memory while it is made at a million steps). Without `known_too` every step met is one
    of `steps` (no running plan's steps are linked in): none is looked up to tell.
    """
    # The nodes in the order graphlib would first see them: each step, then its upstream.
    # A new step's place is kept in its `index` (set for good by the caller afterwards),
    # a known step's (of the running plan) in `known_at`.
    nodes: list[Step] = []
    known_at: dict[Step, int] = {}
    left: list[int] = []  # open upstream steps; graphlib counts none for a known step
    for step in steps.values():
        for node in (step, *step.upstream):
            if not known_too or steps.get(node.task.task_id) is node:
                if node.index < 0:
                    node.index = len(nodes)
                    nodes.append(node)
                    left.append(len(node.upstream))
            elif node not in known_at:
                known_at[node] = len(nodes)
                nodes.append(node)
                left.append(0)
    ready = [node for node, count in zip(nodes, left) if count == 0]
    order: list[Step] = []
    while ready:
        order.extend(ready)
        batch, ready = ready, []
        for node in batch:
            for down in node.downstream:
                if known_too and steps.get(down.task.task_id) is not down:
                    continue  # a step of the running plan, already placed
                at = down.index
                left[at] -= 1
                if left[at] == 0:
                    ready.append(down)
    if len(order) < len(nodes):
        sorter: graphlib.TopologicalSorter[Step] = graphlib.TopologicalSorter()
        for step in steps.values():
            sorter.add(step, *step.upstream)
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            raise cycle_error([s.task for s in exc.args[1]]) from None
        raise RuntimeError("dependency order: steps left over without a cycle")  # pragma: no cover
    return order


def cycle_error(cycle: list[Task]) -> CycleError:
    """The error for tasks that require each other, naming them in order."""
    names = " -> ".join(t.task_id for t in reversed(cycle))
    return CycleError(f"dependency cycle: {names}")


def complete_many(tasks: list[Task]) -> list[bool]:
    """Whether each task is complete; built-in completeness is checked in one batch."""
    batch: list[Target] = []
    spans: dict[int, tuple[int, int]] = {}
    for index, task in enumerate(tasks):
        if default_complete(task) and not is_plain_wrapper(task):
            targets = flatten_outputs(task)
            spans[index] = (len(batch), len(batch) + len(targets))
            batch.extend(targets)
    exists = check_exists(batch) if batch else []
    answers = []
    for index, task in enumerate(tasks):
        if index in spans:
            start, end = spans[index]
            answers.append(end > start and all(exists[start:end]))
        else:
            answers.append(call_complete(task))
    return answers
