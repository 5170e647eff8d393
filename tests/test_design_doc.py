"""docs/design.md's module table names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

import batchdeps

PACKAGE = Path(batchdeps.__file__).parent
DOC = PACKAGE.parent / "docs" / "design.md"


def _table_modules() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## Modules, one job each"):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"^\| `([\w/]+\.py)` \|", section, flags=re.MULTILINE)


def test_the_module_table_covers_every_module_once() -> None:
    listed = _table_modules()
    actual = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == actual


def test_the_flow_diagram_names_the_parts_of_a_run() -> None:
    text = DOC.read_text()
    diagram = text[text.index("```mermaid"):]
    diagram = diagram[: diagram.index("```", 3)]
    for part in ("Session", "resolver", "Runner", "Lifecycle", "Executor", "LockProvider",
                 "Listeners"):
        assert part in diagram, part
