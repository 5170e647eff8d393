"""docs/lock-api.md matches the protocol module: the same routes and status codes."""

from __future__ import annotations

import re
from pathlib import Path

from batchdeps.locks import protocol

DOC = Path(__file__).resolve().parent.parent / "docs" / "lock-api.md"


def test_route_table_matches_the_code() -> None:
    text = DOC.read_text()
    documented = {name: (method, path) for name, method, path in
                  re.findall(r"^\| (\w+) \| `(GET|POST|PUT|DELETE) (/\S+)` \|", text,
                             re.MULTILINE)}
    assert documented == protocol.ROUTES
    for method, path in protocol.ROUTES.values():
        assert f"### `{method} {path}`" in text


def test_every_status_code_is_documented() -> None:
    text = DOC.read_text()
    documented = {int(code) for code in re.findall(r"^\| (\d{3}) \|", text, re.MULTILINE)}
    in_code = {value for name, value in vars(protocol).items()
               if name.isupper() and not name.startswith(("MAX_", "MIN_"))
               and isinstance(value, int) and 100 <= value <= 599}
    assert documented == in_code


def test_documented_limits_match_the_code() -> None:
    text = DOC.read_text()
    assert f"at most {protocol.MAX_KEY_CHARS} characters" in text
    assert f"{protocol.MAX_BODY_BYTES // 1024} KiB" in text
    assert f"from {protocol.MIN_TTL:g} to {protocol.MAX_TTL:g}" in text
    assert f"1–{protocol.MAX_RESOURCE_SLOTS}" in text
