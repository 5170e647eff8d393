"""Local copies of small remote files (targets/copies.py): taken only for the version found,
kept under the version read, passed over when damaged or in a folder others can write,
and merged by two processes at once without losing either's copies."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batchdeps.targets import copies
from batchdeps.targets.target import Target


class Versioned(Target):
    """A local file read as a remote one: its version is the first line of the file
    `<path>.version`, which each read reports and each check (`identity`) gives."""

    reads: list[str] = []

    def __init__(self, path: Path) -> None:
        self.url = str(path)
        self.path = path

    def version(self) -> str:
        return Path(f"{self.path}.version").read_text()

    @classmethod
    def copy_keys(cls, targets: list[Target], identities: list[dict[str, Any]],
                  ) -> list[tuple[str, str, str] | None]:
        return [("test scope", t.url, identity["version"]) for t, identity in zip(targets, identities)]

    @classmethod
    def read_many_versioned(cls, targets: list[Target]) -> list[tuple[bytes | None, str | None]]:
        answers: list[tuple[bytes | None, str | None]] = []
        for target in targets:
            assert isinstance(target, Versioned)
            cls.reads.append(target.path.name)
            answers.append((target.path.read_bytes(), target.version()))
        return answers


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Versioned]:
    monkeypatch.setenv("BATCHDEPS_CACHE_DIR", str(tmp_path / "cache"))
    Versioned.reads = []
    made = []
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(f"{name} 1")
        (tmp_path / f"{name}.version").write_text("v1")
        made.append(Versioned(tmp_path / name))
    return made


def look(files: list[Versioned], **versions: str) -> list[bytes | None]:
    """What read_with_copies gives when the check found `versions` (default: the file's)."""
    found = [{"version": versions.get(f.path.name, f.version())} for f in files]
    return copies.read_with_copies(list(files), found)


def test_a_copy_is_taken_only_for_the_version_the_check_found(files: list[Versioned]) -> None:
    assert look(files) == [b"a 1", b"b 1", b"c 1"] and Versioned.reads == ["a", "b", "c"]
    Versioned.reads.clear()
    assert look(files) == [b"a 1", b"b 1", b"c 1"] and Versioned.reads == []
    files[1].path.write_text("b 2")
    Path(f"{files[1].path}.version").write_text("v2")
    assert look(files) == [b"a 1", b"b 2", b"c 1"] and Versioned.reads == ["b"]
    Versioned.reads.clear()
    assert look(files) == [b"a 1", b"b 2", b"c 1"] and Versioned.reads == []


def test_a_copy_is_kept_under_the_version_it_was_read_at(files: list[Versioned]) -> None:
    """The check saw v1; by the read the file was v2: what was read is kept as v2, so a
    later check that finds v1 (an older listing, or the file set back) fetches again."""
    files[0].path.write_text("a 2")
    Path(f"{files[0].path}.version").write_text("v2")
    assert look(files[:1], a="v1") == [b"a 2"]
    Versioned.reads.clear()
    assert look(files[:1], a="v2") == [b"a 2"] and Versioned.reads == []
    files[0].path.write_text("a 1")
    Path(f"{files[0].path}.version").write_text("v1")
    assert look(files[:1], a="v1") == [b"a 1"] and Versioned.reads == ["a"]


def test_a_damaged_or_foreign_file_of_copies_is_passed_over(
        files: list[Versioned], caplog: pytest.LogCaptureFixture) -> None:
    look(files)
    [kept] = Path(os.environ["BATCHDEPS_CACHE_DIR"]).glob("records-*.json")
    for damage in ('{"copies": {"', '{"batchdeps_record_copies": 99, "copies": {}}', "[]"):
        kept.write_text(damage)
        Versioned.reads.clear()
        with caplog.at_level(logging.WARNING, logger="batchdeps.targets.copies"):
            assert look(files) == [b"a 1", b"b 1", b"c 1"]
        assert Versioned.reads == ["a", "b", "c"]
        assert "passing over" in caplog.text
        caplog.clear()
    Versioned.reads.clear()
    assert look(files) == [b"a 1", b"b 1", b"c 1"] and Versioned.reads == []  # replaced


def test_a_folder_others_can_write_to_is_not_used(
        files: list[Versioned], caplog: pytest.LogCaptureFixture) -> None:
    """Another user could plant a copy there and make an old record look current."""
    folder = Path(os.environ["BATCHDEPS_CACHE_DIR"])
    folder.mkdir(mode=0o700)
    folder.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="batchdeps.targets.copies"):
        assert look(files) == [b"a 1", b"b 1", b"c 1"]
        assert look(files) == [b"a 1", b"b 1", b"c 1"]
    assert Versioned.reads == ["a", "b", "c"] * 2
    assert list(folder.iterdir()) == []
    assert "another user could write there" in caplog.text


#: Merges `count` copies of its own into one file, one merge each, as fast as it can.
_MERGER = """
import sys
from batchdeps.targets import copies
path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    copies._merge(path, {f"{name}-{i}": ["v", name]})
"""


def test_two_processes_merging_at_once_lose_neither_ones_copies(tmp_path: Path) -> None:
    path = str(tmp_path / "records-x.json")
    merging = [subprocess.Popen([sys.executable, "-c", _MERGER, path, name, "150"])
               for name in ("one", "two")]
    assert [proc.wait(timeout=120) for proc in merging] == [0, 0]
    kept = json.loads(Path(path).read_text())["copies"]
    assert sorted(kept) == sorted(f"{name}-{i}" for name in ("one", "two") for i in range(150))
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records-x.json", "records-x.json.lock"]
