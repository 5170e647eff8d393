"""The error tree: one root, each class knows its exit code, the docstring draws the tree."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import batchdeps
from batchdeps import errors
from batchdeps.errors import BatchdepsError, ExitCode

PACKAGE = Path(batchdeps.__file__).parent


def _classes() -> dict[str, type[BatchdepsError]]:
    return {name: cls for name, cls in vars(errors).items()
            if inspect.isclass(cls) and issubclass(cls, BatchdepsError)}


def test_exit_codes_match_the_contract() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0, "FAILED": 1, "USAGE": 2, "MISSING_INPUT": 3, "LOCK_WAIT_TIMEOUT": 4,
        "INTERRUPTED": 130}


def test_every_error_class_has_a_named_exit_code() -> None:
    for cls in _classes().values():
        assert isinstance(cls.exit_code, ExitCode), cls


def test_docstring_tree_lists_every_class_with_its_parent_and_code() -> None:
    doc = errors.__doc__ or ""
    drawn: dict[str, tuple[int, int]] = {}  # name -> (indent, code)
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│├└─ ]*))([A-Z]\w+)\s+(\d+)\s", line)
        if not match:
            continue
        indent, name, code = len(match.group(1)), match.group(2), int(match.group(3))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((indent, name))
        drawn[name] = (indent, code)
    classes = _classes()
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        assert drawn[name][1] == cls.exit_code, name
        if cls is not BatchdepsError:
            assert cls.__mro__[1].__name__ == parents[name], name


def test_no_exit_code_literal_outside_errors() -> None:
    """`sys.exit(3)`, `exit_code == 130`, `return 4` from a function that returns an
    ExitCode: every code comes from ExitCode.

    Forked worker processes' own exit statuses (`os._exit` in run/executors.py) are not
    exit codes of `batchdeps run` and are not checked here.
    """
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" or path.name == "executors.py":
            continue
        tree = ast.parse(path.read_text())
        exit_code_functions = [  # functions that return an exit code
            f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.returns is not None
            and "ExitCode" in ast.unparse(f.returns)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = getattr(node.func, "attr", "")
                operands: list[ast.expr] = list(node.args) if called in ("exit", "_exit") else []
            elif isinstance(node, ast.Return) and node.value is not None and any(
                    node in ast.walk(func) for func in exit_code_functions):
                operands = [node.value]
            elif isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if not any(isinstance(side, ast.Attribute) and side.attr == "exit_code"
                           for side in operands):
                    operands = []
            else:
                continue
            if any(isinstance(c, ast.Constant) and isinstance(c.value, int) and
                   not isinstance(c.value, bool) for c in operands):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
