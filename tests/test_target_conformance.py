"""One conformance suite for targets, run against every backend: local, memory and s3."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from support.s3util import keys_under, moto_endpoint, moto_server, multipart_uploads, s3_env  # noqa: F401

import batchdeps as bd
from batchdeps.errors import TargetCheckError, TargetError
from batchdeps.targets import Storage, check_exists, staging_scope


@dataclass
class Backend:
    """How to make targets on one backend, and how to see what it holds underneath."""

    name: str
    make: Callable[..., bd.Target]  # (name, **keywords of FileTarget)
    leftovers: Callable[[], list[str]]  # everything stored besides committed outputs
    broken: Callable[[], bd.Target] | None  # a target whose existence cannot be decided


@pytest.fixture(params=["local", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    if request.param == "local":
        root = tmp_path / "data"

        def local_leftovers() -> list[str]:
            found = []
            for folder, _, files in os.walk(root):
                found += [os.path.join(folder, f) for f in files if ".batchdeps-tmp" in folder]
            return found

        def local_broken() -> bd.Target:
            loop = tmp_path / "loop"
            if not loop.is_symlink():
                loop.symlink_to(loop)
            return bd.FileTarget(str(loop / "x.csv"))  # stat fails with ELOOP, not ENOENT

        return Backend("local", lambda name, **kw: bd.FileTarget(str(root / name), **kw),
                       local_leftovers, local_broken)
    if request.param == "memory":
        storage = Storage()
        prefix = f"memory://conformance-{uuid.uuid4().hex[:8]}"

        def memory_leftovers() -> list[str]:
            fs = storage.filesystem("memory", {})
            base = prefix[len("memory://"):]
            return [p for p in fs.find("/" + base) if ".batchdeps-tmp" in p]

        return Backend("memory",
                       lambda name, **kw: bd.FileTarget(f"{prefix}/{name}", storage=storage, **kw),
                       memory_leftovers, None)
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("s3_env")
    from support.s3util import new_bucket

    bucket = new_bucket(endpoint)
    storage = Storage({"s3": {"endpoint_url": endpoint}})
    spool = tmp_path / "spool"
    request.getfixturevalue("monkeypatch").setenv("BATCHDEPS_SPOOL_DIR", str(spool))
    made: set[str] = set()

    def make_s3(name: str, **kw: Any) -> bd.Target:
        made.add(name)
        return bd.FileTarget(f"s3://{bucket}/{name}", storage=storage, **kw)

    def s3_leftovers() -> list[str]:
        stray = [k for k in keys_under(endpoint, bucket) if ".batchdeps" in k]
        stray += [u["Key"] for u in multipart_uploads(endpoint, bucket)]
        stray += os.listdir(spool) if spool.exists() else []
        return stray

    dead = Storage({"s3": {"endpoint_url": f"http://127.0.0.1:{_closed_port()}"}})
    return Backend("s3", make_s3, s3_leftovers,
                   lambda: bd.FileTarget(f"s3://{bucket}/x.csv", storage=dead))


def _closed_port() -> int:
    from support.s3util import free_port

    return free_port()


def test_missing_target_does_not_exist(backend: Backend) -> None:
    target = backend.make("nothing/here.csv")
    assert target.exists() is False
    assert check_exists([target]) == [False]


def test_text_round_trip(backend: Backend) -> None:
    target = backend.make("out/report.txt")
    with target.open("w") as out:
        out.write("héllo\nworld\n")
    assert target.exists()
    with target.open("r") as src:
        assert src.read() == "héllo\nworld\n"
    assert backend.leftovers() == []


def test_binary_round_trip(backend: Backend) -> None:
    payload = bytes(range(256)) * 1000
    target = backend.make("out/blob.bin")
    with target.open("wb") as out:
        out.write(payload)
    with target.open("rb") as src:
        assert src.read() == payload


def test_modes_take_every_spelling_python_open_takes(backend: Backend) -> None:
    """"bw"/"br" are "wb"/"rb", "wt"/"rt" are "w"/"r" (Python's `open()` reads them so);
    anything else is refused by name."""
    target = backend.make("out/spelled.bin")
    with target.open("bw") as out:
        out.write(b"\x00bytes")
    with target.open("br") as src:
        assert src.read() == b"\x00bytes"
    with target.open("tw") as out:
        out.write("text")
    with target.open("rt") as src:
        assert src.read() == "text"
    with pytest.raises(ValueError, match="unsupported mode 'a'"):
        target.open("a")


def test_overwrite_replaces_content(backend: Backend) -> None:
    target = backend.make("out/v.txt")
    for text in ("first", "second"):
        with target.open("w") as out:
            out.write(text)
    with target.open("r") as src:
        assert src.read() == "second"


def test_unfinished_write_is_invisible(backend: Backend) -> None:
    target = backend.make("out/slow.csv")
    with target.open("w") as out:
        out.write("half")
        assert target.exists() is False
    assert target.exists() is True


def test_write_that_raises_leaves_nothing(backend: Backend) -> None:
    target = backend.make("out/failed.csv")
    with pytest.raises(RuntimeError), target.open("w") as out:
        out.write("partial")
        raise RuntimeError("boom")
    assert target.exists() is False
    assert backend.leftovers() == []


def test_staged_write_commits_only_when_asked(backend: Backend) -> None:
    target = backend.make("out/staged.csv")
    with staging_scope() as staging:
        with target.open("w") as out:
            out.write("staged")
        assert target.exists()  # visible to the attempt that wrote it
        with target.open("r") as src:
            assert src.read() == "staged"
        pending = list(staging.pending.values())
        staging.pending.clear()
    assert target.exists() is False  # not visible to anyone else yet
    for write in pending:
        target.commit_tmp(write.tmp_path)
    assert target.exists()
    with target.open("r") as src:
        assert src.read() == "staged"
    assert backend.leftovers() == []


def test_staged_write_discarded_leaves_nothing(backend: Backend) -> None:
    target = backend.make("out/discarded.csv")
    with staging_scope() as staging:
        with target.open("w") as out:
            out.write("never")
        staging.discard()
    assert target.exists() is False
    assert backend.leftovers() == []


def test_batched_check_agrees_with_single_checks(backend: Backend) -> None:
    targets = [backend.make(f"many/{i:03d}.csv") for i in range(12)]
    targets += [backend.make(f"other/{i}.csv") for i in range(3)]
    for index, target in enumerate(targets):
        if index % 3 == 0:
            with target.open("w") as out:
                out.write(str(index))
    expected = [index % 3 == 0 for index in range(len(targets))]
    assert check_exists(targets) == expected
    assert [t.exists() for t in targets] == expected


def test_check_error_is_not_missing(backend: Backend) -> None:
    if backend.broken is None:
        pytest.skip(f"{backend.name} has no way to fail an existence check")
    target = backend.broken()
    with pytest.raises(TargetCheckError) as caught:
        target.exists()
    assert target.url in str(caught.value)
    with pytest.raises(TargetCheckError):
        check_exists([target])


def test_reading_a_missing_target_is_a_target_error(backend: Backend) -> None:
    with pytest.raises(TargetError) as caught:
        backend.make("nope/none.txt").open("r")
    assert "nope/none.txt" in str(caught.value)


# -- commits of several writes ---------------------------------------------------------------
class _RefusingTarget(bd.Target):
    """A target whose commit always fails, to stop a commit part-way."""

    url = "refusing://x"

    def commit_tmp(self, tmp_path: str) -> None:
        raise TargetError("cannot commit refusing://x: refused")

    def discard_tmp(self, tmp_path: str) -> None:
        pass

    def keep_previous(self, tmp_path: str, hide: bool) -> None:
        return None


def _read(target: bd.Target) -> str:
    with target.open("r") as src:
        return src.read()


def test_commit_of_several_writes_makes_all_visible(backend: Backend) -> None:
    targets = [backend.make(f"multi/{name}.csv") for name in ("a", "b", "c")]
    with staging_scope() as staging:
        for target in targets:
            with target.open("w") as out:
                out.write(target.url)
    staging.commit(targets)
    assert [_read(t) for t in targets] == [t.url for t in targets]
    assert backend.leftovers() == []


def test_commit_that_fails_part_way_undoes_what_it_did(backend: Backend) -> None:
    from batchdeps.targets import PendingWrite

    replaced, new = backend.make("part/replaced.csv"), backend.make("part/new.csv")
    with replaced.open("w") as out:
        out.write("old")
    with staging_scope() as staging:
        for target in (replaced, new):
            with target.open("w") as out:
                out.write("new")
    staging.add(PendingWrite(_RefusingTarget(), "nowhere"))  # committed after the others
    with pytest.raises(TargetError, match="refused"):
        staging.commit([replaced, new])
    assert _read(replaced) == "old"  # what the commit replaced is back
    assert new.exists() is False  # what it made is gone
    assert backend.leftovers() == []


def test_staged_writes_travel_between_processes_with_their_options(backend: Backend) -> None:
    import pickle

    target = backend.make("travel/out.csv")
    with staging_scope() as staging, target.open("w") as out:
        out.write("travelled")
    copy = pickle.loads(pickle.dumps(staging))
    (write,) = copy.pending.values()
    assert type(write.target) is type(target)
    assert getattr(write.target, "_options", None) == getattr(target, "_options", None)
    copy.commit([target])
    assert _read(target) == "travelled"


def test_modified_time_is_when_the_target_was_written_and_none_when_missing(
        backend: Backend) -> None:
    import time

    target = backend.make("when/m.txt")
    assert target.modified() is None
    before = time.time()
    with target.open("w") as out:
        out.write("x")
    modified = target.modified()
    assert modified is not None and before - 300 < modified < time.time() + 300
    if backend.broken is not None:
        with pytest.raises(TargetCheckError):
            backend.broken().modified()


def test_temporary_path_commits_a_file_made_there(backend: Backend) -> None:
    target = backend.make("tmppath/made.txt")
    if backend.name == "memory":
        with pytest.raises(TargetError, match="temporary_path"), target.temporary_path():
            pass
        return
    with target.temporary_path() as path:
        with open(path, "w") as out:
            out.write("made by a tool")
        assert target.exists() is False
    assert _read(target) == "made by a tool"
    assert backend.leftovers() == []


def test_temporary_path_that_raises_leaves_nothing(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("memory has no temporary_path")
    target = backend.make("tmppath/failed.txt")
    with pytest.raises(RuntimeError), target.temporary_path() as path:
        with open(path, "w") as out:
            out.write("half")
        raise RuntimeError("boom")
    assert target.exists() is False
    assert backend.leftovers() == []


def test_a_folder_output_is_committed_as_one_or_refused(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("memory has no temporary_path")
    target = backend.make("tmppath/folder.d")
    if backend.name != "local":
        with pytest.raises(TargetError, match="folder"), target.temporary_path() as path:
            os.mkdir(path)
        assert backend.leftovers() == []
        return
    for version in ("old", "new"):
        with target.temporary_path() as path:
            os.mkdir(path)
            for i in range(3 if version == "old" else 2):
                with open(os.path.join(path, f"{version}{i}.txt"), "w") as out:
                    out.write(version)
    folder = target.path  # type: ignore[attr-defined]
    assert sorted(os.listdir(folder)) == ["new0.txt", "new1.txt"]  # replaced as a whole
    assert backend.leftovers() == []


def test_identity_is_none_when_missing_and_changes_when_rewritten(backend: Backend) -> None:
    from batchdeps.targets import check_identities

    targets = [backend.make(f"ident/{i}.txt") for i in range(6)]
    assert check_identities(targets) == [None] * 6 and targets[0].identity() is None
    for target in targets[:5]:
        with target.open("w") as out:
            out.write("first")
    before = check_identities(targets)  # five under one prefix: the listing path on S3
    assert before[5] is None and all(before[:5])
    assert [t.identity() for t in targets] == before  # the single check agrees
    json.dumps(before)  # kept in build records as it is
    with targets[2].open("w") as out:
        out.write("second, longer")
    after = check_identities(targets)
    assert after[2] != before[2]
    assert after[:2] == before[:2] and after[3:] == before[3:]


def test_read_many_gives_contents_and_none_for_missing(backend: Backend) -> None:
    from batchdeps.targets import read_files

    present, absent = backend.make("small/a.json"), backend.make("small/b.json")
    with present.open("w") as out:
        out.write('{"a": 1}')
    assert read_files([present, absent]) == [b'{"a": 1}', None]


# -- Luigi's target helpers: path=, format=, remove(), makedirs(), fs ------------------------
def test_path_keyword_names_the_same_target(backend: Backend) -> None:
    from pathlib import PurePosixPath

    target = backend.make("kw/a.txt")
    assert backend.make("kw/a.txt", format=None) == target
    again = type(target)(path=target.url, storage=getattr(target, "_storage", None))
    assert again == target and str(again) == str(target)
    if backend.name == "local":
        assert bd.FileTarget(path=PurePosixPath(str(target))) == target  # os.PathLike
        assert str(target) == target.path  # type: ignore[attr-defined]
    else:
        assert str(target) == target.url
    with pytest.raises(TypeError, match="not both"):
        bd.FileTarget("a.txt", path="b.txt")
    with pytest.raises(TypeError, match="needs its location"):
        bd.FileTarget()


FORMATS = ["Gzip", "Bzip2", "UTF8", "Nop", "UTF8 >> Gzip"]


def _format(name: str) -> Any:
    from batchdeps.targets import formats

    if name == "UTF8 >> Gzip":
        return formats.UTF8 >> formats.Gzip
    return getattr(formats, name)


@pytest.mark.parametrize("name", FORMATS)
def test_formats_round_trip_and_write_what_they_say(backend: Backend, name: str) -> None:
    import bz2
    import gzip

    fmt = _format(name)
    target = backend.make(f"fmt/{name.replace(' ', '')}.out", format=fmt)
    text = "héllo\nwörld\n" * 200
    data = text if name.startswith("UTF8") else text.encode("utf-8")
    with target.open("w") as out:
        out.write(data)
        assert target.exists() is False  # atomic through the format too
    with target.open("r") as src:
        assert src.read() == data
    with backend.make(f"fmt/{name.replace(' ', '')}.out").open("rb") as raw:
        stored = raw.read()
    plain = {"Gzip": gzip.decompress, "Bzip2": bz2.decompress,
             "UTF8 >> Gzip": gzip.decompress}.get(name, lambda b: b)(stored)
    assert plain == text.encode("utf-8")
    assert backend.leftovers() == []


@pytest.mark.parametrize("name", ["Gzip", "UTF8"])
def test_a_formatted_write_that_raises_or_is_dropped_leaves_nothing(backend: Backend,
                                                                    name: str) -> None:
    import gc

    target = backend.make(f"fmtfail/{name}.out", format=_format(name))
    data: Any = "x" * 1000 if name == "UTF8" else b"x" * 1000
    with pytest.raises(RuntimeError), target.open("w") as out:
        out.write(data)
        raise RuntimeError("boom")
    dropped = target.open("w")
    dropped.write(data)
    del dropped
    gc.collect()
    assert target.exists() is False
    assert backend.leftovers() == []


def test_a_formatted_write_is_staged_like_any_write(backend: Backend) -> None:
    import gzip

    target = backend.make("fmtstage/day.csv.gz", format=_format("UTF8 >> Gzip"))
    with staging_scope() as staging:
        with target.open("w") as out:
            out.write("a,b\n")
        assert target.exists()  # the attempt sees its own write ...
        with target.open("r") as src:
            assert src.read() == "a,b\n"
    assert target.exists() is False  # ... no one else does before the commit
    staging.commit([target])
    with backend.make("fmtstage/day.csv.gz").open("rb") as raw:
        assert gzip.decompress(raw.read()) == b"a,b\n"
    assert backend.leftovers() == []


def test_a_formatted_target_travels_with_its_format(backend: Backend) -> None:
    import pickle

    target = backend.make("fmtpickle/x.gz", format=_format("Gzip"))
    copy = pickle.loads(pickle.dumps(target))
    assert copy == target and type(copy.format) is type(target.format)  # type: ignore[attr-defined]
    with staging_scope() as staging, target.open("w") as out:
        out.write(b"travelled")
    moved = pickle.loads(pickle.dumps(staging))
    moved.commit([target])
    with target.open("r") as src:
        assert src.read() == b"travelled"


def test_remove_deletes_now_and_drops_a_staged_write(backend: Backend) -> None:
    target = backend.make("rm/a.txt")
    with target.open("w") as out:
        out.write("x")
    target.remove()  # type: ignore[attr-defined]
    assert target.exists() is False
    target.remove()  # type: ignore[attr-defined]  # nothing there: nothing done
    with staging_scope() as staging:
        with target.open("w") as out:
            out.write("staged")
        target.remove()  # type: ignore[attr-defined]
        assert target.exists() is False and len(staging) == 0
    staging.commit([target])
    assert target.exists() is False
    assert backend.leftovers() == []


def test_makedirs_makes_the_folder_a_tool_can_write_into(backend: Backend) -> None:
    target = backend.make("deep/er/still/x.txt")
    target.makedirs()  # type: ignore[attr-defined]
    parent = str(target).rpartition("/")[0]
    if backend.name == "local":
        assert os.path.isdir(parent)
    elif backend.name == "memory":
        assert target.fs.isdir(parent)  # type: ignore[attr-defined]
    target.makedirs()  # type: ignore[attr-defined]  # there already: fine


def test_fs_lists_checks_and_removes_on_the_targets_storage(backend: Backend) -> None:
    targets = [backend.make(f"fsdir/{name}") for name in ("a.txt", "sub/b.txt")]
    for target in targets:
        with target.open("w") as out:
            out.write("x")
    fs = targets[0].fs  # type: ignore[attr-defined]
    folder = str(targets[0]).rpartition("/")[0]
    assert list(fs.listdir(folder)) == [str(t) for t in targets]
    assert fs.exists(str(targets[1])) and not fs.exists(folder + "/nothing.txt")
    fs.remove(str(targets[1]))
    assert targets[1].exists() is False and targets[0].exists()
    with pytest.raises(TargetError, match="not there"):
        fs.remove(str(targets[1]))
    fs.copy(str(targets[0]), folder + "/copied.txt")
    assert _read(backend.make("fsdir/copied.txt")) == "x"
    if backend.broken is not None:
        broken = backend.broken()
        with pytest.raises(TargetCheckError):
            broken.fs.exists(str(broken))  # type: ignore[attr-defined]


def test_temporary_path_inside_a_run_is_staged_with_the_other_writes(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("memory has no temporary_path")
    target = backend.make("tmprun/made.txt")
    with staging_scope() as staging:
        with target.temporary_path() as path:  # type: ignore[attr-defined]
            with open(path, "w") as out:
                out.write("made by a tool")
        assert len(staging) == 1
    assert target.exists() is False  # nothing until the attempt commits
    staging.commit([target])
    assert _read(target) == "made by a tool"
    assert backend.leftovers() == []
