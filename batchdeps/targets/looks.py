"""Whether many local files exist: a `stat` of each, or one listing of a folder that holds
many of them (resolution over a complete graph looks at every output)."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import TargetCheckError
from ..paths import shown

if TYPE_CHECKING:
    from .target import Target


#: A batch of at least this many local targets is grouped by folder, and a folder with at
#: least this many of them is listed instead of a `stat` per target.
LIST_AT = 32
#: A listing stops after this many entries per target looked for in its folder (plus
#: LIST_AT): a big folder with few of the batch's files in it costs little more than a
#: stat of each would; the targets not reached are looked at one by one.
LIST_SPAN = 4


def exists_each(targets: list[Target]) -> list[bool]:
    """A `stat` of each local target, in one loop (resolution and the re-check under the
    lock ask for every task: a method call per target was a fifth of this): True, False
    (not there, or a file where a folder of its path should be), TargetCheckError."""
    answers: list[bool] = []
    stat = os.stat
    for target in targets:
        try:
            stat(target.path)  # type: ignore[attr-defined]
        except (FileNotFoundError, NotADirectoryError):
            answers.append(False)
            continue
        except OSError as exc:
            raise TargetCheckError(
                f"cannot check {shown(target.url)}: {exc.strerror or exc}") from exc
        answers.append(True)
    return answers


def exists_listed(targets: list[Target]) -> list[bool]:
    """What `exists_each` answers, with the files of a folder that holds many of the
    targets found in one listing of it (`os.scandir`) instead of a `stat` each.

    The listing is trusted only where it cannot differ from a `stat`: a name it shows as
    a file or a folder (not a symbolic link) is there; a folder that is not there (or is a
    file) holds nothing. Every other answer comes from a `stat` of that target: a name
    the listing does not show (a case-insensitive file system finds it under another
    spelling; `a/b/` and `a/.` are never listed), a link (it may point nowhere). One name
    found in each folder is also looked at with `stat`, so that a path `stat` cannot
    reach (no search permission) fails as it would alone. When anything is not as
    expected (a listing that fails but for "not there", a `stat` that raises or denies
    what the listing showed), the whole batch is answered by `exists_each`, so errors are
    raised as it raises them, for the first target it meets.
    """
    paths: list[str] = [target.path for target in targets]  # type: ignore[attr-defined]
    heads = [path[:path.rfind("/") + 1] for path in paths]  # each folder, with its slash
    counts = Counter(heads)
    present: set[str] = set()  # paths a listing showed
    absent: set[str] = set()  # folders that are not there
    probes: list[int] = []  # one target per listed folder, looked at with a stat too
    for head, count in counts.items():
        if count < LIST_AT:
            continue
        names = _listing(head or ".", LIST_AT + LIST_SPAN * count)
        if names is None:
            return exists_each(targets)
        if names is _NOT_THERE:
            absent.add(head)
            continue
        probes.append(heads.index(head))
        if len(counts) == 1:  # every target in this one folder: its names are enough
            listed = set(names)
            cut = len(head)
            answers = [path[cut:] in listed for path in paths]
            break
        present.update([head + name for name in names])
    else:
        answers = [path in present for path in paths]
    each = [index for index, there in enumerate(answers)
            if not there and heads[index] not in absent]
    for probe in probes:
        if answers[probe]:
            each.append(probe)
    if each:
        try:
            looked = exists_each([targets[index] for index in each])
        except TargetCheckError:
            return exists_each(targets)  # raised for the first target it meets, as alone
        for index, answer in zip(each, looked):
            if answers[index] and not answer:  # a stat denies what the listing showed
                return exists_each(targets)
            answers[index] = answer
    return answers


#: What `_listing` gives for a folder that is not there (or is a file).
_NOT_THERE: list[str] = []


def _listing(folder: str, most: int) -> list[str] | None:
    """The names of the files and folders in `folder`, links left out, at most the first
    `most` entries' worth; `_NOT_THERE` when the folder is not there, None when it cannot
    be listed."""
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in itertools.islice(entries, most)
                    if not entry.is_symlink()]
    except (FileNotFoundError, NotADirectoryError):
        return _NOT_THERE
    except OSError:
        return None
