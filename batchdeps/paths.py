"""How a target's location is shown to a person: a relative path with what it resolved to.

A cron job runs in another folder than the one a pipeline was written in; `data/raw/x.csv`
alone does not say which `data/` was looked at. Messages about missing or failed outputs
show `data/raw/x.csv (/srv/etl/data/raw/x.csv)`.
"""

from __future__ import annotations

import os


def shown(url: str) -> str:
    """`url`, followed by its absolute path in brackets when it is a relative local path."""
    if "://" in url or os.path.isabs(url):
        return url
    return f"{url} ({os.path.abspath(url)})"


def shown_all(urls: list[str]) -> str:
    """Several locations, comma-separated, each as `shown()` gives it."""
    return ", ".join(shown(url) for url in urls)
