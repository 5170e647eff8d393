"""Staleness (opt-in): which complete tasks are out of date by their build records, and why.

With rerun triggers asked for (`--rerun-triggers version,params,upstream[,unrecorded]`, or
`[run] rerun_triggers`), a complete task is also rebuilt when its build record (the file
beside its outputs, targets/sidecar.py) says it was built

* `version`: from another declared `version` of the task class ("version 1 → 2");
* `params`: with other parameter values ("parameter top 5 → 10"), for tasks whose outputs
  do not encode every parameter;
* `upstream`: from an input that has been rewritten since (its identity now, the mtime_ns
  and size of a local file or the ETag and LastModified of an S3 object, differs from the
  one recorded); and a task that will be rebuilt makes the tasks that need it stale
  ("upstream Clean(...) rebuilt");
* `unrecorded`: never by batchdeps with records (built before this feature, or by another
  tool). Without this trigger such outputs are up to date, as they always were.

A missing input is not a rewritten one: a complete task over a deleted intermediate stays
complete (Luigi's rule; `status` says "upstream missing").

`assess()` decides from what the caller found (identities of every output and record in
one batch, the records' contents in one batched read, or from their local copies when
the identity found is the copy's, targets/copies.py): it does no I/O of its own, so the
resolver and `status` share it. `find_stale()` is the resolver's walk: the whole graph (a
stale task may sit below a complete one), one batch of identities, one batch of reads.
"""

from __future__ import annotations

import graphlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import TaskDefinitionError

if TYPE_CHECKING:
    from .targets import Target
    from .task import Task

#: Every trigger, in the order reasons are given.
TRIGGERS = ("version", "params", "upstream", "unrecorded")
#: Given alone, turns triggers off (over the config's).
NO_TRIGGERS = "none"

Identity = dict[str, Any]


def parse_triggers(value: str | Iterable[str] | None) -> frozenset[str]:
    """Trigger names from "version,params" or ["version", "params"]; "none" is no trigger.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if value is None:
        return frozenset()
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ValueError(f"must be trigger names (a list, or one comma-separated string), "
                         f"got {value!r}")
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"must be trigger names, got {item!r}")
        names += [name.strip().lower() for name in item.split(",") if name.strip()]
    if isinstance(value, str) and not names:
        raise ValueError(f"no trigger named: give some of {', '.join(TRIGGERS)}, "
                         f"comma-separated, or {NO_TRIGGERS!r}")
    if names == [NO_TRIGGERS]:
        return frozenset()
    unknown = [name for name in names if name not in TRIGGERS]
    if unknown:
        raise ValueError(f"unknown rerun trigger {unknown[0]!r} (known: {', '.join(TRIGGERS)}; "
                         f"or {NO_TRIGGERS!r} for none)")
    return frozenset(names)


def task_version(task: Task) -> str | None:
    """The task class's declared `version` (a string; a number is taken as its text).

    Raises:
        TaskDefinitionError: a version that is neither a string nor a number.
    """
    from .parameters import Parameter

    version = getattr(type(task), "version", None)
    if version is None or isinstance(version, Parameter):  # a parameter named version
        return None
    if isinstance(version, bool) or not isinstance(version, (str, int, float)):
        raise TaskDefinitionError(f"{task.task_id}: version must be a string such as "
                                  f"version = \"2\", got {version!r}")
    return str(version)


def capture_inputs(task: Task) -> dict[str, Identity]:
    """The identity of each input of `task` now (its requirements' outputs), by URL: what
    its build record keeps. Taken before `run()`, so a rewrite during it counts later."""
    from .targets import check_identities
    from .task import flatten_outputs, flatten_requires

    targets = [t for req in flatten_requires(task) for t in flatten_outputs(req)]
    found = check_identities(targets) if targets else []
    return {t.url: identity for t, identity in zip(targets, found) if identity is not None}


def still_stale(task: Task, outputs: list[Target], triggers: frozenset[str]) -> bool:
    """Whether a task found stale is stale still, now that its lease is held: another run
    may have rebuilt it since (then its record matches the inputs as they are now).

    Where its record cannot tell (no record, or a requirement without file outputs,
    whose rebuild leaves no trace in the record), it is taken as still stale.
    """
    from .targets import check_identities
    from .targets.sidecar import read_records, record_target
    from .task import flatten_outputs, flatten_requires

    slot = record_target(outputs)
    record = read_records([slot])[0] if slot is not None else None
    if record is None:
        return True
    requires = flatten_requires(task)
    inputs = {req: flatten_outputs(req) for req in requires}
    if "upstream" in triggers and not all(inputs.values()):
        return True
    targets = [t for found in inputs.values() for t in found]
    identities = dict(zip(targets, check_identities(targets))) if targets else {}
    return bool(_own_reasons(task, record, requires, inputs, identities, triggers))


def build_record(task: Task, inputs: Mapping[str, Identity]) -> dict[str, Any]:
    """What the record of a build of `task` from `inputs` says."""
    from .targets.sidecar import make_record

    return make_record(task.task_id, task_version(task), task.to_str_params(), inputs)


@dataclass
class Assessment:
    """Stale tasks with their reasons (dependency order), and complete ones without record."""

    stale: dict[Task, list[str]] = field(default_factory=dict)
    unrecorded: set[Task] = field(default_factory=set)
    #: Tasks that need a stale task, directly or not: the resolver looks below them even
    #: when they are complete, so that a stale task under a complete one is reached.
    above: set[Task] = field(default_factory=set)


def assess(order: list[Task], requires: Mapping[Task, list[Task]],
           outputs: Mapping[Task, list[Target]], complete: Mapping[Task, bool],
           records: Mapping[Task, dict[str, Any] | None],
           identities: Mapping[Target, Identity | None],
           triggers: frozenset[str]) -> Assessment:
    """Which tasks are stale and why.

    Args:
        order: the tasks, requirements before the tasks that need them.
        requires: each task's requirements.
        outputs: each task's outputs (an input of a task is an output of a requirement).
        complete: whether each task is complete.
        records: the record of each complete task that can have one (None: it has none);
            a task not in it cannot have one (no file output).
        identities: the identity of every output now (None: missing).
        triggers: the triggers asked for.
    """
    from .task import ExternalTask

    result = Assessment()
    stale = result.stale
    for task in order:
        if isinstance(task, ExternalTask):
            continue
        if "version" in triggers:
            task_version(task)  # a bad one is a definition error before anything runs
        if not complete.get(task):
            continue
        reasons: list[str] = []
        if task in records:
            record = records[task]
            if record is None:
                result.unrecorded.add(task)
                if "unrecorded" in triggers:
                    reasons.append("no build record (built before records were kept, or "
                                   "by another tool)")
            else:
                reasons += _own_reasons(task, record, requires.get(task, ()), outputs,
                                        identities, triggers)
        if "upstream" in triggers:
            rebuilt = [req for req in requires.get(task, ()) if req in stale]
            if rebuilt:
                more = f" and {len(rebuilt) - 1} more" if len(rebuilt) > 1 else ""
                reasons.append(f"upstream {rebuilt[0].task_id}{more} rebuilt")
        if reasons:
            stale[task] = reasons
    if stale:
        required_by: dict[Task, list[Task]] = {}
        for task in order:
            for req in requires.get(task, ()):
                required_by.setdefault(req, []).append(task)
        stack = list(stale)
        while stack:
            for user in required_by.get(stack.pop(), ()):
                if user not in result.above:
                    result.above.add(user)
                    stack.append(user)
    return result


def _own_reasons(task: Task, record: dict[str, Any], requires: Iterable[Task],
                 outputs: Mapping[Task, list[Target]],
                 identities: Mapping[Target, Identity | None],
                 triggers: frozenset[str]) -> list[str]:
    reasons: list[str] = []
    if "version" in triggers:
        old, new = record.get("version"), task_version(task)
        if old != new:
            reasons.append(f"version {_text(old)} → {_text(new)}")
    if "params" in triggers:
        # An insignificant parameter (significant=False) is not the task's identity: a
        # change of it alone does not make the task stale.
        new_params = task.to_str_params(only_significant=True)
        insignificant = set(task.get_param_names(include_significant=True)) - set(new_params)
        old_params = {name: value for name, value in (record.get("params") or {}).items()
                      if name not in insignificant}
        for name in [*new_params, *(n for n in old_params if n not in new_params)]:
            if old_params.get(name) != new_params.get(name):
                reasons.append(f"parameter {name} {_text(old_params.get(name))} → "
                               f"{_text(new_params.get(name))}")
    if "upstream" in triggers:
        recorded = record.get("inputs") or {}
        built = record.get("built")
        changed: list[str] = []
        for req in requires:
            for target in outputs.get(req, ()):
                now = identities.get(target)
                if now is None:
                    continue  # missing is not rewritten (see the module docstring)
                before = recorded.get(target.url)
                if before is None:
                    changed.append(f"input {target.url} not in the build record")
                elif before != now:
                    changed.append(_rewritten(target.url, now, built))
        if changed:
            more = f" (and {len(changed) - 1} more input(s))" if len(changed) > 1 else ""
            reasons.append(changed[0] + more)
    return reasons


def _rewritten(url: str, now: Identity, built: Any) -> str:
    when = stamp(now)
    built_at = float(built) if isinstance(built, (int, float)) else None
    if when is not None and built_at is not None and when > built_at:
        precise = _time(when) == _time(built_at)  # same minute: show the seconds
        return (f"input {url} rewritten {_time(when, precise)} after the output "
                f"({_time(built_at, precise)})")
    since = f" ({_time(built_at)})" if built_at is not None else ""
    changed = f", now from {_time(when)}" if when is not None else ""
    return f"input {url} changed since the output was built{since}{changed}"


def stamp(identity: Identity) -> float | None:
    """The modification time an identity holds (seconds since the epoch), if any."""
    if identity.get("mtime_ns") is not None:
        return float(identity["mtime_ns"]) / 1e9
    for key in ("last_modified", "mtime"):
        if isinstance(identity.get(key), (int, float)):
            return float(identity[key])
    return None


def _time(seconds: float, precise: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if precise else ""), time.localtime(seconds))


def _text(value: Any) -> str:
    return "(none)" if value is None else str(value)


def find_stale(roots: list[Task], triggers: frozenset[str]) -> Assessment:
    """The resolver's look at staleness: the whole graph below `roots`, every output and
    record identified in one batch, the records read in one batch, then `assess`."""
    from .resolver import call_complete, cycle_error, default_complete, full_graph, is_plain_wrapper
    from .targets import check_identities
    from .targets.sidecar import record_target, records_of
    from .task import ExternalTask, flatten_outputs

    graph = full_graph(roots)
    sorter: graphlib.TopologicalSorter[Task] = graphlib.TopologicalSorter(graph)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise cycle_error(exc.args[1]) from None
    outputs: dict[Task, list[Target]] = {}
    slots: dict[Task, Target] = {}
    batch: list[Target] = []
    for task in order:
        if is_plain_wrapper(task):
            continue
        outputs[task] = targets = flatten_outputs(task)
        batch.extend(targets)
        if not isinstance(task, ExternalTask):
            slot = record_target(targets)
            if slot is not None:
                slots[task] = slot
                batch.append(slot)
    identities = dict(zip(batch, check_identities(batch))) if batch else {}
    complete: dict[Task, bool] = {}
    for task in order:
        if is_plain_wrapper(task):
            complete[task] = all(complete.get(req, False) for req in graph[task])
        elif default_complete(task):
            targets = outputs[task]
            complete[task] = bool(targets) and all(identities[t] is not None for t in targets)
        else:
            complete[task] = call_complete(task)
    records = records_of(slots, [task for task in slots if complete[task]], identities)
    return assess(order, graph, outputs, complete, records, identities, triggers)
