"""Write sample access logs so the example pipeline runs offline.

    python -m pipelines.sample_data --root data --end 2026-11-22 --days 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import random

import batchdeps as bd

PATHS = ["/", "/index.html", "/pricing", "/docs", "/docs/install", "/blog", "/login",
         "/api/v1/items", "/static/app.js", "/static/style.css"]
METHODS = ["GET"] * 9 + ["POST"]
STATUSES = [200] * 40 + [304] * 4 + [404] * 3 + [500, 503]


def write_day(root: str, day: dt.date, lines: int) -> str:
    """Write one day's log (deterministic for a given day) and return its URL."""
    rng = random.Random(day.toordinal())
    target = bd.FileTarget(f"{root}/raw/{day}.log")
    with target.open("w") as out:
        for _ in range(lines):
            moment = dt.datetime.combine(day, dt.time()) + dt.timedelta(
                seconds=rng.randrange(86400))
            ip = f"198.51.100.{rng.randrange(1, 255)}"
            status = rng.choice(STATUSES)
            size = "-" if status == 304 else str(rng.randrange(200, 60000))
            out.write(
                f'{ip} - - [{moment:%d/%b/%Y:%H:%M:%S} +0000] '
                f'"{rng.choice(METHODS)} {rng.choice(PATHS)} HTTP/1.1" {status} {size}\n'
            )
        out.write("this line is garbage and is skipped by the parser\n")
    return target.url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data", help="folder or URL for the files")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 11, 22),
                        help="last day to write (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=7, help="how many days to write")
    parser.add_argument("--lines", type=int, default=2000, help="log lines per day")
    parser.add_argument("--config", default=None,
                        help="config file whose [storage.*] options apply (default: as batchdeps)")
    args = parser.parse_args(argv)
    if "://" in args.root:  # storage options (endpoint, credentials) come from the config
        from batchdeps.targets import default_storage

        default_storage.configure(bd.load_config(args.config).storage)
    for offset in range(args.days):
        print(write_day(args.root, args.end - dt.timedelta(days=offset), args.lines))


if __name__ == "__main__":
    main()
