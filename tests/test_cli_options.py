"""Options of the fixed commands through the real CLI: a valued option given twice is an error."""

from __future__ import annotations

import subprocess

import pytest
from support.project import BATCHDEPS


def _batchdeps(*args: str, cwd: object = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATCHDEPS, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("args, option", [
    (["history", "--limit", "1", "--limit", "2"], "--limit"),
    (["audit", "--since", "24h", "--since", "1h"], "--since"),
    (["lock-server", "--port", "0", "--port", "1"], "--port"),
    (["ui", "--port", "1", "--port", "2"], "--port"),
    (["locks", "release", "--holder", "a:1", "--holder", "b:2"], "--holder"),
])
def test_a_valued_option_given_twice_is_an_error(tmp_path, args: list[str], option: str) -> None:
    proc = _batchdeps(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"'{option}': given 2 times" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_option_given_once_or_left_to_its_default_still_works(tmp_path) -> None:
    once = _batchdeps("history", "--limit", "3", "--json", cwd=tmp_path)
    default = _batchdeps("history", "--json", cwd=tmp_path)
    assert (once.returncode, once.stdout.strip()) == (0, "[]"), once.stderr
    assert (default.returncode, default.stdout.strip()) == (0, "[]"), default.stderr
    shown = _batchdeps("lock-server", "--help")
    assert "[default: 8765;" in shown.stdout and "(8765,)" not in shown.stdout
