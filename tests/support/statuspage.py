"""The status page of a project's local history, rendered as `batchdeps ui` serves it."""

from __future__ import annotations

from pathlib import Path


def page_showing(root: Path, text: str) -> str | None:
    """The status page's HTML over `root`'s history once it holds `text`, else None."""
    from batchdeps.history.store import HistoryStore
    from batchdeps.web.page import render
    from batchdeps.web.status import page_data

    path = root / "batchdeps-history.db"
    if not path.exists():
        return None
    store = HistoryStore(str(path))
    try:
        html = render(page_data(store, {}, title="t", source="local"))
    finally:
        store.close()
    return html if text in html else None
