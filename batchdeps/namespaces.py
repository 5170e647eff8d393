"""Task namespaces: `bd.namespace()`, `bd.auto_namespace()`, and the one a class is born in.

A family is `namespace.ClassName` when the class has a namespace, else `ClassName`. The
namespace comes from the class's `task_namespace` attribute (inherited as attributes are),
else from the `namespace()` call in effect for its module when the class was defined, as
in Luigi. `namespace("ns", scope=__name__)` covers the module `scope` and its submodules;
without a scope, every module; the longest scope that covers a module wins.
"""

from __future__ import annotations

from typing import Final


class _SameAsModule:
    """The namespace of `auto_namespace()`: the module the class is defined in."""

    def __repr__(self) -> str:
        return "<the module's name>"


SAME_AS_MODULE: Final = _SameAsModule()


class Namespaces:
    """Namespaces by module scope ("" covers every module); filled at class-definition time."""

    def __init__(self) -> None:
        self.by_scope: dict[str, str | _SameAsModule | None] = {}

    def set(self, namespace: str | _SameAsModule | None, scope: str = "") -> None:
        if namespace is not None and not isinstance(namespace, (str, _SameAsModule)):
            raise TypeError(f"a task namespace is a string or None, got {namespace!r}")
        if not isinstance(scope, str):
            raise TypeError(f"a namespace scope is a module name, got {scope!r}")
        self.by_scope[scope] = (namespace or None) if isinstance(namespace, str) else namespace

    def for_module(self, module: str) -> str | None:
        """The namespace a class defined now in `module` gets (None: none)."""
        best: str | None = None
        for scope, namespace in self.by_scope.items():
            # A scope whose namespace was ended (`namespace(scope=...)`) covers nothing:
            # a wider scope's namespace applies again, as in Luigi.
            covers = not scope or module == scope or module.startswith(scope + ".")
            if covers and namespace is not None and (best is None or len(scope) > len(best)):
                best = scope
        if best is None:
            return None
        namespace = self.by_scope[best]
        return module if isinstance(namespace, _SameAsModule) else namespace


#: The namespaces of this process: class definitions read it as they happen (an import
#: order fact, as in Luigi), so it cannot be an object handed around.
current = Namespaces()


def namespace(namespace: str | None = None, scope: str = "") -> None:
    """Classes defined after this call in `scope` (a module name; "": every module) get
    `namespace`; `namespace()` with no name ends it. Call it with `scope=__name__` so that
    it does not leak into modules imported later."""
    current.set(namespace, scope)


def auto_namespace(scope: str = "") -> None:
    """Classes defined after this call in `scope` get their module's name as namespace."""
    current.set(SAME_AS_MODULE, scope)
