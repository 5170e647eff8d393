"""`luigi.contrib.s3.S3Target`: a batchdeps S3 target with Luigi's constructor and formats.

Credentials and the endpoint come from `[storage.s3]` in config.toml or the environment,
as for every s3:// target; `client=` (a boto client) is refused: give options instead.
"""

from __future__ import annotations

from typing import Any

from ...targets.s3 import S3Target as _BdS3Target
from ..format import Format
from . import UnsupportedFeature

__all__ = ["S3Target"]


class S3Target(_BdS3Target):
    """An object in S3 (Luigi's S3Target): `S3Target("s3://bucket/key", format=...)`."""

    def __new__(cls, path: str, format: Format | None = None, client: Any = None,
                **kwargs: Any) -> Any:
        return object.__new__(cls)

    def __init__(self, path: str, format: Format | None = None, client: Any = None,
                 **kwargs: Any) -> None:
        if client is not None:
            raise UnsupportedFeature(
                "S3Target(client=...) is not supported by batchdeps.luigi: give the "
                "endpoint and credentials in [storage.s3] of config.toml (see "
                'docs/from-luigi.md, "Targets")')
        super().__init__(path, format=format, **kwargs)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.path, self.format))


def _rebuild(cls: type[S3Target], path: str, fmt: Format) -> S3Target:
    return cls(path, format=fmt)


class S3Client:
    """Luigi's S3Client: refused (give [storage.s3] options to targets instead)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedFeature(
            "luigi.contrib.s3.S3Client is not supported by batchdeps.luigi: targets take "
            'their options from [storage.s3] (see docs/from-luigi.md, "Targets")')
