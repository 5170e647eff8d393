"""Promises of README.md and docs/operations.md that no module's own tests cover.

docs/promises.md maps every promise of those two files to the test that would fail if it
broke; the tests here fill the gaps. The first one runs the README's tutorial exactly as
written: its files and commands are taken from the fenced blocks of the tutorial section,
so the README cannot drift from what the command does.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from support.project import BATCHDEPS

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TUTORIAL_HEADING = "## Five-minute tutorial"


def section(text: str, heading: str) -> str:
    """The lines under `heading` up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert starts, f"README.md has no section {heading!r}"
    body: list[str] = []
    in_fence = False
    for line in lines[starts[0] + 1:]:
        if line.startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else re.match(r"(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every ``` block in `text`, in order."""
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)]


class Tutorial:
    """The README tutorial's pipeline files, shell commands and Python snippet."""

    def __init__(self, text: str) -> None:
        self.text = section(text, TUTORIAL_HEADING)
        blocks = fenced_blocks(self.text)
        self.files: dict[str, str] = {}
        self.commands: list[str] = []
        for language, body in blocks:
            first = body.splitlines()[0] if body else ""
            if language == "python" and re.match(r"# [\w./-]+\.py$", first):
                self.files[first[2:]] = body
            elif language == "sh":
                self.commands += [line for line in body.splitlines() if line.strip()]
        snippets = re.findall(r"`(bd\.build\(.*?\))`", self.text)
        self.build_snippet = snippets[0] if snippets else ""

    def parameters(self) -> dict[str, str]:
        """Parameter name -> description (or "") of every task in the tutorial's files."""
        found: dict[str, str] = {}
        for body in self.files.values():
            for name, args in re.findall(r"^\s+(\w+) = bd\.\w*Parameter\((.*)\)", body,
                                          re.MULTILINE):
                description = re.search(r'description="([^"]*)"', args)
                found[name] = description.group(1) if description else ""
        return found


def tutorial_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("BATCHDEPS_")}
    env["PATH"] = os.path.dirname(BATCHDEPS) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["BATCHDEPS_LOCK_DIR"] = str(root / ".locks")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def write_files(root: Path, tutorial: Tutorial) -> None:
    for relative, body in tutorial.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under data/ with its inode and content (hidden temporary files too)."""
    data = root / "data"
    if not data.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_ino, p.read_bytes())
            for p in sorted(data.rglob("*")) if p.is_file()}


def test_readme_tutorial_files_and_commands_are_found() -> None:
    tutorial = Tutorial(README.read_text())
    assert tutorial.files, "the tutorial has no ```python block starting with '# path.py'"
    assert any(cmd.startswith("batchdeps run") for cmd in tutorial.commands)
    assert tutorial.build_snippet, "the tutorial no longer shows bd.build(...)"
    assert tutorial.parameters()


def test_readme_tutorial_runs_as_written(tmp_path: Path) -> None:
    """Every command of the tutorial, in order, does what its comment says."""
    tutorial = Tutorial(README.read_text())
    write_files(tmp_path, tutorial)
    env = tutorial_env(tmp_path)
    parameters = tutorial.parameters()
    for line in tutorial.commands:
        command, _, comment = line.partition("#")
        argv = shlex.split(command)
        before = snapshot(tmp_path)
        done = subprocess.run(["bash", "-c", line], check=False, cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=120)
        after = snapshot(tmp_path)
        said = f"$ {line}\n{done.stdout}{done.stderr}"
        if argv[:2] != ["batchdeps", "run"]:
            assert done.returncode == 0, said
            continue
        assert "Traceback" not in done.stderr, said
        if "--help" in argv:
            assert done.returncode == 0, said
            for name, description in parameters.items():
                assert f"--{name.replace('_', '-')}" in done.stdout, said
                if description:
                    assert description in " ".join(done.stdout.split()), said
            assert "default: world" in done.stdout, said
        elif "--dry-run" in argv:
            # "It exits as status does: ... 1 something would be built" -- and changes nothing.
            assert done.returncode == 1, said
            assert "missing" in done.stdout and argv[2] in done.stdout, said
            assert after == before, said
        elif "--force" in argv:
            assert done.returncode == 0, said
            assert "1 built" in done.stdout and "forced" in done.stderr + done.stdout, said
            changed = [p for p in after if p in before and after[p][0] != before[p][0]]
            assert changed, f"--force replaced no output\n{said}"
        else:
            assert done.returncode == 0, said
            built = re.search(r"builds (\S+)", comment)
            if built:
                path = built.group(1)
                assert path not in before and path in after, said
                source = (tmp_path / "data/in/world.txt").read_text()
                assert (tmp_path / path).read_text() == source.upper(), said
            if "nothing to do" in comment:
                assert after == before, said
                assert "built" not in done.stdout and "start" not in done.stderr, said
    leftovers = [p for p in snapshot(tmp_path) if ".batchdeps-tmp" in p]
    assert not leftovers, leftovers


def test_readme_tutorial_build_from_python(tmp_path: Path) -> None:
    """The tutorial's `bd.build(...)` returns a BuildResult with `tasks` and `exit_code`."""
    tutorial = Tutorial(README.read_text())
    write_files(tmp_path, tutorial)
    (tmp_path / "data/in").mkdir(parents=True)
    (tmp_path / "data/in/world.txt").write_text("hello\n")
    modules = [str(Path(f).with_suffix("")).replace("/", ".") for f in tutorial.files]
    task_name = re.match(r"bd\.build\(\[(\w+)\(", tutorial.build_snippet)
    assert task_name, tutorial.build_snippet
    script = "\n".join([
        "import batchdeps as bd",
        *(f"from {module} import *" for module in modules),
        "for _ in range(2):",
        f"    result = {tutorial.build_snippet}",
        "    assert type(result).__name__ == 'BuildResult', type(result)",
        "    print(int(result.exit_code), sorted((t, r.status) for t, r in result.tasks.items()))",
    ])
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path,
                          env=tutorial_env(tmp_path), text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = done.stdout.strip().splitlines()[-2:]
    task = task_name.group(1)
    assert first.startswith("0 ") and f"{task}(" in first and "'built'" in first, first
    assert second.startswith("0 ") and "'complete'" in second and "'built'" not in second, second
