"""How a target's location is shown to a person: a relative path with what it resolved to.

A cron job runs in another folder than the one a pipeline was written in; `data/raw/x.csv`
alone does not say which `data/` was looked at. Messages about missing or failed outputs
show `data/raw/x.csv (/srv/etl/data/raw/x.csv)`.
"""

from __future__ import annotations

import os


def shown(url: str, cwd: str | None = None) -> str:
    """`url`, followed by its absolute path in brackets when it is a relative local path.

    `cwd` is the current folder when the caller already knows it (the resolver asks once
    per plan, not once per task: each `getcwd` is a system call).
    """
    if "://" in url or url.startswith(os.sep):  # os.path.isabs on POSIX, without its calls
        return url
    return f"{url} ({os.path.normpath(os.path.join(cwd or os.getcwd(), url))})"


def shown_all(urls: list[str], cwd: str | None = None) -> str:
    """Several locations, comma-separated, each as `shown()` gives it."""
    return ", ".join(shown(url, cwd) for url in urls)
