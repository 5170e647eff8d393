"""Benchmark: how fast a 2,000-target S3 DAG is found complete, batched vs one by one vs Luigi.

    python bench/s3_bench.py [--targets 2000] [--repeat 3]

Starts moto's S3 server on 127.0.0.1 (fake credentials), writes the objects, then times on
the same endpoint, side by side:

  batched    batchdeps' resolver over a WrapperTask of N tasks (prefix listings)
  one-by-one S3Target.exists() for each target in turn (one HEAD each)
  luigi      luigi.contrib.s3.S3Target.exists() for each target in turn

and prints the times and their ratios (best of --repeat runs). It also times the start-up of
`batchdeps --help` as it is and with s3fs/botocore imported first, to show what lazy imports
save.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from measure import child_env

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

LAUNCHER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""


def start_moto() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**child_env(), **CREDENTIALS})
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def best_of(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def startup_time(code: str, runs: int = 7) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    count = args.targets

    help_code = "import sys; from batchdeps.cli import main; sys.argv = ['batchdeps', '--help']; " \
                "main()"
    lazy = startup_time(help_code)
    eager = startup_time("import s3fs, botocore.session; " + help_code)

    server, endpoint = start_moto()
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        bucket = "bench"
        client.create_bucket(Bucket=bucket)
        keys = [f"dag/part-{i:05d}.csv" for i in range(count)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))

        import batchdeps as bd
        from batchdeps.targets import default_storage

        default_storage.configure({"s3": {"endpoint_url": endpoint}})

        class Part(bd.Task):
            i = bd.IntParameter()

            def output(self) -> bd.Target:
                return bd.FileTarget(f"s3://{bucket}/dag/part-{self.i:05d}.csv")

        class All(bd.WrapperTask):
            n = bd.IntParameter()

            def requires(self) -> list[bd.Task]:
                return [Part(i=i) for i in range(self.n)]

        targets = [bd.FileTarget(f"s3://{bucket}/{key}") for key in keys]
        targets[0].exists()  # warm up: session, connection pool

        batched, plan = best_of(max(5, args.repeat), lambda: bd.resolve([All(n=count)]))
        assert len(plan.steps) == 0, "the DAG should be complete"
        single, answers = best_of(args.repeat, lambda: [t.exists() for t in targets])
        assert all(answers)

        from luigi.contrib.s3 import S3Client, S3Target

        luigi_client = S3Client(endpoint_url=endpoint, region_name="us-east-1")
        luigi_targets = [S3Target(f"s3://{bucket}/{key}", client=luigi_client) for key in keys]
        luigi_targets[0].exists()
        luigi_time, luigi_answers = best_of(args.repeat,
                                            lambda: [t.exists() for t in luigi_targets])
        assert all(luigi_answers)
    finally:
        server.kill()
        server.wait()

    print(f"S3 completeness check of a {count}-target DAG (moto server on 127.0.0.1, "
          f"best of {args.repeat})")
    print(f"  batchdeps batched (resolver, prefix listings) {batched * 1000:9.1f} ms")
    print(f"  batchdeps one-by-one S3Target.exists()        {single * 1000:9.1f} ms")
    print(f"  luigi S3Target.exists() loop                  {luigi_time * 1000:9.1f} ms")
    print(f"  one-by-one / batched = {single / batched:6.1f}x")
    print(f"  luigi      / batched = {luigi_time / batched:6.1f}x")
    print(f"  luigi      / one-by-one = {luigi_time / single:6.2f}x")
    print("start-up of `batchdeps --help` (median of 7)")
    print(f"  as shipped (no s3fs/botocore import)  {lazy * 1000:7.1f} ms")
    print(f"  with s3fs and botocore imported       {eager * 1000:7.1f} ms")
    print(f"  saved by lazy imports                 {(eager - lazy) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
