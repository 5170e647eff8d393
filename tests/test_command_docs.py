"""docs/commands/: a page per command, and every option a page's usage block names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.project import Project

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = {"run": "D", "status": "D", "graph": "D", "list": None, "watch": "D"}


@pytest.mark.parametrize("command", sorted(PAGES))
def test_each_command_page_documents_only_options_the_command_has(
        project: Project, command: str) -> None:
    page = (DOCS / "commands" / f"{command}.md").read_text()
    usage = page.split("```")[1]  # the first fenced block: the usage lines
    documented = set(re.findall(r"--[a-z][a-z-]*", usage)) - {"--PARAM"}
    task = PAGES[command]
    result = project.run(command, *([task] if task else []), "--help")
    assert result.returncode == 0, result.stderr
    offered = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    assert documented and documented <= offered, documented - offered


def test_the_commands_index_links_every_page_and_the_luigi_guide_exists() -> None:
    index = (DOCS / "commands" / "README.md").read_text()
    for page in ["run.md", "status.md", "graph.md", "list.md", "watch.md", "completion.md"]:
        assert f"({page}" in index and (DOCS / "commands" / page).exists()
    guide = (DOCS / "from-luigi.md").read_text()
    for concept in ["--local-scheduler", "luigi-deps-tree", "RangeDaily", "[retcode]", "luigid"]:
        assert concept in guide
