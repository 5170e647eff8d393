"""Who may do what on the lock server: roles, the tokens file, and the client's token.

Three roles, each including the one before it:

    reader   the status page, metrics, the lease list without fencing tokens
    worker   acquire, renew, check and release its own leases, report history
    admin    force a release, read the audit log, see fencing tokens in the lease list

A token comes either from the server's environment (`BATCHDEPS_LOCK_TOKEN`, which has every
role, as before roles existed) or from a tokens file (`--tokens-file`): one `ROLE HASH` per
line, HASH being the SHA-256 of the token in lowercase hex (`printf %s "$TOKEN" | sha256sum`),
`#` starting a comment. The server keeps only hashes of file tokens in memory.

Imports only the standard library: the client reads its token with `client_token()`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable

from ..errors import ConfigError, UsageError

READER, WORKER, ADMIN = "reader", "worker", "admin"
ROLES = (READER, WORKER, ADMIN)
#: role -> the roles it grants (each role includes the ones before it)
GRANTS: dict[str, frozenset[str]] = {
    READER: frozenset({READER}),
    WORKER: frozenset({READER, WORKER}),
    ADMIN: frozenset({READER, WORKER, ADMIN}),
}
EVERY_ROLE = GRANTS[ADMIN]
NO_ROLE: frozenset[str] = frozenset()
#: tokens shorter than this are refused on an address other than loopback
MIN_TOKEN_CHARS = 16
#: the cookie the status page's login form sets (GET requests only)
TOKEN_COOKIE = "batchdeps_token"
TOKEN_ENV = "BATCHDEPS_LOCK_TOKEN"
TOKEN_FILE_ENV = "BATCHDEPS_LOCK_TOKEN_FILE"
_HASH = re.compile(r"[0-9a-f]{64}")


def token_hash(token: str) -> str:
    """The hash a tokens file holds for `token`: SHA-256, lowercase hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Tokens:
    """The server's tokens: the environment token (every role) and a tokens file's hashes."""

    def __init__(self, env_token: str = "", path: str | None = None) -> None:
        self.env_token = env_token.encode("utf-8", "surrogatepass")
        self.path = path
        self.hashes: list[tuple[bytes, frozenset[str]]] = []
        if path:
            self.hashes = read_tokens_file(path)

    @property
    def open(self) -> bool:
        """True when no token is configured: every request has every role (loopback only)."""
        return not self.env_token and not self.path

    def reload(self) -> None:
        """Read the tokens file again (SIGHUP); a bad file keeps the old tokens and raises."""
        if self.path:
            self.hashes = read_tokens_file(self.path)

    def roles(self, token: str) -> frozenset[str]:
        """The roles of `token` (empty when it is not a known token). Constant time per entry."""
        if self.open:
            return EVERY_ROLE
        given = token.encode("utf-8", "surrogatepass")
        roles: set[str] = set()
        if self.env_token and hmac.compare_digest(given, self.env_token):
            roles |= EVERY_ROLE
        if self.hashes:
            digest = hashlib.sha256(given).hexdigest().encode()
            for expected, granted in self.hashes:
                if hmac.compare_digest(digest, expected):
                    roles |= granted
        return frozenset(roles)

    def too_short(self) -> str:
        """Why these tokens may not guard a non-loopback address ('' when they may)."""
        if self.env_token and len(self.env_token) < MIN_TOKEN_CHARS:
            return (f"{TOKEN_ENV} is shorter than {MIN_TOKEN_CHARS} characters "
                    "(make one with `openssl rand -hex 32`)")
        return ""


def read_tokens_file(path: str) -> list[tuple[bytes, frozenset[str]]]:
    """Parse a tokens file: `ROLE SHA256HEX` per line; UsageError naming the bad line."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the tokens file {path}: {exc}") from None
    entries: list[tuple[bytes, frozenset[str]]] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 2 or fields[0] not in GRANTS or not _HASH.fullmatch(fields[1]):
            raise UsageError(
                f"{path} line {number}: expected `ROLE SHA256HEX` with ROLE one of "
                f"{', '.join(ROLES)} and the token's SHA-256 as 64 lowercase hex digits "
                "(`printf %s \"$TOKEN\" | sha256sum`)")
        entries.append((fields[1].encode(), GRANTS[fields[0]]))
    if not entries:
        raise UsageError(f"the tokens file {path} names no token")
    return entries


def client_token(environ: dict[str, str] | None = None) -> str:
    """The token a client sends: $BATCHDEPS_LOCK_TOKEN, else the file $BATCHDEPS_LOCK_TOKEN_FILE
    names (its first line, surrounding whitespace removed: the systemd/Docker secrets way)."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "")
    if token:
        return token
    path = env.get(TOKEN_FILE_ENV, "")
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the lock token from {TOKEN_FILE_ENV}={path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"the lock token file {path} ({TOKEN_FILE_ENV}) is empty")
    return lines[0].strip()


def roles_text(roles: Iterable[str]) -> str:
    return ", ".join(role for role in ROLES if role in set(roles)) or "none"
