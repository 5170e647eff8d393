"""The lock server's wire protocol: routes, request/response shapes, limits, status codes.

This is the one place the protocol is written in code; `docs/lock-api.md` describes the
same thing for people. Both the server and the client import it; it imports nothing
heavier than the standard library. Bodies are JSON objects. Every request carries
`Authorization: Bearer <token>` with the role `ROUTE_ROLES` names (roles: locks/auth.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import LockError, TaskDefinitionError

API_PREFIX = "/v1"

#: route name -> (HTTP method, path)
ROUTES: dict[str, tuple[str, str]] = {
    "health": ("GET", f"{API_PREFIX}/health"),
    "acquire": ("POST", f"{API_PREFIX}/acquire"),
    "acquire_many": ("POST", f"{API_PREFIX}/acquire-many"),
    "acquire_resource": ("POST", f"{API_PREFIX}/acquire-resource"),
    "renew": ("POST", f"{API_PREFIX}/renew"),
    "check": ("POST", f"{API_PREFIX}/check"),
    "release": ("POST", f"{API_PREFIX}/release"),
    "release_many": ("POST", f"{API_PREFIX}/release-many"),
    "holder": ("POST", f"{API_PREFIX}/holder"),
    "leases": ("GET", f"{API_PREFIX}/leases"),
    "whoami": ("GET", f"{API_PREFIX}/whoami"),
    "force_release": ("POST", f"{API_PREFIX}/force-release"),
    "audit": ("GET", f"{API_PREFIX}/audit"),
}

#: route name -> the role a token needs for it (None: no token needed)
ROUTE_ROLES: dict[str, str | None] = {
    "health": None,
    "acquire": "worker", "acquire_many": "worker", "acquire_resource": "worker",
    "renew": "worker", "check": "worker", "release": "worker", "release_many": "worker",
    "holder": "reader", "leases": "reader", "whoami": "reader",
    "force_release": "admin", "audit": "admin",
}

# -- status codes --------------------------------------------------------------------------
OK = 200                 # done; for acquire also when the key is held elsewhere (granted=false)
BAD_REQUEST = 400        # malformed JSON, missing field, wrong type, value out of range
UNAUTHORIZED = 401       # missing or wrong token
FORBIDDEN = 403          # a known token without the role the route needs
NOT_FOUND = 404          # unknown route
METHOD_NOT_ALLOWED = 405
LEASE_LOST = 409         # check/renew of a lease that is no longer the caller's
TOO_LARGE = 413          # body over MAX_BODY_BYTES
TOO_MANY_REQUESTS = 429  # over the per-address rate limit; see Retry-After
SERVER_ERROR = 500       # a bug; the server stays up and its state stays as it was
UNAVAILABLE = 503        # over the connection limits; see Retry-After

# -- limits --------------------------------------------------------------------------------
MAX_BODY_BYTES = 64 * 1024
MAX_KEY_CHARS = 4096
MAX_HOST_CHARS = 255
MAX_RUN_ID_CHARS = 64
MAX_RESOURCE_SLOTS = 10_000
MAX_RENEW_LEASES = 10_000
MAX_BATCH_KEYS = 256     # keys per acquire-many / leases per release-many request
MAX_AUDIT_LINES = 10_000  # lines per audit request
MAX_REASON_CHARS = 500
MIN_TTL = 1.0
MAX_TTL = 7 * 24 * 3600.0
RESOURCE_PREFIX = "resource:"
#: A holder takes its lease as current without asking the server (the fence check before a
#: commit) for this part of its TTL after the server last confirmed it: a grant, renewal or
#: check, counted from when that request was sent. The server keeps to it: nobody else gets
#: the key in that time, not even after a forced release (which closes the key that long).
LOCAL_FENCE_FRACTION = 0.5


def printable(text: str) -> str:
    """`text` with control and format characters (newline, ESC, bidi overrides...) and the
    backslash escaped, so a key or holder name cannot forge rows or colours on a terminal."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class ProtocolError(LockError, ValueError):
    """A request does not follow the protocol (the server answers 400 with this message)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: one run of batchdeps on one host."""

    host: str
    pid: int
    run_id: str

    def describe(self) -> str:
        """'host H pid P run R', control characters escaped (safe to print)."""
        if self.pid == 0 and self == FORCED_RELEASE:
            return "nobody (released by force; its last holder may still commit until then)"
        return printable(self.text())

    def text(self) -> str:
        """'host H pid P run R' as it is (for storing; escape it before printing)."""
        return f"host {self.host} pid {self.pid} run {self.run_id}"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "run_id": self.run_id}

    @classmethod
    def from_json(cls, value: Any) -> Holder:
        obj = _object(value, "holder")
        return cls(
            host=_text(obj, "host", MAX_HOST_CHARS),
            pid=_integer(obj, "pid", 0, 2**31 - 1),
            run_id=_text(obj, "run_id", MAX_RUN_ID_CHARS),
        )


#: The holder a key freed by force is given while its last holder may still commit on its
#: own fence answer (LOCAL_FENCE_FRACTION): the key stays closed to everyone until the row
#: expires. No request may name it (`requester`), so nobody can acquire, renew or free it.
FORCED_RELEASE = Holder("(forced release)", 0, "fence")


def requester(obj: dict[str, Any]) -> Holder:
    """The holder a request names; never FORCED_RELEASE (nobody's lease to take or free)."""
    holder = Holder.from_json(obj.get("holder"))
    if holder.pid == 0 and holder == FORCED_RELEASE:  # pid first: no real process has 0
        raise ProtocolError("field 'holder' names the holder of keys released by force, "
                            "which no client may use")
    return holder


def describe_holder(value: Any) -> str:
    """'host H pid P run R' from a holder JSON object ('' when not one), safe to print."""
    try:
        return Holder.from_json(value).describe()
    except ProtocolError:
        return ""


@dataclass(frozen=True)
class AcquireRequest:
    key: str
    holder: Holder
    ttl: float
    release: tuple[tuple[str, int], ...] = ()  # the holder's leases to free first


@dataclass(frozen=True)
class ResourceRequest:
    name: str
    slots: int
    holder: Holder
    ttl: float


@dataclass(frozen=True)
class LeaseRef:
    """A lease as its holder names it when renewing, checking or releasing."""

    key: str
    token: int
    holder: Holder


@dataclass(frozen=True)
class RenewRequest:
    holder: Holder
    leases: list[tuple[str, int]]


@dataclass(frozen=True)
class AcquireManyRequest:
    keys: list[str]
    holder: Holder
    ttl: float
    release: tuple[tuple[str, int], ...] = ()  # the holder's leases to free first
    brief: bool = False  # granted keys answered with `granted`, `token`, `expires_in` only


@dataclass(frozen=True)
class KeyRequest:
    key: str


# -- parsing (server side) -------------------------------------------------------------------
def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _text(obj: dict[str, Any], name: str, limit: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"field {name!r} must be a non-empty string")
    if len(value) > limit:
        raise ProtocolError(f"field {name!r} is longer than {limit} characters")
    if "\x00" in value:
        raise ProtocolError(f"field {name!r} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"field {name!r} is not valid Unicode (lone surrogate)") from None
    return value


def _integer(obj: dict[str, Any], name: str, low: int, high: int) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"field {name!r} must be an integer from {low} to {high}")
    return value


def _ttl(obj: dict[str, Any]) -> float:
    value = obj.get("ttl")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        MIN_TTL <= value <= MAX_TTL
    ):
        raise ProtocolError(f"field 'ttl' must be a number of seconds from {MIN_TTL:g} "
                            f"to {MAX_TTL:g}")
    return float(value)


def _release_field(obj: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """The optional `release` list of an acquire: `[{"key", "token"}, ...]`."""
    if "release" not in obj:
        return ()
    return tuple(_lease_refs(obj, "release", MAX_BATCH_KEYS))


def _lease_refs(obj: dict[str, Any], field: str, limit: int) -> list[tuple[str, int]]:
    """Field `field` of `obj`: a list of at most `limit` `{key, token}` objects."""
    items = obj.get(field)
    if not isinstance(items, list) or len(items) > limit:
        raise ProtocolError(f"field '{field}' must be a list of at most {limit} "
                            "{key, token} objects")
    leases = []
    for item in items:
        entry = _object(item, f"each entry of '{field}'")
        leases.append((_text(entry, "key", MAX_KEY_CHARS), _integer(entry, "token", 1, 2**62)))
    return leases


def parse_acquire(body: Any) -> AcquireRequest:
    obj = _object(body, "request body")
    return AcquireRequest(_text(obj, "key", MAX_KEY_CHARS), requester(obj),
                          _ttl(obj), _release_field(obj))


def parse_resource(body: Any) -> ResourceRequest:
    obj = _object(body, "request body")
    return ResourceRequest(
        _text(obj, "name", MAX_KEY_CHARS - 32),
        _integer(obj, "slots", 1, MAX_RESOURCE_SLOTS),
        requester(obj),
        _ttl(obj),
    )


def parse_lease_ref(body: Any) -> LeaseRef:
    obj = _object(body, "request body")
    return LeaseRef(_text(obj, "key", MAX_KEY_CHARS), _integer(obj, "token", 1, 2**62),
                    requester(obj))


def parse_renew(body: Any) -> RenewRequest:
    obj = _object(body, "request body")
    holder = requester(obj)
    return RenewRequest(holder, _lease_refs(obj, "leases", MAX_RENEW_LEASES))


def parse_acquire_many(body: Any) -> AcquireManyRequest:
    obj = _object(body, "request body")
    items = obj.get("keys")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_KEYS:
        raise ProtocolError(f"field 'keys' must be a list of 1 to {MAX_BATCH_KEYS} keys")
    keys = [_text({"key": item}, "key", MAX_KEY_CHARS) for item in items]
    if len(set(keys)) != len(keys):
        raise ProtocolError("field 'keys' must not repeat a key")
    brief = obj.get("brief", False)
    if not isinstance(brief, bool):
        raise ProtocolError("field 'brief' must be true or false")
    return AcquireManyRequest(keys, requester(obj), _ttl(obj),
                              _release_field(obj), brief)


def parse_release_many(body: Any) -> RenewRequest:
    """Same shape as renew: `{"holder": holder, "leases": [{"key", "token"}, ...]}`."""
    request = parse_renew(body)
    if len(request.leases) > MAX_BATCH_KEYS:
        raise ProtocolError(f"field 'leases' must hold at most {MAX_BATCH_KEYS} entries")
    return request


def parse_key(body: Any) -> KeyRequest:
    return KeyRequest(_text(_object(body, "request body"), "key", MAX_KEY_CHARS))


@dataclass(frozen=True)
class ForceReleaseRequest:
    """Free these keys, or every lease of process `pid` on `host`, whoever holds them."""

    keys: list[str]
    host: str
    pid: int | None
    reason: str


def parse_force_release(body: Any) -> ForceReleaseRequest:
    obj = _object(body, "request body")
    reason = obj.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ProtocolError(f"field 'reason' must be a string of at most {MAX_REASON_CHARS} "
                            "characters")
    if "keys" in obj:
        items = obj.get("keys")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_KEYS:
            raise ProtocolError(f"field 'keys' must be a list of 1 to {MAX_BATCH_KEYS} keys")
        keys = [_text({"key": item}, "key", MAX_KEY_CHARS) for item in items]
        return ForceReleaseRequest(keys, "", None, reason)
    if "host" in obj:
        return ForceReleaseRequest([], _text(obj, "host", MAX_HOST_CHARS),
                                   _integer(obj, "pid", 0, 2**31 - 1), reason)
    raise ProtocolError("give 'keys' (a list of keys) or 'host' and 'pid'")


def parse_audit_query(query: Any) -> tuple[float, int]:
    """(since, limit) from the query string of GET /v1/audit."""
    try:
        since = float(query.get("since", "0"))
        limit = int(query.get("limit", "1000"))
    except ValueError:
        raise ProtocolError("'since' must be a number (seconds since 1970) and 'limit' an "
                            "integer") from None
    if not (since >= 0 and since < 1e11) or not 1 <= limit <= MAX_AUDIT_LINES:
        raise ProtocolError(f"'since' must be from 0 to 1e11 and 'limit' from 1 to "
                            f"{MAX_AUDIT_LINES}")
    return since, limit


def parse_url(url: str) -> tuple[bool, str, int, str]:
    """(https, host, port, path prefix) of a lock server URL.

    Raises ProtocolError saying what is wrong, without repeating the URL (it may have come
    from a secret; the caller names where it came from).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProtocolError("has a bad port: give http://HOST:PORT with PORT from 1 to "
                            "65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProtocolError("must look like http://HOST:PORT or https://HOST:PORT")
    if port == 0:
        raise ProtocolError("has a bad port (0): give PORT from 1 to 65535")
    https = parts.scheme == "https"
    return https, parts.hostname, port or (443 if https else 80), parts.path.rstrip("/")


def check_lock_keys(task_ids: Iterable[str]) -> None:
    """TaskDefinitionError (exit 2) for a task id the lock server would refuse as a key."""
    for task_id in task_ids:
        if len(task_id) > MAX_KEY_CHARS:
            raise TaskDefinitionError(
                f"task id {printable(task_id[:80])}... is {len(task_id)} characters long; "
                f"the lock server takes keys of at most {MAX_KEY_CHARS} characters (shorten "
                "the parameter values)")
        if "\x00" in task_id:
            raise TaskDefinitionError(f"task id {printable(task_id[:200])} holds a NUL "
                                      "character, which the lock server refuses")


def resource_key(name: str, slot: int) -> str:
    """The lease key of slot `slot` of resource pool `name`."""
    return f"{RESOURCE_PREFIX}{name}:{slot}"
