"""Benchmark cases that need a server: the lock server against luigid, S3 on moto's server.

Each server runs on 127.0.0.1 on a port picked at run time and is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from measure import Sample, Series

LOCK_TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"no server came up on 127.0.0.1:{port}")


def start_lock_server(bench: Any) -> tuple[subprocess.Popen[str], str]:
    """`batchdeps lock-server` with its default settings, on a free port."""
    executable = shutil.which("batchdeps", path=os.path.dirname(sys.executable)) or "batchdeps"
    process = subprocess.Popen(
        [executable, "lock-server", "--port", "0", "--db", str(bench.workspace / "locks.db")],
        env={**bench.env, "BATCHDEPS_LOCK_TOKEN": LOCK_TOKEN}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"lock server did not start: {line!r}")
    return process, line.split()[2]


def start_luigid(bench: Any) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    (bench.workspace / "luigid").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "luigid"), "--address", "127.0.0.1", "--port",
         str(port), "--logdir", str(bench.workspace / "luigid"),
         "--state-path", str(bench.workspace / "luigid" / "state.pickle")],
        env=bench.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
    except BaseException:
        _stop(process)
        raise
    return process, port


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _lock_runners(bench: Any, size: int, url: str,
                  luigid_port: int | None) -> dict[str, Any]:
    """One fresh tree build each call: through the lock server, local locks, luigid."""

    def one(make: Any, env: dict[str, str] | None = None) -> Sample:
        root = bench.fresh("locked")
        saved = bench.env
        if env:
            bench.env = {**saved, **env}
        try:
            sample = bench.run(make(root))
        finally:
            bench.env = saved
        made = sum(1 for entry in os.scandir(root / "tree") if entry.is_file())
        if sample.code == 0 and made != size:
            raise SystemExit(f"lock-server build of {size} made the wrong files")
        shutil.rmtree(root, ignore_errors=True)
        return sample

    def args(root: Path) -> list[str]:
        return ["--size", str(size), "--root", str(root)]

    server_env = {"BATCHDEPS_LOCK_TOKEN": LOCK_TOKEN}
    return {
        "server": lambda: one(lambda r: bench.batchdeps(
            "TreeNode", *args(r), "--lock-url", url), server_env),
        "local": lambda: one(lambda r: bench.batchdeps("TreeNode", *args(r))),
        "luigi": lambda: one(lambda r: bench.luigi(
            "TreeNode", *args(r), "--scheduler-host", "127.0.0.1",
            "--scheduler-port", str(luigid_port), local=False)),
    }


def case_locks(bench: Any, row_type: Any, interleave: Any, sizes: list[int],
               luigi_size: int) -> list[Any]:
    """A tree build through the lock server, beside the same build with local locks,
    and Luigi through luigid."""
    rows = []
    server, url = start_lock_server(bench)
    luigid = luigid_port = None
    try:
        if not bench.args.no_luigi:
            luigid, luigid_port = start_luigid(bench)
        for size in sizes:
            with_luigi = luigid is not None and size <= luigi_size
            reps = bench.args.reps if size <= 10_000 else 1
            series = interleave(
                {"server": reps, "local": reps, "luigi": reps if with_luigi else 0},
                _lock_runners(bench, size, url, luigid_port),
            )
            server_s, local_s = series["server"], series["local"]
            row = row_type("locks", f"build all, tree of {size:,}, lock server / luigid",
                           server_s, series["luigi"] if with_luigi else None)
            if server_s.median and local_s.median:
                factor = server_s.median / local_s.median
                row.extra["local_locks_s"] = local_s.median
                row.note = (f"the same build with machine-local locks: {local_s.median:.3f} s "
                            f"(lock server: {factor:.2f}x that)")
                if size == 10_000:
                    row.goal = f"<= 2x local locks (is {factor:.2f}x)"
                    row.met = factor <= 2
            if not with_luigi and luigid is not None:
                row.note += f"; Luigi through luigid measured at {luigi_size:,} only"
            rows.append(row)
    finally:
        _stop(server)
        if luigid is not None:
            _stop(luigid)
    return rows


def case_s3(bench: Any, row_type: Any, interleave: Any, count: int) -> list[Any]:
    """Nothing to do over `count` S3 objects on moto's server: the completeness check."""
    import s3_bench

    moto, endpoint = s3_bench.start_moto()
    try:
        from concurrent.futures import ThreadPoolExecutor

        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_bucket(Bucket="bench")
        keys = [f"dag/part-{i:05d}.csv" for i in range(count)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda key: client.put_object(Bucket="bench", Key=key, Body=b"x"),
                          keys))
        config = bench.workspace / "s3-config.toml"
        config.write_text('[batchdeps]\nmodules = ["bd_dags"]\n\n'
                          '[storage.s3]\nendpoint_url = "${S3_ENDPOINT}"\n')
        env = {**s3_bench.CREDENTIALS, "S3_ENDPOINT": endpoint}
        args = ["--size", str(count), "--prefix", "s3://bench/dag"]

        def one(argv: list[str]) -> Sample:
            saved = bench.env
            bench.env = {**saved, **env}
            try:
                return bench.run(argv)
            finally:
                bench.env = saved

        reps = bench.args.reps
        series = interleave(
            {"batchdeps": reps, "luigi": 0 if bench.args.no_luigi else reps},
            {
                "batchdeps": lambda: one(bench.batchdeps("AllS3Parts", *args,
                                                         "--config", str(config))),
                "luigi": lambda: one(bench.luigi("AllS3Parts", *args)),
            },
        )
    finally:
        moto.kill()
        moto.wait()
    return [row_type("s3", f"S3: nothing to do over {count:,} objects (moto server)",
                     series["batchdeps"], None if bench.args.no_luigi else series["luigi"])]


__all__ = ["Series", "case_locks", "case_s3"]
