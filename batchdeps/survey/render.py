"""A surveyed graph as text: an indented tree, JSON, Graphviz dot, or Mermaid.

JSON edges go from a task to a task it requires (the contract); in dot and Mermaid the
arrows follow the data, from a requirement to the task that reads it, as Snakemake's
`--dag` and Luigi's visualiser draw them. A requirement a task's run() yielded (known from
the last run that recorded it) is an edge like any other, listed in the node's `yielded`
in JSON, marked `(yielded)` in the tree and drawn dashed in dot and Mermaid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .states import BLOCKED, COMPLETE, EXTERNAL_MISSING, MISSING, RUNNING, Node, Survey

_TEE, _LAST, _PIPE, _GAP = "├── ", "└── ", "│   ", "    "


def tree(result: Survey, depth: int | None = None) -> str:
    """The requested tasks as trees; a subtree already shown is referenced, not repeated."""
    return "\n".join(tree_lines(result, depth))


def tree_lines(result: Survey, depth: int | None = None) -> Iterator[str]:
    """`tree()`'s lines, made one at a time (`status` of a million tasks writes them as
    they come, and keeps no list of a million strings), the summary last."""
    shown: set[Node] = set()
    # (node, prefix for its own line, prefix for its children, depth)
    stack: list[tuple[Node, str, str, int, bool]] = [
        (root, "", "", 0, False) for root in reversed(result.roots)]
    while stack:
        node, own_prefix, child_prefix, level, via_yield = stack.pop()
        mark = "(yielded) " if via_yield else ""
        line = f"{own_prefix}{mark}{node.task_id}  [{node.label}]"
        details = _details(node)
        if node in shown and node.requires:
            yield f"{line}  (shown above)"
            continue
        if details:
            line += f"  {details}"
        if depth is not None and level >= depth and node.requires:
            yield f"{line}  (+{len(node.requires)} requirement(s) below --depth)"
            continue
        yield line
        shown.add(node)
        children = node.requires
        yielded = set(node.yielded) if node.yielded else ()
        for index in range(len(children) - 1, -1, -1):
            last = index == len(children) - 1
            stack.append((children[index], child_prefix + (_LAST if last else _TEE),
                          child_prefix + (_GAP if last else _PIPE), level + 1,
                          children[index] in yielded))
    yield summary(result)


def _details(node: Node) -> str:
    if node.state == COMPLETE:
        shown_for_complete = ("upstream ", "stale: ", "no record", "last attempt ran on ")
        reasons = [r for r in node.reasons() if r.startswith(shown_for_complete)]
    else:
        reasons = node.reasons()
    return "— " + "; ".join(reasons) if reasons else ""


def summary(result: Survey) -> str:
    counts = result.counts()
    parts = [f"{count} {state.replace('-', ' ')}" for state, count in counts.items() if count]
    code = result.exit_code
    meaning = {0: "nothing to build", 1: "something would be built",
               3: "blocked by a missing external input"}[int(code)]
    return f"{len(result.nodes)} task(s): {', '.join(parts)} (exit {int(code)}: {meaning})"


def _node_json(node: Node, lineage: bool, staleness: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "task_id": node.task_id,
        "family": node.task.family(),
        "params": node.task.to_str_params(),
        "state": node.state,
        "outputs": [t.url for t in node.outputs],
    }
    if lineage:
        data["inputs"] = [t.url for req in node.requires for t in req.outputs]
    data.update({
        "missing_outputs": node.missing_outputs,
        "label": node.label,
        "reasons": node.reasons(),
        "needed": node.needed,
        "external": node.external,
        "wrapper": node.wrapper,
        "holder": node.holder or None,
        "blocked_by": _id(node.blocked_by),
        "upstream_missing": _id(node.upstream_missing),
        "upstream_newer": _id(node.upstream_newer),
        "yielded": [req.task_id for req in node.yielded],
        "worker": node.worker or None,
    })
    if staleness:  # rerun triggers were looked at
        data["stale"] = node.stale
        data["no_record"] = node.unrecorded
    return data


def _id(node: Node | None) -> str | None:
    return None if node is None else node.task_id


def to_json(result: Survey, lineage: bool = False) -> str:
    """`nodes` (requirements first) and `edges` [task, requirement], plus the exit code."""
    document = {
        "requested": [root.task_id for root in result.roots],
        "exit_code": int(result.exit_code),
        "counts": result.counts(),
        "nodes": [_node_json(node, lineage, bool(result.triggers)) for node in result.nodes],
        "edges": [[node.task_id, req.task_id] for node in result.nodes for req in node.requires],
    }
    return json.dumps(document)  # no indent: the C encoder, 10x faster on big graphs


_COLOURS = {COMPLETE: "palegreen", MISSING: "khaki", EXTERNAL_MISSING: "salmon",
            BLOCKED: "lightgrey", RUNNING: "lightblue"}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(result: Survey) -> str:
    """A Graphviz digraph; node colour by state, arrows from requirement to user."""
    ids = {node: f"n{index}" for index, node in enumerate(result.nodes)}
    lines = ["digraph batchdeps {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for node in result.nodes:
        label = _escape(node.task_id) + "\\n" + _escape(node.label)  # dot's line break
        shape = ", shape=cylinder" if node.external else ""
        lines.append(f'  {ids[node]} [label="{label}", '
                     f"fillcolor={_COLOURS[node.state]}{shape}];")
    for node in result.nodes:
        yielded = set(node.yielded)
        for req in node.requires:
            style = " [style=dashed]" if req in yielded else ""
            lines.append(f"  {ids[req]} -> {ids[node]}{style};")
    lines.append("}")
    return "\n".join(lines)


def to_mermaid(result: Survey) -> str:
    """A Mermaid flowchart; a class per state, arrows from requirement to user."""
    ids = {node: f"n{index}" for index, node in enumerate(result.nodes)}
    lines = ["flowchart LR"]
    for node in result.nodes:
        text = f"{node.task_id}<br/>{node.label}".replace('"', "#quot;")
        open_, close = ("[(", ")]") if node.external else ("[", "]")
        lines.append(f'  {ids[node]}{open_}"{text}"{close}:::{node.state.replace("-", "_")}')
    for node in result.nodes:
        yielded = set(node.yielded)
        for req in node.requires:
            arrow = "-.->" if req in yielded else "-->"
            lines.append(f"  {ids[req]} {arrow} {ids[node]}")
    for state, colour in _COLOURS.items():
        lines.append(f"  classDef {state.replace('-', '_')} fill:{colour}")
    return "\n".join(lines)
