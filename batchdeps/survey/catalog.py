"""Every task family of the configured modules, with its parameters: `batchdeps list`."""

from __future__ import annotations

from typing import Any

from ..config import UnsetVariable
from ..task import ExternalTask, Task, WrapperTask


def kind_of(cls: type[Task]) -> str:
    """`external` (made outside the pipeline), `wrapper` (only requirements), or `task`."""
    if issubclass(cls, ExternalTask):
        return "external"
    if issubclass(cls, WrapperTask):
        return "wrapper"
    return "task"


def first_line(cls: type) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    own = doc[0].strip() if doc and cls.__doc__ is not _base_doc(cls) else ""
    return own


def _base_doc(cls: type) -> str | None:
    """The docstring of batchdeps' own base class, which says nothing about this family."""
    for base in (ExternalTask, WrapperTask, Task):
        if issubclass(cls, base):
            return base.__doc__
    return None


def describe(cls: type[Task]) -> dict[str, Any]:
    """One family as data: name, kind, where it is defined, summary, parameters."""
    params = []
    for param in cls.parameters():
        if param.name in cls._config_defaults:
            configured = cls._config_defaults[param.name]  # an unset ${VAR}: shown as such
            default: str | None = (str(configured) if isinstance(configured, UnsetVariable)
                                   else param.serialize(configured))
            source = "config"
        elif param.has_default:
            value = param.convert(cls.family(), param.default)
            default = None if value is None else param.serialize(value)
            source = "code"
        else:
            default, source = None, "required"
        params.append({
            "name": param.name,
            "flag": "--" + param.name.replace("_", "-"),
            "type": param.type_name,
            "default": default,
            "default_from": source,
            "description": param.description,
            "range": bool(param.supports_range),
        })
    return {
        "family": cls.family(),
        "module": cls.__module__,
        "kind": kind_of(cls),
        "summary": first_line(cls),
        "parameters": params,
    }


def render_text(families: list[dict[str, Any]]) -> str:
    """Families in name order, each with its parameters indented below it."""
    lines: list[str] = []
    for family in families:
        tag = "" if family["kind"] == "task" else f" ({family['kind']})"
        head = f"{family['family']}{tag}"
        lines.append(f"{head:32} {family['summary']}".rstrip())
        for param in family["parameters"]:
            if param["default_from"] == "required":
                default = "required"
            else:
                default = f"default {param['default']}"
                if param["default_from"] == "config":
                    default += " (config)"
            kind = param["type"] + (", A..B" if param["range"] else "")
            text = f"    {param['flag']:22} {kind}; {default}"
            if param["description"]:
                text += f": {param['description']}"
            lines.append(text)
    return "\n".join(lines)
