"""The benchmark DAGs of `bd_dags.py`, written for Luigi: same tasks, same files.

Luigi's LocalTarget writes atomically too (temporary file, then rename).
"""

from __future__ import annotations

import os
import time

import luigi


def _write(target: luigi.LocalTarget, text: str) -> None:
    with target.open("w") as handle:
        handle.write(text)


class TreeNode(luigi.Task):
    n = luigi.IntParameter(default=0)
    size = luigi.IntParameter()
    root = luigi.Parameter()

    def requires(self):
        first = 10 * self.n + 1
        return [TreeNode(n=c, size=self.size, root=self.root)
                for c in range(first, min(first + 10, self.size))]

    def output(self):
        return luigi.LocalTarget(os.path.join(self.root, "tree", f"{self.n}.txt"))

    def run(self):
        _write(self.output(), f"{self.n}\n")


class ChainLink(luigi.Task):
    n = luigi.IntParameter()
    root = luigi.Parameter()

    def requires(self):
        return [ChainLink(n=self.n - 1, root=self.root)] if self.n > 0 else []

    def output(self):
        return luigi.LocalTarget(os.path.join(self.root, "chain", f"{self.n}.txt"))

    def run(self):
        _write(self.output(), f"{self.n}\n")


class Leaf(luigi.Task):
    n = luigi.IntParameter()
    root = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(self.root, "leaves", f"{self.n}.txt"))

    def run(self):
        _write(self.output(), f"{self.n}\n")


class AllLeaves(luigi.WrapperTask):
    size = luigi.IntParameter()
    root = luigi.Parameter()

    def requires(self):
        return [Leaf(n=i, root=self.root) for i in range(self.size)]


class Sleeper(luigi.Task):
    n = luigi.IntParameter()
    ms = luigi.IntParameter()
    root = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(os.path.join(self.root, "sleep", f"{self.n}.txt"))

    def run(self):
        time.sleep(self.ms / 1000)
        _write(self.output(), f"{self.n}\n")


class AllSleepers(luigi.WrapperTask):
    size = luigi.IntParameter()
    ms = luigi.IntParameter(default=50)
    root = luigi.Parameter()

    def requires(self):
        return [Sleeper(n=i, ms=self.ms, root=self.root) for i in range(self.size)]


def _s3_client():
    from luigi.contrib.s3 import S3Client

    return S3Client(endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")


class S3Part(luigi.Task):
    n = luigi.IntParameter()
    prefix = luigi.Parameter()

    def output(self):
        from luigi.contrib.s3 import S3Target

        return S3Target(f"{self.prefix}/part-{self.n:05d}.csv", client=_client())

    def run(self):
        _write(self.output(), f"{self.n}\n")


_CLIENT = []


def _client():
    if not _CLIENT:
        _CLIENT.append(_s3_client())
    return _CLIENT[0]


class AllS3Parts(luigi.WrapperTask):
    size = luigi.IntParameter()
    prefix = luigi.Parameter()

    def requires(self):
        return [S3Part(n=i, prefix=self.prefix) for i in range(self.size)]
