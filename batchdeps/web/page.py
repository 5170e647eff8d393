"""The status page as HTML: plain data in, one escaped, self-contained document out.

Server-rendered, no script: it reads the same without JavaScript, refreshes itself with a
meta refresh, and every value that comes from a user (task ids, errors, paths, hosts) goes
through `html.escape`. Both the lock server's `GET /` and `batchdeps ui` render with it.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

REFRESH_SECONDS = 15
PAGE_SIZE = 20

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;background:#fff} td,th{padding:.25em .5em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600} code{font:12px ui-monospace,monospace;word-break:break-all}
.failed,.timed-out{color:#b00020;font-weight:600} .built,.ok{color:#1b5e20} .running,.retrying{color:#0d47a1} .waiting,.waiting-for-input{color:#8d6e00}
.muted{color:#777} .pager{margin:.4em 0} .pager a{margin-right:1em} nav a{margin-right:1em}
.counts span{margin-right:1em} svg{vertical-align:middle}
"""


@dataclass
class PageData:
    """Everything one rendering of the page shows."""

    title: str
    source: str                                   # "lock server at ...", "history file ..."
    now: float
    runs_in_progress: list[tuple[dict[str, Any], dict[str, int], list[dict[str, Any]]]] = \
        field(default_factory=list)
    leases: list[dict[str, Any]] | None = None   # None: no lock server here
    failures: list[dict[str, Any]] = field(default_factory=list)
    failures_page: int = 0
    families: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    runs_page: int = 0
    audit: list[dict[str, Any]] | None = None    # None: not available to this viewer
    audit_note: str = ""
    audit_page: int = 0
    query: dict[str, str] = field(default_factory=dict)
    logout: bool = False                         # a "log out" button (cookie logins)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return dt.datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _css_class(status: str) -> str:
    return esc(str(status).replace(" ", "-"))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pager(data: PageData, name: str, page: int, shown: int) -> str:
    links = []
    if page > 0:
        links.append(f'<a href="?{esc(urlencode({**data.query, name: page - 1}))}">'
                     "&larr; newer</a>")
    if shown >= PAGE_SIZE:
        links.append(f'<a href="?{esc(urlencode({**data.query, name: page + 1}))}">'
                     "older &rarr;</a>")
    return f'<div class="pager">{"".join(links)}</div>' if links else ""


def _sparkline(values: list[float | None]) -> str:
    """Mean duration per day (oldest left) as a small inline SVG; gaps for empty days."""
    known = [v for v in values if v is not None]
    if not known:
        return '<span class="muted">no data</span>'
    top = max(known) or 1.0
    width, height, step = 88, 18, 84 / max(1, len(values) - 1)
    points = [(i * step + 2, height - 2 - (v / top) * (height - 4))
              for i, v in enumerate(values) if v is not None]
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8" fill="#0d47a1"/>'
                   for x, y in points)
    title = ", ".join(duration(v) if v is not None else "-" for v in values)
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{esc(title)}">'
            f"<title>{esc(title)}</title>"
            f'<polyline fill="none" stroke="#0d47a1" stroke-width="1.5" '
            f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>{dots}</svg>')


def _runs_in_progress(data: PageData) -> str:
    if not data.runs_in_progress:
        return '<p class="muted">no run in progress</p>'
    parts = []
    for run, counts, tasks in data.runs_in_progress:
        shown = " ".join(f'<span class="{_css_class(k)}">{esc(k)}: {v}</span>'
                         for k, v in sorted(counts.items()))
        parts.append(
            f'<h3 id="run-{esc(run["run_id"])}">run <code>{esc(run["run_id"])}</code> on '
            f'{esc(run["host"])} (user {esc(run["user"])}, pid {esc(run["pid"])}), started '
            f'{esc(when(run["started_ts"]))}, {esc(run["planned"])} task(s) planned</h3>'
            f'<p>requested: {", ".join(f"<code>{esc(t)}</code>" for t in run["requested"])}'
            f'</p><p class="counts">{shown}</p>'
            + _table(["task", "state", "attempt", "worker", "since", "reason / error"], (
                [f"<code>{esc(t['task_id'])}</code>",
                 f'<span class="{_css_class(t["status"])}">{esc(t["status"])}</span>',
                 esc(t["attempts"] or ""), esc(_worker(t, run)),
                 esc((t["finished"] or "")[11:19]), esc(t["error"] or t["reason"] or "")]
                for t in tasks), "no task has started yet"))
    return "".join(parts)


def _worker(task: dict[str, Any], run: dict[str, Any]) -> str:
    """Where the task's latest attempt ran, when not in the run's own process (a Dask
    worker's address); empty otherwise."""
    host = str(task.get("host") or "")
    return host if host and host != run["host"] else ""


def _leases(data: PageData) -> str:
    if data.leases is None:
        return '<p class="muted">no lock server here (machine-local locks)</p>'
    return _table(["task / resource", "holder", "held for", "expires in"], (
        [f"<code>{esc(lease['key'])}</code>", esc(lease["holder_text"]),
         esc(duration(lease["age"])), esc(duration(lease["expires_in"]))]
        for lease in data.leases), "no lease held")


def _failures(data: PageData) -> str:
    table = _table(["finished", "task", "error", "log", "run"], (
        [esc(f["finished"][:19].replace("T", " ") if f["finished"] else ""),
         f'<code class="failed">{esc(f["task_id"])}</code>',
         f'<span class="error">{esc(f["error"] or "")}</span>',
         f"<code>{esc(f['log'] or '')}</code>",
         f"<code>{esc(f['run_id'])}</code> on {esc(f['host'])}"]
        for f in data.failures), "no failure recorded")
    return table + _pager(data, "failures_page", data.failures_page, len(data.failures))


def _families(data: PageData) -> str:
    def rate(entry: dict[str, Any]) -> str:
        value = entry["success_rate"]
        if value is None:
            return ""
        css = "ok" if value >= 0.999 else "failed" if value < 0.9 else ""
        return f'<span class="{css}">{100 * value:.1f}%</span>'

    return _table(["family", "success rate", "built", "failed",
                   "mean duration per day (7 days)", "latest day"], (
        [f"<code>{esc(e['family'])}</code>", rate(e), esc(e["built"]), esc(e["failed"]),
         _sparkline(e["trend"]),
         esc(duration(next((v for v in reversed(e["trend"]) if v is not None), None)))]
        for e in data.families), "no task has run in the last 7 days")


def _runs(data: PageData) -> str:
    table = _table(["started", "run", "requested", "host", "user", "duration", "exit", "tasks"], (
        [esc(when(r["started_ts"])), f"<code>{esc(r['run_id'])}</code>",
         ", ".join(f"<code>{esc(t)}</code>" for t in r["requested"][:3])
         + (f" (+{len(r['requested']) - 3})" if len(r["requested"]) > 3 else ""),
         esc(r["host"]), esc(r["user"]),
         esc(duration(r["duration"])) if r["finished"] else (
             '<span class="running">running</span>' if r.get("alive") else
             '<span class="failed">no end recorded (killed?)</span>'),
         ('<span class="ok">0</span>' if r["exit_code"] == 0 else
          f'<span class="failed">{esc(r["exit_code"])}</span>' if r["exit_code"] is not None
          else ""),
         esc(", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items())))]
        for r in data.runs), "no run recorded")
    return table + _pager(data, "runs_page", data.runs_page, len(data.runs))


def _audit(data: PageData) -> str:
    if data.audit is None:
        return f'<p class="muted">{esc(data.audit_note)}</p>'
    table = _table(["when", "event", "task / resource", "holder", "client", "detail"], (
        [esc(when(a["at"])), f'<span class="{_css_class(a["event"])}">{esc(a["event"])}</span>',
         f"<code>{esc(a['key'])}</code>", esc(a["holder"]), esc(a["address"]),
         esc(a["detail"])]
        for a in data.audit), "the audit log is empty")
    return table + _pager(data, "audit_page", data.audit_page, len(data.audit))


def _logout(data: PageData) -> str:
    if not data.logout:
        return ""
    return ('<form method="post" action="/logout" style="display:inline">'
            '<button type="submit">Log out</button></form>')


def render(data: PageData) -> str:
    """The whole page."""
    sections = [
        ("in-progress", "Runs in progress", _runs_in_progress(data)),
        ("leases", "Leases and their holders", _leases(data)),
        ("failures", "Recent failures", _failures(data)),
        ("families", "Task families", _families(data)),
        ("runs", "Recent runs", _runs(data)),
        ("audit", "Audit log", _audit(data)),
    ]
    nav = "".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title, _ in sections)
    body = "".join(f'<section id="{anchor}"><h2>{esc(title)}</h2>{content}</section>'
                   for anchor, title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(data.title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(data.title)}</h1><p class=\"muted\">{esc(data.source)}; as of "
        f"{esc(when(data.now))}; refreshes every {REFRESH_SECONDS} s</p>"
        f"<nav>{nav}{_logout(data)}</nav>{body}</body></html>\n"
    )


def login_page(title: str, message: str = "", secure_hint: bool = False) -> str:
    """The form that trades a token for the page's login cookie."""
    note = f'<p class="failed" role="alert">{esc(message)}</p>' if message else ""
    hint = ('<p class="muted">This server is not behind TLS: the token crosses the network '
            "in the clear.</p>" if secure_hint else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}: log in</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>{note}"
        '<form method="post" action="/login"><label for="token">Lock server token '
        "(a reader token is enough)</label><br>"
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        'size="48" required autofocus> <button type="submit">Log in</button></form>'
        f"{hint}</body></html>\n"
    )
