"""S3 targets: honest existence checks, batched by prefix listing, and atomic uploads.

An `S3Target` is what `FileTarget("s3://bucket/key")` returns. Its choices:

* Existence is asked of S3 itself (HEAD, or an uncached ListObjectsV2), never of s3fs's
  listings cache, and only "404 Not Found" means missing. Access denied, bad or absent
  credentials and an unreachable endpoint raise `TargetCheckError` naming the URL.
* `exists_many` checks a whole level of targets at once: keys that share a prefix are
  found with one listing of that prefix (1,000 keys per page, strongly consistent on S3),
  small groups with concurrent HEADs; all requests run in one event loop, bounded by
  `CHECK_CONCURRENCY`.
* A write spools to a local file. The object is uploaded only when the write is committed
  (at close, or by the runner after a successful attempt) straight to its final key: one
  PUT, or a multipart upload above `PART_SIZE` that is aborted on any error, so no partial
  object and no temporary key ever exists on S3.
* Throttling, 5xx answers and broken connections are retried here with capped, jittered
  exponential backoff (`MAX_ATTEMPTS`), and every retry is logged; botocore's own retries
  are switched off by default so that there is one retry policy, not two stacked.

s3fs and botocore are imported only when an S3 target is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import random
import tempfile
import threading
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

from ..errors import TargetCheckError, TargetError
from .base import Storage, Target
from .fsspec import FsspecTarget
from .journal import OLD_SUFFIX
from .staging import TMP_DIR_NAME, _tmp_suffix

log = logging.getLogger("batchdeps.targets.s3")

T = TypeVar("T")

#: Uploads larger than this use multipart, in parts of this size (S3's minimum is 5 MiB).
PART_SIZE = 8 * 2**20
#: Parts of one upload sent at the same time.
UPLOAD_CONCURRENCY = 4
#: Requests in flight at once during a batched existence check.
CHECK_CONCURRENCY = 32
#: Groups of at least this many keys under one prefix are checked by listing the prefix.
LIST_MIN_KEYS = 4
#: Keys per listing page (S3 returns at most 1,000).
LIST_PAGE_SIZE = 1000
#: Wanted keys per listing slice; the slices of one prefix are listed concurrently.
LIST_CHUNK_KEYS = 1000
#: Attempts per request (the first included) on throttling, 5xx and connection errors.
MAX_ATTEMPTS = 5
RETRY_BASE_DELAY = 0.1
RETRY_MAX_DELAY = 5.0

#: Options batchdeps sets unless the config gives its own.
DEFAULT_CONFIG_KWARGS: dict[str, Any] = {
    "retries": {"mode": "standard", "total_max_attempts": 1},
    "connect_timeout": 5,
    "read_timeout": 60,
    # botocore's pool defaults to 10 connections, which would cap CHECK_CONCURRENCY at 10.
    "max_pool_connections": CHECK_CONCURRENCY,
}

_THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestLimitExceeded", "TooManyRequests", "TooManyRequestsException", "RequestTimeout",
    "RequestTimeoutException", "InternalError", "ServiceUnavailable", "503",
})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """Storage options with batchdeps' retry and timeout defaults filled in."""
    merged = dict(options)
    given = merged.get("config_kwargs") or {}
    if not isinstance(given, dict):
        raise TargetError(f"cannot use storage 's3': config_kwargs must be a table of botocore "
                          f"Config options, got {given!r}")
    config_kwargs = dict(DEFAULT_CONFIG_KWARGS)
    config_kwargs.update(given)
    merged["config_kwargs"] = config_kwargs
    # Storage keeps its own instances; fsspec's shared cache would hand a target another
    # Storage's session (and credentials).
    merged.setdefault("skip_instance_cache", True)
    return merged


# -- errors ----------------------------------------------------------------------------
def _status_and_code(exc: BaseException) -> tuple[int | None, str]:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(response.get("Error", {}).get("Code", ""))
    return status, code


def is_not_found(exc: BaseException) -> bool:
    status, code = _status_and_code(exc)
    return status == 404 or code in _NOT_FOUND_CODES


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx answer, a dropped or timed-out connection: worth another try."""
    from botocore import exceptions as bexc

    if isinstance(exc, bexc.ClientError):
        status, code = _status_and_code(exc)
        return (status is not None and (status >= 500 or status == 429)) or code in _THROTTLE_CODES
    transient = (
        bexc.ConnectionError,  # EndpointConnectionError, ConnectionClosedError, timeouts
        bexc.HTTPClientError,
        asyncio.TimeoutError,
        ConnectionError,
    )
    return isinstance(exc, transient)


def describe(exc: BaseException) -> str:
    """The cause of an S3 failure in words a user can act on."""
    from botocore import exceptions as bexc

    if isinstance(exc, bexc.NoCredentialsError):
        return ("no AWS credentials found (give key and secret in [storage.s3], set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure a profile or role)")
    if isinstance(exc, bexc.EndpointConnectionError):
        return f"cannot reach the S3 endpoint ({exc})"
    if isinstance(exc, bexc.ClientError):
        status, code = _status_and_code(exc)
        message = exc.response.get("Error", {}).get("Message") or ""
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "InvalidClientTokenId"):
            hint = "the credentials are wrong or expired"
        elif status == 403:
            hint = ("access denied: the credentials are wrong or lack permission for this "
                    "bucket (without s3:ListBucket, S3 answers 403 even for a missing key)")
        else:
            hint = ""
        name = f"HTTP {status}" if not code or code == str(status) else f"{code}, HTTP {status}"
        detail = f"{name}" + (f" {message}" if message else "")
        return f"{hint} ({detail})" if hint else detail
    return f"{type(exc).__name__}: {exc}"


# -- requests --------------------------------------------------------------------------
_s3fs_hooked = False


def _retry_s3fs_reads() -> None:
    """Make s3fs retry throttling and 5xx answers on reads, and log each retry.

    Reads go through s3fs, which retries only a few error types by itself; since botocore's
    own retries are switched off (see `DEFAULT_CONFIG_KWARGS`), a 503 on an input would
    otherwise fail the task at once. s3fs's hook is process-wide: a handler set before is
    kept and asked first.
    """
    global _s3fs_hooked
    if _s3fs_hooked:
        return
    import s3fs.core

    previous = s3fs.core.CUSTOM_ERROR_HANDLER

    def should_retry(exc: Exception) -> bool:
        if previous(exc):
            return True
        if is_transient(exc):
            log.warning("S3 read failed (%s); s3fs retries it", describe(exc))
            return True
        return False

    s3fs.core.set_custom_error_handler(should_retry)
    _s3fs_hooked = True


async def _call(fs: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One S3 API call, retried with backoff on transient errors."""
    await fs.set_session()
    client = await fs.get_s3(kwargs.get("Bucket"))
    attempt = 0
    while True:
        attempt += 1
        try:
            return await getattr(client, method)(**kwargs)
        except Exception as exc:
            if attempt >= MAX_ATTEMPTS or not is_transient(exc):
                raise
            delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
            delay = delay / 2 + random.random() * delay / 2
            log.warning("S3 %s of %s failed (%s); retry %d of %d in %.2f s", method, url,
                        describe(exc), attempt, MAX_ATTEMPTS - 1, delay)
            await asyncio.sleep(delay)


def _run(fs: Any, make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the filesystem's event loop and wait for it.

    If this thread is interrupted (Ctrl-C), the coroutine is cancelled and given a few
    seconds to clean up (an unfinished multipart upload is aborted), so an interrupt
    never leaves a half-made object behind.
    """
    finished = threading.Event()

    async def wrapper() -> T:
        try:
            return await make()
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(wrapper(), fs.loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        finished.wait(10.0)
        raise


async def _head(fs: Any, bucket: str, key: str, url: str) -> bool:
    try:
        await _call(fs, "head_object", url, Bucket=bucket, Key=key)
    except Exception as exc:
        if is_not_found(exc):
            return False
        raise TargetCheckError(f"cannot check {url}: {describe(exc)}") from exc
    return True


async def _list_group(fs: Any, bucket: str, prefix: str, keys: list[str],
                      urls: dict[str, str], limit: asyncio.Semaphore) -> dict[str, bool]:
    """Existence of `keys` (all directly under `prefix`) from a listing of their key range.

    The listing starts just before the smallest key and stops after the largest; if it
    would take many more pages than the keys justify, the rest are checked by HEAD.
    """
    wanted = sorted(set(keys))
    found: dict[str, bool] = {}
    # A page need hold little more than the wanted range when the prefix is dense with them.
    page_size = min(LIST_PAGE_SIZE, len(wanted) + 10)
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/",
                               "MaxKeys": page_size}
    budget = 2 + len(wanted) * 20 // LIST_PAGE_SIZE
    if len(wanted[0]) > len(prefix) + 1:
        request["StartAfter"] = wanted[0][:-1]
    position = 0
    pages = 0
    while True:
        pages += 1
        try:
            async with limit:
                page = await _call(fs, "list_objects_v2", urls[wanted[0]], **request)
        except Exception as exc:
            _, code = _status_and_code(exc)
            if code == "NoSuchBucket":
                return {key: False for key in wanted}
            if code == "AccessDenied":  # maybe no s3:ListBucket; HEAD may still be allowed
                log.debug("cannot list s3://%s/%s (%s); checking keys one by one",
                          bucket, prefix, code)
                break
            raise TargetCheckError(
                f"cannot check {urls[wanted[0]]}"
                + (f" and {len(wanted) - 1} more" if len(wanted) > 1 else "")
                + f": {describe(exc)}"
            ) from exc
        listed = {item["Key"] for item in page.get("Contents", ())}
        last = max(listed) if listed else None
        more = bool(page.get("IsTruncated"))
        while position < len(wanted) and (not more or (last is not None and wanted[position] <= last)):
            found[wanted[position]] = wanted[position] in listed
            position += 1
        if position >= len(wanted) or not more or pages >= budget:
            break
        request["ContinuationToken"] = page["NextContinuationToken"]
        request.pop("StartAfter", None)
    rest = wanted[position:]
    if rest:
        answers = await _head_all(fs, [(bucket, key, urls[key]) for key in rest], limit)
        found.update(zip(rest, answers))
    return found


async def _head_all(fs: Any, items: list[tuple[str, str, str]],
                    limit: asyncio.Semaphore) -> list[bool]:
    async def one(bucket: str, key: str, url: str) -> bool:
        async with limit:
            return await _head(fs, bucket, key, url)

    return list(await _gather_all([one(*item) for item in items]))


async def _gather_all(coros: list[Awaitable[T]]) -> list[T]:
    """Like gather, but on the first error the other requests are cancelled, not left running."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _exists_batch(fs: Any, items: list[tuple[str, str, str]]) -> list[bool]:
    """Existence of (bucket, key, url) items: listings for crowded prefixes, else HEADs."""
    limit = asyncio.Semaphore(CHECK_CONCURRENCY)
    groups: dict[tuple[str, str], list[str]] = {}
    urls: dict[tuple[str, str], str] = {}
    for bucket, key, url in items:
        prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        groups.setdefault((bucket, prefix), []).append(key)
        urls[(bucket, key)] = url
    jobs: list[Awaitable[dict[str, bool]]] = []
    labels: list[str] = []
    for (bucket, prefix), keys in groups.items():
        unique = sorted(set(keys))
        group_urls = {key: urls[(bucket, key)] for key in unique}
        if len(unique) >= LIST_MIN_KEYS:
            # Slices of the key range are listed concurrently, each from its first key.
            for start in range(0, len(unique), LIST_CHUNK_KEYS):
                chunk = unique[start:start + LIST_CHUNK_KEYS]
                labels.append(bucket)
                jobs.append(_list_group(fs, bucket, prefix, chunk,
                                        {k: group_urls[k] for k in chunk}, limit))
            continue
        labels.append(bucket)
        jobs.append(_heads_as_dict(fs, bucket, unique, group_urls, limit))
    answers: dict[tuple[str, str], bool] = {}
    for bucket, found in zip(labels, await _gather_all(jobs)):
        for key, ok in found.items():
            answers[(bucket, key)] = ok
    return [answers[(bucket, key)] for bucket, key, _ in items]


async def _heads_as_dict(fs: Any, bucket: str, keys: list[str], urls: dict[str, str],
                         limit: asyncio.Semaphore) -> dict[str, bool]:
    answers = await _head_all(fs, [(bucket, key, urls[key]) for key in keys], limit)
    return dict(zip(keys, answers))


async def _upload(fs: Any, local_path: str, bucket: str, key: str, url: str) -> None:
    """Upload a local file to its final key: one PUT, or a multipart upload that is
    completed only when every part arrived and aborted on any error or cancellation."""
    size = os.path.getsize(local_path)
    if size <= PART_SIZE:
        with open(local_path, "rb") as handle:  # noqa: ASYNC230 - local disk, one part at most
            body = handle.read()
        await _call(fs, "put_object", url, Bucket=bucket, Key=key, Body=body)
        return
    created = await _call(fs, "create_multipart_upload", url, Bucket=bucket, Key=key)
    upload_id = created["UploadId"]
    try:
        limit = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def part(number: int) -> dict[str, Any]:
            async with limit:
                with open(local_path, "rb") as handle:  # noqa: ASYNC230 - one part of local disk
                    handle.seek((number - 1) * PART_SIZE)
                    data = handle.read(PART_SIZE)
                answer = await _call(fs, "upload_part", url, Bucket=bucket, Key=key,
                                     UploadId=upload_id, PartNumber=number, Body=data)
                return {"PartNumber": number, "ETag": answer["ETag"]}

        count = math.ceil(size / PART_SIZE)
        parts = await _gather_all([part(n) for n in range(1, count + 1)])
        await _call(fs, "complete_multipart_upload", url, Bucket=bucket, Key=key,
                    UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            await asyncio.shield(_call(fs, "abort_multipart_upload", url, Bucket=bucket,
                                       Key=key, UploadId=upload_id))
        except BaseException as exc:  # noqa: BLE001 - the original error matters more
            log.warning("could not abort the multipart upload of %s (%s); "
                        "the next attempt aborts it", url, describe(exc))
        raise


async def _abort_stale_uploads(fs: Any, bucket: str, key: str, url: str) -> int:
    answer = await _call(fs, "list_multipart_uploads", url, Bucket=bucket, Prefix=key)
    stale = [u for u in answer.get("Uploads", ()) if u.get("Key") == key]
    for upload in stale:
        await _call(fs, "abort_multipart_upload", url, Bucket=bucket, Key=key,
                    UploadId=upload["UploadId"])
    return len(stale)


# -- local spool -----------------------------------------------------------------------
def spool_dir() -> str:
    """Where unfinished S3 writes wait on the local disk (`$BATCHDEPS_SPOOL_DIR` or tmp)."""
    return os.environ.get("BATCHDEPS_SPOOL_DIR") or os.path.join(
        tempfile.gettempdir(), f"batchdeps-spool-{os.getuid()}"
    )


def _spool_prefix(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:20] + "."


# -- the target ------------------------------------------------------------------------
class S3Target(FsspecTarget):
    """An object `s3://bucket/key`; see the module docstring for the guarantees."""

    def __init__(self, url: str, *, storage: Storage | None = None, **storage_options: Any) -> None:
        super().__init__(url, storage=storage, **storage_options)
        self.bucket, _, self.key = self.path.partition("/")
        if not self.bucket or not self.key or self.key.endswith("/"):
            raise TargetError(f"{url} is not an S3 object URL: use s3://bucket/key")

    @property
    def fs(self) -> Any:
        merged = {**self._storage.options.get("s3", {}), **self._options}
        fs = self._storage.filesystem("s3", s3_options(merged))
        _retry_s3fs_reads()
        return fs

    def _filesystem_for_check(self) -> Any:
        try:
            return self.fs
        except TargetError as exc:
            raise TargetCheckError(f"cannot check {self.url}: {exc}") from exc

    def _exists(self) -> bool:
        """One HEAD request: True, False on 404, TargetCheckError on anything else."""
        fs = self._filesystem_for_check()
        return _run(fs, lambda: _head(fs, self.bucket, self.key, self.url))

    @classmethod
    def _exists_many(cls, targets: list[Target]) -> list[bool]:
        """Existence of many S3 targets with few round trips (see `_exists_batch`)."""
        result = [False] * len(targets)
        by_fs: dict[int, tuple[Any, list[int]]] = {}
        for index, target in enumerate(targets):
            assert isinstance(target, S3Target)
            fs = target._filesystem_for_check()
            by_fs.setdefault(id(fs), (fs, []))[1].append(index)
        for fs, indices in by_fs.values():
            items = [(t.bucket, t.key, t.url) for t in (targets[i] for i in indices)]  # type: ignore[attr-defined]
            answers = _run(fs, lambda: _exists_batch(fs, items))  # noqa: B023 - awaited here
            for index, answer in zip(indices, answers):
                result[index] = answer
        return result

    def _open_final(self, mode: str) -> IO[Any]:
        fs = self.fs
        try:
            fs.invalidate_cache(self.path)
            return fs.open(self.path, mode)  # type: ignore[no-any-return]
        except FileNotFoundError as exc:
            raise TargetError(f"cannot read {self.url}: not found") from exc
        except Exception as exc:
            cause = describe(exc.__cause__ or exc) if exc.__cause__ else describe(exc)
            raise TargetError(f"cannot read {self.url}: {cause}") from exc

    def _open_staged(self, tmp_path: str, mode: str) -> IO[Any]:
        return open(tmp_path, mode)  # the local spool file

    def _open_tmp(self, mode: str) -> tuple[IO[Any], str]:
        directory = spool_dir()
        os.makedirs(directory, mode=0o700, exist_ok=True)
        spool = os.path.join(directory, _spool_prefix(self.url) + _tmp_suffix())
        return open(spool, mode), spool

    def commit_tmp(self, tmp_path: str) -> None:
        """Upload the spooled file to the final key; the spool is removed either way."""
        try:
            fs = self.fs
            _run(fs, lambda: _upload(fs, tmp_path, self.bucket, self.key, self.url))
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(f"cannot upload {self.url}: {describe(exc)}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)

    def discard_tmp(self, tmp_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)

    def keep_previous(self, tmp_path: str, hide: bool) -> str | None:
        """Copy the object this write replaces to a key under `.batchdeps-tmp/` (and delete
        it when `hide`); None if there is none. An object S3 cannot copy in one request
        (over 5 GB) is not kept: "" is returned and a failed commit cannot restore it."""
        parent, _, base = self.key.rpartition("/")
        backup = f"{parent + '/' if parent else ''}{TMP_DIR_NAME}/{base}.{_tmp_suffix()}{OLD_SUFFIX}"

        async def keep(fs: Any) -> str | None:
            try:
                await _call(fs, "copy_object", self.url, Bucket=self.bucket, Key=backup,
                            CopySource={"Bucket": self.bucket, "Key": self.key})
            except Exception as exc:
                _, code = _status_and_code(exc)
                if code in ("NoSuchKey", "404"):
                    return None
                if code in ("InvalidRequest", "EntityTooLarge"):
                    log.warning("%s is too large to keep a copy of while it is replaced (%s)",
                                self.url, describe(exc))
                    return ""
                raise
            if hide:
                await _call(fs, "delete_object", self.url, Bucket=self.bucket, Key=self.key)
            return backup

        return self._request("keep the object it replaces", keep)  # type: ignore[no-any-return]

    def undo_commit(self, backup: str | None) -> None:
        async def undo(fs: Any) -> None:
            if backup:
                await _call(fs, "copy_object", self.url, Bucket=self.bucket, Key=self.key,
                            CopySource={"Bucket": self.bucket, "Key": backup})
                await _call(fs, "delete_object", self.url, Bucket=self.bucket, Key=backup)
            elif backup is None:
                await _call(fs, "delete_object", self.url, Bucket=self.bucket, Key=self.key)
            else:
                log.warning("%s: the object it replaced could not be kept, so it cannot be "
                            "restored", self.url)

        self._request("undo the upload", undo)

    def drop_backup(self, backup: str) -> None:
        if backup:
            self._request("remove the kept copy", lambda fs: _call(
                fs, "delete_object", self.url, Bucket=self.bucket, Key=backup))

    def _request(self, what: str, make: Callable[[Any], Awaitable[T]]) -> T:
        try:
            fs = self.fs
            return _run(fs, lambda: make(fs))
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(f"cannot commit {self.url}: cannot {what}: {describe(exc)}") from exc

    def cleanup_stale(self, fresh: bool = False, listings: dict[str, Any] | None = None) -> None:
        """Drop spool files of crashed writers and abort their unfinished uploads."""
        prefix = _spool_prefix(self.url)
        directory = spool_dir()
        with contextlib.suppress(OSError):
            for entry in os.listdir(directory):
                if entry.startswith(prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, entry))
        try:
            fs = self.fs
            aborted = _run(fs, lambda: _abort_stale_uploads(fs, self.bucket, self.key, self.url))
        except Exception as exc:  # noqa: BLE001 - the write itself will report the problem
            log.warning("could not look for unfinished uploads of %s: %s", self.url, describe(exc))
            return
        if aborted:
            log.info("aborted %d unfinished multipart upload(s) of %s", aborted, self.url)
