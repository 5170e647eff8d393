"""Luigi's contrib modules that batchdeps can stand in for, and clear errors for the rest.

`luigi.contrib.s3.S3Target` is a batchdeps S3 target. `hdfs`, `hadoop`, `postgres`,
`spark` and the other services import, so that a module which only mentions them loads;
making one of their targets or tasks raises `UnsupportedFeature` naming it and the
section of docs/from-luigi.md. Any other `luigi.contrib.X` fails at import the same way.
"""

from __future__ import annotations

import sys
from typing import Any

from ...errors import TaskDefinitionError

__all__ = ["UnsupportedFeature", "unsupported_class"]

GUIDE = 'docs/from-luigi.md, "What batchdeps.luigi does not do"'


class UnsupportedFeature(TaskDefinitionError):
    """A part of Luigi that batchdeps.luigi does not provide was used."""


def refusal(what: str) -> UnsupportedFeature:
    return UnsupportedFeature(
        f"{what} is not supported by batchdeps.luigi (see {GUIDE}); batchdeps has no "
        "stand-in for it, and running it otherwise would differ from Luigi silently")


def unsupported_class(module: str, name: str, base: type = object) -> type:
    """A class named as Luigi's `module.name` whose instances cannot be made."""
    what = f"{module}.{name}"

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        raise refusal(what if cls.__name__ == name else f"{cls.__name__} (a {what})")

    return type(name, (base,), {"__new__": __new__, "__module__": module,
                                "_luigi_unsupported": what,
                                "__doc__": f"Luigi's {name}: not supported here."})


class _RefusingFinder:
    """Finds any `batchdeps.luigi.contrib.X` this package lacks; importing it raises
    UnsupportedFeature naming Luigi's module, instead of a bare ModuleNotFoundError."""

    prefix = __name__ + "."

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(self.prefix):
            return None
        import importlib.util

        # Appended last to sys.meta_path: a module this package has was found before.
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        luigi_name = "luigi." + module.__name__[len("batchdeps.luigi."):]
        sys.modules.pop(module.__name__, None)
        raise refusal(luigi_name)


if not any(isinstance(f, _RefusingFinder) for f in sys.meta_path):
    sys.meta_path.append(_RefusingFinder())
