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
  object and no temporary key ever exists on S3. The one exception: an attempt that ran on
  another machine (a Dask worker) hands its write over as a staging object
  `<folder>/.batchdeps-tmp/<name>.<writer>`, which the runner copies to the final key when
  it commits (one server-side copy: the final object appears whole) and then deletes;
  staging objects that an attempt or a runner which died left are deleted before the
  task's next attempt.
* Throttling, 5xx answers and broken connections are retried by botocore's own retry modes
  ("standard" with `MAX_ATTEMPTS` attempts unless the user's `AWS_RETRY_MODE`,
  `AWS_MAX_ATTEMPTS`, AWS profile or `retries` in `config_kwargs` say otherwise). What
  botocore does not do is done here: each retry is logged as a warning with its cause.

s3fs and botocore are imported only when an S3 target is used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import math
import os
import re
import stat
import tempfile
import threading
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

from .. import logs
from ..errors import TargetCheckError, TargetError
from .base import Storage, Target
from .formats import Format
from .fsspec import FsspecTarget
from .journal import OLD_SUFFIX, remove_path
from .staging import TMP_DIR_NAME, _tmp_suffix

log = logs.get("batchdeps.targets.s3")

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
#: Attempts per request (the first included) when neither config nor environment say.
MAX_ATTEMPTS = 5
#: botocore's retry mode when neither config nor environment say.
RETRY_MODE = "standard"

#: Options batchdeps sets unless the config gives its own (retries: see `s3_options`).
DEFAULT_CONFIG_KWARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 60,
    # botocore's pool defaults to 10 connections, which would cap CHECK_CONCURRENCY at 10.
    "max_pool_connections": CHECK_CONCURRENCY,
}

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """Storage options with batchdeps' retry and timeout defaults filled in."""
    merged = dict(options)
    given = merged.get("config_kwargs") or {}
    if not isinstance(given, dict):
        raise TargetError(f"cannot use storage 's3': config_kwargs must be a table of botocore "
                          f"Config options, got {given!r}")
    config_kwargs = dict(DEFAULT_CONFIG_KWARGS)
    config_kwargs.update(given)
    retries = config_kwargs.get("retries") or {}
    if not isinstance(retries, dict):
        raise TargetError(f"cannot use storage 's3': config_kwargs.retries must be a table "
                          f"(mode, max_attempts or total_max_attempts), got {retries!r}")
    retries = dict(retries)
    profile = merged.get("profile")
    # Only what nobody set: botocore then reads AWS_RETRY_MODE / AWS_MAX_ATTEMPTS and the
    # AWS profile itself, as for any other AWS tool.
    if "mode" not in retries and _aws_setting("retry_mode", profile) is None:
        retries["mode"] = RETRY_MODE
    if not {"max_attempts", "total_max_attempts"} & retries.keys() \
            and _aws_setting("max_attempts", profile) is None:
        retries["total_max_attempts"] = MAX_ATTEMPTS
    if retries:
        config_kwargs["retries"] = retries
    merged["config_kwargs"] = config_kwargs
    # Storage keeps its own instances; fsspec's shared cache would hand a target another
    # Storage's session (and credentials).
    merged.setdefault("skip_instance_cache", True)
    return merged


def _aws_setting(name: str, profile: str | None) -> Any:
    """An AWS client setting from the environment or the AWS config file (None: unset)."""
    variable = {"retry_mode": "AWS_RETRY_MODE", "max_attempts": "AWS_MAX_ATTEMPTS"}[name]
    if os.environ.get(variable):
        return os.environ[variable]
    return _aws_file_setting(name, profile or os.environ.get("AWS_PROFILE"),
                             os.environ.get("AWS_CONFIG_FILE"))


@functools.lru_cache(maxsize=16)
def _aws_file_setting(name: str, profile: str | None, config_file: str | None) -> Any:
    import botocore.session

    try:
        # The profile's own settings only (get_config_variable would give botocore's default).
        return botocore.session.Session(profile=profile).get_scoped_config().get(name)
    except Exception:  # noqa: BLE001 - a broken profile is reported when the client is made
        return None


# -- errors ----------------------------------------------------------------------------
def _status_and_code(exc: BaseException) -> tuple[int | None, str]:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(response.get("Error", {}).get("Code", ""))
    return status, code


def is_not_found(exc: BaseException) -> bool:
    """A 404 for a key. A missing bucket is not "not found": it is a mistake to report."""
    status, code = _status_and_code(exc)
    return code != "NoSuchBucket" and (status == 404 or code in _NOT_FOUND_CODES)


def no_such_bucket(bucket: str, url: str, exc: BaseException | None = None) -> TargetCheckError:
    """The error for a bucket that does not exist (or an endpoint that is not S3)."""
    detail = f" ({describe(exc)})" if exc is not None else ""
    return TargetCheckError(
        f"cannot check {url}: bucket '{bucket}' does not exist{detail}; check the bucket "
        f"name and the endpoint (a 404 for the bucket itself also comes from an endpoint "
        f"that is not S3)")


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
        elif code == "NoSuchBucket":
            bucket = exc.response.get("Error", {}).get("BucketName")
            hint = f"bucket '{bucket}' does not exist" if bucket else "the bucket does not exist"
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
async def _client(fs: Any, bucket: str | None) -> Any:
    """The botocore client for `bucket`, with batchdeps' retry logging registered on it."""
    await fs.set_session()
    client = await fs.get_s3(bucket)
    if not getattr(client, "_batchdeps_logs_retries", False):
        events = client.meta.events
        events.register_first("needs-retry.s3", _note_failure)
        events.register("request-created.s3", _log_retry)
        client._batchdeps_logs_retries = True
    return client


def _note_failure(request_dict: dict[str, Any] | None = None, response: Any = None,
                  caught_exception: BaseException | None = None, **kwargs: Any) -> None:
    """needs-retry: keep the cause of a failed attempt, for the warning if it is retried."""
    if request_dict is None:
        return
    if caught_exception is not None:
        cause = describe(caught_exception)
    elif response is not None:
        http, parsed = response
        status = getattr(http, "status_code", 0)
        if status < 400:
            return
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        code, message = str(error.get("Code", "")), error.get("Message") or ""
        cause = (f"HTTP {status}" if not code or code == str(status)
                 else f"{code}, HTTP {status}") + (f" {message}" if message else "")
    else:
        return
    request_dict.setdefault("context", {})["batchdeps_failure"] = cause


def _log_retry(request: Any = None, operation_name: str = "", **kwargs: Any) -> None:
    """request-created: a request made again is a retry botocore decided on; say so."""
    context = getattr(request, "context", None) or {}
    attempt = context.get("retries", {}).get("attempt", 1)
    if attempt > 1:
        log.warning("S3 %s of %s failed (%s); botocore retries it (retry %d)",
                    operation_name, getattr(request, "url", "?").split("?")[0],
                    context.get("batchdeps_failure", "no answer"), attempt - 1)


async def _call(fs: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One S3 API call (botocore retries transient errors as configured)."""
    client = await _client(fs, kwargs.get("Bucket"))
    return await getattr(client, method)(**kwargs)


def _run(fs: Any, make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the filesystem's event loop and wait for it.

    If this thread is interrupted (Ctrl-C), the coroutine is cancelled and waited for while
    it cleans up (an unfinished multipart upload is aborted; up to `CLEANUP_WAIT` seconds,
    or until a second interrupt), so an interrupt never leaves a half-made object behind:
    the I/O thread is a daemon, and a process that exits first would cut the abort short.
    """
    finished = threading.Event()

    async def wrapper() -> T:
        try:
            return await make()
        finally:
            finished.set()

    future: concurrent.futures.Future[T] | None = None
    try:
        future = asyncio.run_coroutine_threadsafe(wrapper(), fs.loop)
        return future.result()
    except BaseException:
        if future is not None and not future.done():
            future.cancel()
            finished.wait(CLEANUP_WAIT)
        raise


#: Seconds an interrupted request is given to clean up (abort its multipart upload).
CLEANUP_WAIT = 60.0


async def _head(fs: Any, bucket: str, key: str, url: str) -> bool:
    return await _head_info(fs, bucket, key, url) is not None


async def _head_info(fs: Any, bucket: str, key: str, url: str) -> dict[str, Any] | None:
    """The HEAD answer for a key (ETag, LastModified, ContentLength), None on 404."""
    try:
        answer = await _call(fs, "head_object", url, Bucket=bucket, Key=key)
    except Exception as exc:
        if _status_and_code(exc)[1] == "NoSuchBucket":
            raise no_such_bucket(bucket, url, exc) from exc
        if is_not_found(exc):
            # A HEAD answer has no body: a missing bucket looks like a missing key.
            await _require_bucket(fs, bucket, url)
            return None
        raise TargetCheckError(f"cannot check {url}: {describe(exc)}") from exc
    return {"ETag": answer.get("ETag"), "LastModified": answer.get("LastModified"),
            "Size": answer.get("ContentLength")}


async def _require_bucket(fs: Any, bucket: str, url: str) -> None:
    """Raise unless `bucket` exists; asked once per bucket and filesystem (HEAD bucket)."""
    checks: dict[str, asyncio.Future[None]] = fs.__dict__.setdefault("_batchdeps_buckets", {})
    check = checks.get(bucket)
    if check is None:
        check = checks[bucket] = asyncio.ensure_future(_head_bucket(fs, bucket, url))
    try:
        await asyncio.shield(check)
    except TargetCheckError:
        checks.pop(bucket, None)  # asked again next time: the bucket may be made meanwhile
        raise


async def _head_bucket(fs: Any, bucket: str, url: str) -> None:
    try:
        await _call(fs, "head_bucket", url, Bucket=bucket)
    except Exception as exc:
        status, code = _status_and_code(exc)
        if status == 404 or code in ("NoSuchBucket", "404", "NotFound"):
            raise no_such_bucket(bucket, url) from exc
        if status == 403:
            return  # exists, but HEAD of the bucket is not allowed: the key's 404 stands
        raise TargetCheckError(f"cannot check {url}: {describe(exc)}") from exc


async def _list_group(fs: Any, bucket: str, prefix: str, keys: list[str],
                      urls: dict[str, str],
                      limit: asyncio.Semaphore) -> dict[str, dict[str, Any] | None]:
    """The listing entry (None: absent) of `keys` (all directly under `prefix`) from a listing of their key range.

    The listing starts just before the smallest key and stops after the largest; if it
    would take many more pages than the keys justify, the rest are checked by HEAD.
    """
    wanted = sorted(set(keys))
    found: dict[str, dict[str, Any] | None] = {}
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
            status, code = _status_and_code(exc)
            if code == "NoSuchBucket" or status == 404:  # a listing 404s only for the bucket
                raise no_such_bucket(bucket, urls[wanted[0]], exc) from exc
            if code == "AccessDenied":  # maybe no s3:ListBucket; HEAD may still be allowed
                log.debug("cannot list s3://%s/%s (%s); checking keys one by one",
                          bucket, prefix, code)
                break
            raise TargetCheckError(
                f"cannot check {urls[wanted[0]]}"
                + (f" and {len(wanted) - 1} more" if len(wanted) > 1 else "")
                + f": {describe(exc)}"
            ) from exc
        listed = {item["Key"]: item for item in page.get("Contents", ())}
        last = max(listed) if listed else None
        more = bool(page.get("IsTruncated"))
        while position < len(wanted) and (not more or (last is not None and wanted[position] <= last)):
            found[wanted[position]] = listed.get(wanted[position])
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
                    limit: asyncio.Semaphore) -> list[dict[str, Any] | None]:
    async def one(bucket: str, key: str, url: str) -> dict[str, Any] | None:
        async with limit:
            return await _head_info(fs, bucket, key, url)

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
    return [info is not None for info in await _stat_batch(fs, items)]


async def _stat_batch(fs: Any,
                      items: list[tuple[str, str, str]]) -> list[dict[str, Any] | None]:
    """ETag, LastModified and Size (None: absent) of (bucket, key, url) items, found as
    existence is: listings for crowded prefixes, else HEADs."""
    limit = asyncio.Semaphore(CHECK_CONCURRENCY)
    groups: dict[tuple[str, str], list[str]] = {}
    urls: dict[tuple[str, str], str] = {}
    for bucket, key, url in items:
        prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        groups.setdefault((bucket, prefix), []).append(key)
        urls[(bucket, key)] = url
    jobs: list[Awaitable[dict[str, dict[str, Any] | None]]] = []
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
    answers: dict[tuple[str, str], dict[str, Any] | None] = {}
    for bucket, found in zip(labels, await _gather_all(jobs)):
        for key, ok in found.items():
            answers[(bucket, key)] = ok
    return [answers[(bucket, key)] for bucket, key, _ in items]


async def _heads_as_dict(fs: Any, bucket: str, keys: list[str], urls: dict[str, str],
                         limit: asyncio.Semaphore) -> dict[str, dict[str, Any] | None]:
    answers = await _head_all(fs, [(bucket, key, urls[key]) for key in keys], limit)
    return dict(zip(keys, answers))


def _identity(info: dict[str, Any]) -> dict[str, Any]:
    modified = info.get("LastModified")
    return {"etag": info.get("ETag"),
            "last_modified": int(modified.timestamp()) if modified is not None else None,
            "size": info.get("Size")}


async def _get_batch(fs: Any, items: list[tuple[str, str, str]],
                     ) -> list[tuple[bytes, str | None] | None]:
    """Each object's content and the ETag it came with (None: not there)."""
    limit = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def one(bucket: str, key: str, url: str) -> tuple[bytes, str | None] | None:
        async with limit:
            try:
                answer = await _call(fs, "get_object", url, Bucket=bucket, Key=key)
                try:
                    return await answer["Body"].read(), answer.get("ETag")
                finally:
                    answer["Body"].close()
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise TargetCheckError(f"cannot read {url}: {describe(exc)}") from exc

    return await _gather_all([one(*item) for item in items])


def _version(etag: str, size: Any) -> str:
    """What names one content of an object (copy_keys): its ETag (a digest of the content
    for an upload) and its size."""
    return f"{etag} {size}"


def _endpoint(fs: Any) -> str:
    return str(getattr(fs, "endpoint_url", None)
               or (getattr(fs, "client_kwargs", None) or {}).get("endpoint_url") or "")


async def _upload(fs: Any, local_path: str, bucket: str, key: str, url: str) -> None:
    """Upload a local file to its final key: one PUT, or a multipart upload that is
    completed only when every part arrived and aborted on any error or cancellation."""
    size = os.path.getsize(local_path)
    if size <= PART_SIZE:
        with open(local_path, "rb") as handle:  # noqa: ASYNC230 - local disk, one part at most
            body = handle.read()
        await _call(fs, "put_object", url, Bucket=bucket, Key=key, Body=body)
        return
    # Interrupted while the create request is out, S3 may have made the upload already: its
    # answer is awaited (shielded) so that the upload can be aborted, not left behind.
    creating = asyncio.ensure_future(
        _call(fs, "create_multipart_upload", url, Bucket=bucket, Key=key))
    try:
        created = await asyncio.shield(creating)
    except BaseException:
        with contextlib.suppress(BaseException):
            made = await creating
            await _abort_upload(fs, url, bucket, key, made["UploadId"])
        raise
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
        await _abort_upload(fs, url, bucket, key, upload_id)
        raise


async def _abort_upload(fs: Any, url: str, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; shielded, so that a cancellation does not stop it halfway."""
    try:
        await asyncio.shield(_call(fs, "abort_multipart_upload", url, Bucket=bucket, Key=key,
                                   UploadId=upload_id))
    except BaseException as exc:  # noqa: BLE001 - the original error matters more
        log.warning("could not abort the multipart upload of %s (%s); "
                    "the next attempt aborts it", url, describe(exc))


async def _abort_stale_uploads(fs: Any, bucket: str, key: str, url: str) -> int:
    answer = await _call(fs, "list_multipart_uploads", url, Bucket=bucket, Prefix=key)
    stale = [u for u in answer.get("Uploads", ()) if u.get("Key") == key]
    for upload in stale:
        await _call(fs, "abort_multipart_upload", url, Bucket=bucket, Key=key,
                    UploadId=upload["UploadId"])
    return len(stale)


#: How a handed-over write's staging object is named in a PendingWrite (`hand_over_tmp`).
STAGED_PREFIX = "s3://"
#: What follows `<name>.` in a staging object's key: the writer tag of `_tmp_suffix()`.
_STAGED_SUFFIX = re.compile(r"[0-9a-f]+-\d+\.[0-9a-f]+\.\d+")


async def _drop_staged(fs: Any, bucket: str, prefix: str, url: str) -> int:
    """Delete the staging objects (and abort unfinished uploads of them) under `prefix`
    that belong to this target; kept-aside copies (`.old`) are left alone."""
    dropped = 0
    answer = await _call(fs, "list_objects_v2", url, Bucket=bucket, Prefix=prefix)
    for item in answer.get("Contents", ()):
        if _STAGED_SUFFIX.fullmatch(item["Key"][len(prefix):]):
            await _call(fs, "delete_object", url, Bucket=bucket, Key=item["Key"])
            dropped += 1
    uploads = await _call(fs, "list_multipart_uploads", url, Bucket=bucket, Prefix=prefix)
    for upload in uploads.get("Uploads", ()):
        if _STAGED_SUFFIX.fullmatch(upload.get("Key", "")[len(prefix):]):
            await _call(fs, "abort_multipart_upload", url, Bucket=bucket, Key=upload["Key"],
                        UploadId=upload["UploadId"])
    return dropped


# -- local spool -----------------------------------------------------------------------
def spool_dir() -> str:
    """Where unfinished S3 writes wait on the local disk (`$BATCHDEPS_SPOOL_DIR` or tmp)."""
    return os.environ.get("BATCHDEPS_SPOOL_DIR") or os.path.join(
        tempfile.gettempdir(), f"batchdeps-spool-{os.getuid()}"
    )


def private_spool_dir() -> str:
    """The spool folder, made mode 0700 if missing; refused if another user could read or
    replace what waits there (owned by someone else, or writable by group or others)."""
    directory = spool_dir()
    if directory in _checked_spools:
        return directory
    parent = os.path.dirname(os.path.abspath(directory))
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TargetError(f"cannot make the spool folder {directory}: {exc.strerror or exc}") from exc
    info = os.lstat(directory)
    problem = ""
    if not stat.S_ISDIR(info.st_mode):
        problem = "it is not a folder (a symbolic link or a file)"
    elif info.st_uid != os.geteuid():
        problem = f"it is owned by another user (uid {info.st_uid}, you are {os.geteuid()})"
    elif info.st_mode & 0o022:
        problem = f"others can write to it (mode {stat.S_IMODE(info.st_mode):o})"
    if problem:
        raise TargetError(
            f"refusing the spool folder {directory} for S3 writes: {problem}, so another "
            f"user could read or replace outputs before upload. Remove it, or set "
            f"BATCHDEPS_SPOOL_DIR to a folder of your own with mode 0700")
    _checked_spools.add(directory)
    return directory


#: Spool folders found safe by this process (a folder of ours, 0700, stays so).
_checked_spools: set[str] = set()


def _spool_prefix(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:20] + "."


# -- the target ------------------------------------------------------------------------
class S3Target(FsspecTarget):
    """An object `s3://bucket/key`; see the module docstring for the guarantees."""

    def __init__(self, url: Any = None, *, path: Any = None, format: Format | None = None,
                 storage: Storage | None = None, **storage_options: Any) -> None:
        super().__init__(url, path=path, format=format, storage=storage, **storage_options)
        self.bucket, _, self.key = self.path.partition("/")
        if not self.bucket or not self.key or self.key.endswith("/"):
            raise TargetError(f"{self.url} is not an S3 object URL: use s3://bucket/key")

    def makedirs(self) -> None:
        """Nothing: S3 has no folders (a key's prefix exists once a key under it does)."""

    def _remove(self) -> None:
        fs = self._filesystem_for_check()
        try:
            _run(fs, lambda: _call(fs, "delete_object", self.url, Bucket=self.bucket,
                                   Key=self.key))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise TargetError(f"cannot remove {self.url}: {describe(exc)}") from exc
        fs.invalidate_cache(self.path)

    @property
    def filesystem(self) -> Any:
        merged = {**self._storage.options.get("s3", {}), **self._options}
        return self._storage.filesystem("s3", s3_options(merged))

    def _filesystem_for_check(self) -> Any:
        try:
            return self.filesystem
        except TargetError as exc:
            raise TargetCheckError(f"cannot check {self.url}: {exc}") from exc

    def _exists(self) -> bool:
        """One HEAD request: True, False on 404, TargetCheckError on anything else."""
        fs = self._filesystem_for_check()
        return _run(fs, lambda: _head(fs, self.bucket, self.key, self.url))

    @classmethod
    def _exists_many(cls, targets: list[Target]) -> list[bool]:
        """Existence of many S3 targets with few round trips (see `_exists_batch`)."""
        return [bool(found) for found in cls._for_each_fs(targets, _exists_batch)]

    def identity(self) -> dict[str, Any] | None:
        return self.identity_many([self])[0]

    @classmethod
    def identity_many(cls, targets: list[Target]) -> list[dict[str, Any] | None]:
        """ETag, LastModified (whole seconds: a HEAD gives no more) and size of many
        objects, from the same listings and HEADs as `_exists_many`."""
        return [None if info is None else _identity(info)
                for info in cls._for_each_fs(targets, _stat_batch)]

    @classmethod
    def read_many(cls, targets: list[Target]) -> list[bytes | None]:
        """Many small objects, fetched concurrently (GET; None on 404)."""
        return [None if got is None else got[0] for got in cls._for_each_fs(targets, _get_batch)]

    @classmethod
    def read_many_versioned(cls, targets: list[Target]) -> list[tuple[bytes | None, str | None]]:
        """`read_many`, each with the ETag and size of what the GET returned."""
        return [(None, None) if got is None else
                (got[0], None if not got[1] else _version(got[1], len(got[0])))
                for got in cls._for_each_fs(targets, _get_batch)]

    @classmethod
    def copy_keys(cls, targets: list[Target], identities: list[dict[str, Any]],
                  ) -> list[tuple[str, str, str] | None]:
        """(endpoint and bucket, key, ETag and size from the listing or HEAD) of each object."""
        keys: list[tuple[str, str, str] | None] = []
        endpoints: dict[int, str] = {}
        for target, identity in zip(targets, identities):
            assert isinstance(target, S3Target)
            etag = identity.get("etag")
            if not etag or identity.get("size") is None:
                keys.append(None)
                continue
            fs = target._filesystem_for_check()
            endpoint = endpoints.get(id(fs))
            if endpoint is None:
                endpoint = endpoints[id(fs)] = _endpoint(fs)
            keys.append((f"{endpoint} {target.bucket}", target.key,
                         _version(etag, identity["size"])))
        return keys

    @classmethod
    def _for_each_fs(cls, targets: list[Target],
                     batch: Callable[[Any, list[tuple[str, str, str]]], Awaitable[list[T]]],
                     ) -> list[T | None]:
        """`batch` over the targets' (bucket, key, url), one event-loop round per filesystem."""
        result: list[T | None] = [None] * len(targets)
        by_fs: dict[int, tuple[Any, list[int]]] = {}
        for index, target in enumerate(targets):
            assert isinstance(target, S3Target)
            fs = target._filesystem_for_check()
            by_fs.setdefault(id(fs), (fs, []))[1].append(index)
        for fs, indices in by_fs.values():
            items = [(t.bucket, t.key, t.url) for t in (targets[i] for i in indices)]  # type: ignore[attr-defined]
            answers = _run(fs, lambda: batch(fs, items))  # noqa: B023 - awaited here
            for index, answer in zip(indices, answers):
                result[index] = answer
        return result

    def _open_final(self, mode: str) -> IO[Any]:
        fs = self.filesystem
        try:
            _run(fs, lambda: _client(fs, self.bucket))  # reads log their retries too
            fs.invalidate_cache(self.path)
            return fs.open(self.path, mode)  # type: ignore[no-any-return]
        except FileNotFoundError as exc:
            raise TargetError(f"cannot read {self.url}: not found") from exc
        except Exception as exc:
            cause = describe(exc.__cause__ or exc) if exc.__cause__ else describe(exc)
            raise TargetError(f"cannot read {self.url}: {cause}") from exc

    def _open_staged(self, tmp_path: str, mode: str) -> IO[Any]:
        if tmp_path.startswith(STAGED_PREFIX):  # handed over by another machine's attempt
            return self.filesystem.open(tmp_path[len(STAGED_PREFIX):], mode)  # type: ignore[no-any-return]
        return open(tmp_path, mode)  # the local spool file

    def _staging_prefix(self) -> str:
        parent, _, base = self.key.rpartition("/")
        return f"{parent + '/' if parent else ''}{TMP_DIR_NAME}/{base}."

    def hand_over_tmp(self, tmp_path: str) -> str:
        """Upload the spooled file to a staging object beside the target (removing the
        spool); returns its `s3://` URL, which `commit_tmp` moves into place."""
        if tmp_path.startswith(STAGED_PREFIX):
            return tmp_path
        key = self._staging_prefix() + _tmp_suffix()
        self._upload_spool(tmp_path, key, "stage")
        return f"{STAGED_PREFIX}{self.bucket}/{key}"

    def _upload_spool(self, tmp_path: str, key: str, what: str) -> None:
        """Upload the spooled file to `key`; the spool is removed either way."""
        try:
            fs = self.filesystem
            _run(fs, lambda: _upload(fs, tmp_path, self.bucket, key, self.url))
        except TargetError:
            raise
        except Exception as exc:
            raise TargetError(f"cannot {what} {self.url}: {describe(exc)}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)

    def _tmp_path(self) -> str:
        return os.path.join(private_spool_dir(), _spool_prefix(self.url) + _tmp_suffix())

    def _open_tmp(self, mode: str) -> tuple[IO[Any], str]:
        spool = self._tmp_path()
        return open(spool, mode), spool

    def commit_tmp(self, tmp_path: str) -> None:
        """Upload the spooled file to the final key; the spool is removed either way. A
        staging object (`hand_over_tmp`) is copied to the final key, then deleted."""
        if tmp_path.startswith(STAGED_PREFIX):
            staged_key = tmp_path[len(STAGED_PREFIX):].partition("/")[2]

            async def move(fs: Any) -> None:
                try:
                    await _call(fs, "copy_object", self.url, Bucket=self.bucket, Key=self.key,
                                CopySource={"Bucket": self.bucket, "Key": staged_key})
                except Exception as exc:
                    if _status_and_code(exc)[1] not in ("InvalidRequest", "EntityTooLarge"):
                        raise
                    # Over 5 GB: s3fs copies part by part; the object appears when complete.
                    await fs._copy(f"{self.bucket}/{staged_key}", self.path)
                await _call(fs, "delete_object", self.url, Bucket=self.bucket, Key=staged_key)

            self._request("move the staged object into place", move)
            return
        self._upload_spool(tmp_path, self.key, "upload")

    def discard_tmp(self, tmp_path: str) -> None:
        if tmp_path.startswith(STAGED_PREFIX):
            staged_key = tmp_path[len(STAGED_PREFIX):].partition("/")[2]
            self._request("remove the staged object", lambda fs: _call(
                fs, "delete_object", self.url, Bucket=self.bucket, Key=staged_key))
            return
        remove_path(tmp_path)

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
            fs = self.filesystem
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
        staging = self._staging_prefix()
        try:
            fs = self.filesystem
            aborted = _run(fs, lambda: _abort_stale_uploads(fs, self.bucket, self.key, self.url))
            dropped = _run(fs, lambda: _drop_staged(fs, self.bucket, staging, self.url))
        except Exception as exc:  # noqa: BLE001 - the write itself will report the problem
            log.warning("could not look for unfinished uploads of %s: %s", self.url, describe(exc))
            return
        if aborted:
            log.info("aborted %d unfinished multipart upload(s) of %s", aborted, self.url)
        if dropped:
            log.info("removed %d staged object(s) of %s left by attempts that did not "
                     "finish", dropped, self.url)
