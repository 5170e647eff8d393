"""Test helpers for S3: a real moto server process on 127.0.0.1, buckets, and a fault proxy.

Import the fixtures into a test module (`from s3util import moto_endpoint, s3_env, bucket`).
The moto server is a subprocess bound to a free port; its credentials are fake.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.relay import copy_until_eof

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

_LAUNCHER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # run until the test process closes our stdin or kills us
"""


class MotoServer:
    """A moto server subprocess; `endpoint` is its http://127.0.0.1:PORT URL."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **FAKE_CREDENTIALS, **(extra_env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"moto server did not start: {line!r}")
        self.port = int(line)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def boto_client(endpoint: str, **credentials: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=credentials.get("key", "testing"),
        aws_secret_access_key=credentials.get("secret", "testing"),
    )


def new_bucket(endpoint: str) -> str:
    name = f"bd-{uuid.uuid4().hex[:12]}"
    boto_client(endpoint).create_bucket(Bucket=name)
    return name


def keys_under(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    client = boto_client(endpoint)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", ()))
    return keys


def multipart_uploads(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    return list(boto_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def count_requests(monkeypatch: pytest.MonkeyPatch,
                   keep: Callable[[str, dict[str, Any]], str | None] | None = None) -> list[str]:
    """Record every S3 request batchdeps makes (they still reach S3): its API method, or
    what `keep(method, kwargs)` makes of it (None: not recorded)."""
    from batchdeps.targets import s3

    seen: list[str] = []
    real_call = s3._call

    async def counting(fs: Any, method: str, url: str, **kwargs: Any) -> Any:
        entry = method if keep is None else keep(method, kwargs)
        if entry is not None:
            seen.append(entry)
        return await real_call(fs, method, url, **kwargs)

    monkeypatch.setattr(s3, "_call", counting)
    return seen


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: MotoServer) -> str:
    return moto_server.endpoint


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> dict[str, str]:
    """Fake credentials in this process's environment; returns them with S3_ENDPOINT."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("S3_ENDPOINT", moto_endpoint)
    return {**FAKE_CREDENTIALS, "S3_ENDPOINT": moto_endpoint}


@pytest.fixture
def bucket(s3_env: dict[str, str], moto_endpoint: str) -> str:
    return new_bucket(moto_endpoint)


@pytest.fixture
def s3_storage(s3_env: dict[str, str], moto_endpoint: str) -> Any:
    from batchdeps.targets import Storage

    return Storage({"s3": {"endpoint_url": moto_endpoint}})


# -- faults ------------------------------------------------------------------------------
class FaultProxy:
    """A TCP proxy to the moto server that spoils the first connections it accepts.

    Each accepted connection takes the next fault from `faults` ("503", "slowdown",
    "reset"), then connections are passed through. `served` counts spoiled connections.
    """

    def __init__(self, upstream_port: int, faults: list[str]) -> None:
        self.upstream_port = upstream_port
        self.faults = list(faults)
        self.served = 0
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                fault = self.faults.pop(0) if self.faults else None
                if fault:
                    self.served += 1
            threading.Thread(target=self._serve, args=(conn, fault), daemon=True).start()

    def _serve(self, conn: socket.socket, fault: str | None) -> None:
        if fault is None:
            self._pipe(conn)
            return
        method = _read_request(conn)
        if fault == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
            return
        code, status = ("SlowDown", "503 Slow Down") if fault == "slowdown" else (
            "ServiceUnavailable", "503 Service Unavailable")
        body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                f"<Message>injected {fault}</Message></Error>").encode()
        if method == "HEAD":  # an answer to HEAD has no body, so S3 sends only the status
            body = b""
        head = (f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            conn.sendall(head + body)
        finally:
            conn.close()

    def _pipe(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))

        def copy(src: socket.socket, dst: socket.socket) -> None:
            try:
                copy_until_eof(src, dst)
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=copy, args=(upstream, conn), daemon=True).start()
        copy(conn, upstream)

    def stop(self) -> None:
        self._stopped = True
        self.listener.close()


def _read_request(conn: socket.socket) -> str:
    """Read one HTTP request (headers, and a body unless the client waits for 100-continue)
    so that the client is not cut off while sending; returns its method."""
    conn.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return ""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method = lines[0].split(b" ")[0].decode()
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"expect":
                return method
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return method
    except OSError:
        return ""
