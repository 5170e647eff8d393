"""Web-server access logs: parse each day, aggregate it, roll seven days into a report.

    RawAccessLog (external) -> ParseLog -> DailyStats -> WeeklyReport

Every task takes `root`, a folder or URL (`data`, `s3://bucket/weblogs`) under which all
files live; the requested task passes it down, so one config value moves the pipeline.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import Counter

import batchdeps as bd

# 203.0.113.9 - - [24/Nov/2026:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326
LINE = re.compile(
    r'(?P<ip>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r"(?P<status>\d{3}) (?P<size>\d+|-)"
)


class RawAccessLog(bd.ExternalTask):
    """One day of access log in Common Log Format, written by the web servers."""

    day = bd.DateParameter(description="the day the log covers")
    root = bd.Parameter(default="data", description="folder or URL holding all files")

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.root}/raw/{self.day}.log")


class ParseLog(bd.Task):
    """Parse one day's access log into CSV; lines that do not parse are counted, not fatal."""

    day = bd.DateParameter(description="the day to parse")
    root = bd.Parameter(default="data", description="folder or URL holding all files")
    retries = 2  # a flaky network file system gets two more chances

    def requires(self) -> bd.Task:
        return RawAccessLog(day=self.day, root=self.root)

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.root}/parsed/{self.day}.csv")

    def run(self) -> None:
        bad = 0
        with self.input().open("r") as src, self.output().open("w") as dst:
            writer = csv.writer(dst)
            writer.writerow(["time", "ip", "method", "path", "status", "bytes"])
            for line in src:
                match = LINE.match(line)
                if not match:
                    bad += 1
                    continue
                size = match["size"]
                writer.writerow([match["time"], match["ip"], match["method"], match["path"],
                                 match["status"], 0 if size == "-" else size])
        if bad:
            print(f"{self.task_id}: skipped {bad} malformed line(s)")


class DailyStats(bd.Task):
    """Requests, visitors, bytes, status classes and top pages of one day, as JSON."""

    day = bd.DateParameter(description="the day to aggregate")
    root = bd.Parameter(default="data", description="folder or URL holding all files")
    top = bd.IntParameter(default=5, description="how many top pages to keep")

    def requires(self) -> bd.Task:
        return ParseLog(day=self.day, root=self.root)

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.root}/daily/{self.day}.json")

    def run(self) -> None:
        requests = 0
        total_bytes = 0
        visitors: set[str] = set()
        statuses: Counter[str] = Counter()
        pages: Counter[str] = Counter()
        with self.input().open("r") as src:
            for row in csv.DictReader(src):
                requests += 1
                total_bytes += int(row["bytes"])
                visitors.add(row["ip"])
                statuses[row["status"][0] + "xx"] += 1
                if row["status"].startswith("2"):
                    pages[row["path"]] += 1
        stats = {
            "day": str(self.day),
            "requests": requests,
            "visitors": len(visitors),
            "bytes": total_bytes,
            "statuses": dict(sorted(statuses.items())),
            "top_pages": pages.most_common(self.top),
        }
        with self.output().open("w") as dst:
            json.dump(stats, dst, indent=2)


class WeeklyReport(bd.Task):
    """A Markdown report of the seven days ending on `week_end`."""

    week_end = bd.DateParameter(description="last day of the week (inclusive)")
    days = bd.IntParameter(default=7, description="how many days the report covers")
    root = bd.Parameter(default="data", description="folder or URL holding all files")

    def requires(self) -> list[bd.Task]:
        return [
            DailyStats(day=self.week_end - dt.timedelta(days=offset), root=self.root)
            for offset in reversed(range(self.days))
        ]

    def output(self) -> bd.Target:
        return bd.FileTarget(f"{self.root}/reports/weekly-{self.week_end}.md")

    def run(self) -> None:
        days = []
        for target in self.input():
            with target.open("r") as src:
                days.append(json.load(src))
        pages: Counter[str] = Counter()
        for day in days:
            pages.update(dict(day["top_pages"]))
        lines = [
            f"# Web traffic, {days[0]['day']} to {days[-1]['day']}",
            "",
            "| day | requests | visitors | MB | 4xx | 5xx |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for day in days:
            lines.append(
                f"| {day['day']} | {day['requests']} | {day['visitors']} | "
                f"{day['bytes'] / 1e6:.1f} | {day['statuses'].get('4xx', 0)} | "
                f"{day['statuses'].get('5xx', 0)} |"
            )
        total = sum(day["requests"] for day in days)
        lines += ["", f"Total requests: {total}", "", "Top pages:", ""]
        lines += [f"1. `{path}` ({count})" for path, count in pages.most_common(5)]
        with self.output().open("w") as dst:
            dst.write("\n".join(lines) + "\n")
