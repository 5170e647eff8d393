"""Benchmark DAGs for batchdeps: a 10-ary tree, a chain, a wrapper over N, sleep tasks.

`bench/dags/luigi_dags.py` defines the same DAGs for Luigi, task for task and file for
file, so both tools do the same work. Every task writes one small file under `root`.
"""

from __future__ import annotations

import os
import time

import batchdeps as bd


def _write(target: bd.Target, text: str) -> None:
    with target.open("w") as handle:
        handle.write(text)


class TreeNode(bd.Task):
    """Node `n` of a 10-ary tree of `size` nodes; node n needs nodes 10n+1 .. 10n+10."""

    n = bd.IntParameter(default=0)
    size = bd.IntParameter()
    root = bd.Parameter()

    def requires(self) -> list[TreeNode]:
        first = 10 * self.n + 1
        return [TreeNode(n=c, size=self.size, root=self.root)
                for c in range(first, min(first + 10, self.size))]

    def output(self) -> bd.Target:
        return bd.FileTarget(os.path.join(self.root, "tree", f"{self.n}.txt"))

    def run(self) -> None:
        _write(self.output(), f"{self.n}\n")


class ChainLink(bd.Task):
    """Link `n` of a chain; link n needs link n-1 (link 0 needs nothing)."""

    n = bd.IntParameter()
    root = bd.Parameter()

    def requires(self) -> list[ChainLink]:
        return [ChainLink(n=self.n - 1, root=self.root)] if self.n > 0 else []

    def output(self) -> bd.Target:
        return bd.FileTarget(os.path.join(self.root, "chain", f"{self.n}.txt"))

    def run(self) -> None:
        _write(self.output(), f"{self.n}\n")


class Leaf(bd.Task):
    """One independent file."""

    n = bd.IntParameter()
    root = bd.Parameter()

    def output(self) -> bd.Target:
        return bd.FileTarget(os.path.join(self.root, "leaves", f"{self.n}.txt"))

    def run(self) -> None:
        _write(self.output(), f"{self.n}\n")


class AllLeaves(bd.WrapperTask):
    """A wrapper over `size` leaves: the nightly cron shape."""

    size = bd.IntParameter()
    root = bd.Parameter()

    def requires(self) -> list[Leaf]:
        return [Leaf(n=i, root=self.root) for i in range(self.size)]


class Sleeper(bd.Task):
    """Sleeps `ms` milliseconds, then writes its file."""

    n = bd.IntParameter()
    ms = bd.IntParameter()
    root = bd.Parameter()

    def output(self) -> bd.Target:
        return bd.FileTarget(os.path.join(self.root, "sleep", f"{self.n}.txt"))

    def run(self) -> None:
        time.sleep(self.ms / 1000)
        _write(self.output(), f"{self.n}\n")


class AllSleepers(bd.WrapperTask):
    """A wrapper over `size` sleepers."""

    size = bd.IntParameter()
    ms = bd.IntParameter(default=50)
    root = bd.Parameter()

    def requires(self) -> list[Sleeper]:
        return [Sleeper(n=i, ms=self.ms, root=self.root) for i in range(self.size)]


class S3Part(bd.Task):
    """One object under `prefix` (an s3:// URL); the S3 case only checks that it exists."""

    n = bd.IntParameter()
    prefix = bd.Parameter()

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.prefix}/part-{self.n:05d}.csv")

    def run(self) -> None:
        _write(self.output(), f"{self.n}\n")


class AllS3Parts(bd.WrapperTask):
    """A wrapper over `size` S3 objects."""

    size = bd.IntParameter()
    prefix = bd.Parameter()

    def requires(self) -> list[S3Part]:
        return [S3Part(n=i, prefix=self.prefix) for i in range(self.size)]
