"""The PostgreSQL lease database's schema: versioned steps, the grant functions, `--init`.

Tables live in the connection's current schema (`search_path`), all named `batchdeps_*`
except the history's two (`history_runs`, `history_events`, the same names as in SQLite).
`batchdeps_meta` says what the database is (`application`) and its `schema` version. A
database is initialised or migrated only by `init_schema()` (`lock-server --init`), in one
transaction: a database of a newer version, of another program (`application` differs, or
tables that are not ours with no `batchdeps_meta`), is refused and left untouched.

A key that has a row (live, the caller's, expired) is decided inside the database by the
PL/pgSQL function `batchdeps_acquire()` (free keys are inserted in one statement:
pgwrites.py), so the row lock of a key is held only for the statement and its commit. Why they cannot grant a key twice
is written in docs/locks.md ("Many replicas on PostgreSQL").
"""

from __future__ import annotations

from typing import Any

from ...history.records import FINISHED
from ..protocol import FORCED_RELEASE
from .base import REOPENED, StoreError

APPLICATION = "batchdeps-leases"
SCHEMA_VERSION = 3

#: step N brings a database from version N-1 to N
STEPS: dict[int, str] = {1: f"""
CREATE TABLE batchdeps_meta (name text PRIMARY KEY, value text NOT NULL);
CREATE SEQUENCE batchdeps_token_seq AS bigint CACHE 1;
CREATE TABLE batchdeps_leases (
    key text PRIMARY KEY,
    token bigint NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    run_id text NOT NULL,
    ttl double precision NOT NULL,
    granted_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX batchdeps_leases_expires ON batchdeps_leases (expires_at);
CREATE INDEX batchdeps_leases_holder ON batchdeps_leases (host, pid);
CREATE TABLE batchdeps_audit (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    event text NOT NULL,
    key text NOT NULL,
    token bigint NOT NULL,
    holder text NOT NULL,
    address text NOT NULL,
    detail text NOT NULL
);
CREATE INDEX batchdeps_audit_at ON batchdeps_audit (at);
CREATE TABLE history_runs (
    run_id text PRIMARY KEY,
    requested text NOT NULL,
    host text NOT NULL,
    "user" text NOT NULL,
    pid integer NOT NULL,
    started double precision NOT NULL,
    finished double precision,
    exit_code integer,
    planned integer NOT NULL,
    counts text NOT NULL,
    last_seen double precision NOT NULL
);
CREATE INDEX history_runs_started ON history_runs (started);
CREATE TABLE history_events (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    ts double precision NOT NULL,
    kind text NOT NULL,
    task_id text NOT NULL,
    family text NOT NULL,
    status text NOT NULL,
    attempt integer NOT NULL,
    duration double precision NOT NULL,
    error text NOT NULL,
    log text NOT NULL,
    reason text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started double precision NOT NULL
);
CREATE INDEX history_events_run ON history_events (run_id, id);
CREATE INDEX history_finished_ts ON history_events (ts) WHERE kind = '{FINISHED}';
CREATE INDEX history_finished_task ON history_events (task_id, ts) WHERE kind = '{FINISHED}';
CREATE INDEX history_finished_family ON history_events (family, ts)
    WHERE kind = '{FINISHED}';
CREATE INDEX history_finished_failed ON history_events (ts)
    WHERE kind = '{FINISHED}' AND status = 'failed';
""",
    # 2: no index on the holder. The batch statements find each named lease by its key;
    # with this index there the planner, guessing from a table it has no statistics of
    # yet, looked leases up by holder instead and read every lease of that holder for
    # each one named (a release of 190 leases: 190 x 190 rows). Every grant also paid for
    # its entry. Only an operator's `locks release --holder` asks by holder, and reads the
    # table for it.
    2: "DROP INDEX IF EXISTS batchdeps_leases_holder;\n",
    # 3: no table changes; the grant function (replaced by every --init) answers `expire`
    # for a key granted after its row's expiry was audited, and audits a forced release's
    # placeholder taken after its window as the key reopening, not as a takeover. A
    # server of schema 2 would not take `expire` for a grant, hence the new version.
    3: ""}

#: every table a batchdeps database of this version has (anything else: not ours)
OUR_TABLES = {"batchdeps_meta", "batchdeps_leases", "batchdeps_audit", "history_runs",
              "history_events"}

def _literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# One key: the row lock (FOR UPDATE) serialises everyone who wants it; a missing row is
# inserted with ON CONFLICT DO NOTHING, and whoever lost that race loops and locks the row
# the winner committed. `p_slot`: a resource slot, where a locked or live row means "try
# the next slot" rather than "wait" (SKIP LOCKED). Deadlines are on now(), the database's
# clock. o_event: held (not granted), extended (the caller's already), grant (a key with
# no row), takeover (an expired lease of another holder), expire (granted after the row's
# own expiry was audited: the caller's expired lease, or a key closed by a forced release
# whose window has closed, audited as the SQLite store and expire_due() audit them: the
# key reopening, not a takeover).
FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION batchdeps_acquire(
    p_key text, p_host text, p_pid integer, p_run text, p_ttl double precision,
    p_address text, p_slot boolean)
RETURNS TABLE (o_event text, o_key text, o_token bigint, o_host text, o_pid integer,
               o_run text, o_ttl double precision, o_granted_at double precision,
               o_expires_in double precision)
LANGUAGE plpgsql AS $$
DECLARE
    old batchdeps_leases%ROWTYPE;
    mine text := format('host %s pid %s run %s', p_host, p_pid, p_run);
    theirs text;
    new_token bigint;
    event text := 'grant';
BEGIN
    LOOP
        IF p_slot THEN
            SELECT * INTO old FROM batchdeps_leases l WHERE l.key = p_key
                FOR UPDATE SKIP LOCKED;
        ELSE
            SELECT * INTO old FROM batchdeps_leases l WHERE l.key = p_key FOR UPDATE;
        END IF;
        IF FOUND THEN
            IF old.expires_at > now() THEN
                IF p_slot THEN
                    RETURN;
                END IF;
                IF old.host = p_host AND old.pid = p_pid AND old.run_id = p_run THEN
                    UPDATE batchdeps_leases l
                        SET expires_at = now() + p_ttl * interval '1 second'
                        WHERE l.key = p_key;
                    RETURN QUERY SELECT 'extended'::text, p_key, old.token, old.host,
                        old.pid, old.run_id, old.ttl,
                        extract(epoch FROM old.granted_at)::double precision, p_ttl;
                ELSE
                    RETURN QUERY SELECT 'held'::text, p_key, old.token, old.host, old.pid,
                        old.run_id, old.ttl,
                        extract(epoch FROM old.granted_at)::double precision,
                        extract(epoch FROM old.expires_at - now())::double precision;
                END IF;
                RETURN;
            END IF;
            theirs := format('host %s pid %s run %s', old.host, old.pid, old.run_id);
            IF old.pid = @CLOSED_PID@ AND old.host = @CLOSED_HOST@
                    AND old.run_id = @CLOSED_RUN@ THEN
                event := 'expire';
                INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail)
                    VALUES (extract(epoch FROM now()), 'expire', p_key, old.token, theirs,
                            '', @REOPENED@);
            ELSIF theirs <> mine THEN
                event := 'takeover';
                INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail)
                    VALUES (extract(epoch FROM now()), 'takeover', p_key, old.token, theirs,
                            p_address, 'expired lease taken by ' || mine);
            ELSE
                event := 'expire';
                INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail)
                    VALUES (extract(epoch FROM now()), 'expire', p_key, old.token, theirs,
                            '', format('not renewed within its ttl of %s s', old.ttl));
            END IF;
            new_token := nextval('batchdeps_token_seq');
            UPDATE batchdeps_leases l SET token = new_token, host = p_host, pid = p_pid,
                run_id = p_run, ttl = p_ttl, granted_at = now(),
                expires_at = now() + p_ttl * interval '1 second'
                WHERE l.key = p_key;
        ELSE
            new_token := nextval('batchdeps_token_seq');
            INSERT INTO batchdeps_leases AS l
                VALUES (p_key, new_token, p_host, p_pid, p_run, p_ttl, now(),
                        now() + p_ttl * interval '1 second')
                ON CONFLICT (key) DO NOTHING;
            IF NOT FOUND THEN
                IF p_slot THEN
                    RETURN;  -- taken meanwhile: the caller tries the next slot
                END IF;
                CONTINUE;  -- another grant committed it: lock that row and decide again
            END IF;
        END IF;
        INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail)
            VALUES (extract(epoch FROM now()), 'grant', p_key, new_token, mine, p_address,
                    format('ttl %s s', p_ttl));
        RETURN QUERY SELECT event, p_key, new_token, p_host, p_pid, p_run, p_ttl,
            extract(epoch FROM now())::double precision, p_ttl;
        RETURN;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION batchdeps_acquire_slot(
    p_keys text[], p_host text, p_pid integer, p_run text, p_ttl double precision,
    p_address text)
RETURNS TABLE (o_event text, o_key text, o_token bigint, o_host text, o_pid integer,
               o_run text, o_ttl double precision, o_granted_at double precision,
               o_expires_in double precision)
LANGUAGE plpgsql AS $$
DECLARE
    slot_key text;
BEGIN
    FOREACH slot_key IN ARRAY p_keys LOOP
        RETURN QUERY SELECT * FROM batchdeps_acquire(slot_key, p_host, p_pid, p_run, p_ttl,
                                                     p_address, true);
        IF FOUND THEN
            RETURN;
        END IF;
    END LOOP;
END $$;
""".replace("@CLOSED_PID@", str(int(FORCED_RELEASE.pid))).replace(
    "@CLOSED_HOST@", _literal(FORCED_RELEASE.host)).replace(
    "@CLOSED_RUN@", _literal(FORCED_RELEASE.run_id)).replace("@REOPENED@", _literal(REOPENED))

#: serialises two `--init`s on one database (any 64-bit number of our own)
INIT_LOCK = 0x62617463_68646570


def tables(conn: Any) -> set[str]:
    """The tables of the connection's current schema."""
    rows = conn.execute("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = current_schema()").fetchall()
    return {row[0] for row in rows}


def meta(conn: Any) -> dict[str, str]:
    return {name: value for name, value in
            conn.execute("SELECT name, value FROM batchdeps_meta").fetchall()}


def version_of(conn: Any, where: str) -> int | None:
    """The schema version of a batchdeps database (None: empty); StoreError when the
    database is another program's or of a newer batchdeps."""
    found = tables(conn)
    if "batchdeps_meta" not in found:
        if found:
            shown = ", ".join(sorted(found)[:8]) + (", ..." if len(found) > 8 else "")
            raise StoreError(f"{where} is not a batchdeps lease database (it has the tables "
                             f"{shown} and no batchdeps_meta); it is left as it is. Give "
                             "an empty database (or another schema: ?options=-csearch_path"
                             "%3DNAME)")
        return None
    values = meta(conn)
    if values.get("application") != APPLICATION:
        raise StoreError(f"{where} has a batchdeps_meta table of another program "
                         f"(application {values.get('application')!r}); it is left as it is")
    try:
        version = int(values.get("schema", ""))
    except ValueError:
        raise StoreError(f"{where}: batchdeps_meta has no valid schema version "
                         f"({values.get('schema')!r}); it is left as it is") from None
    if version > SCHEMA_VERSION:
        raise StoreError(f"{where} was written by a newer batchdeps (schema {version}, this "
                         f"one knows {SCHEMA_VERSION}); upgrade this server. The database is "
                         "left as it is")
    return version


def init_schema(conn: Any, where: str) -> tuple[int | None, int]:
    """Create or migrate the schema in one transaction; (version before, version now).

    Also raises the token sequence to the database's clock in microseconds when it is
    below, so that tokens stay above any the SQLite store handed out before a move, and
    above those a database restored from an older backup had issued (run it with no
    server running).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INIT_LOCK,))
        before = version_of(conn, where)
        for step in range((before or 0) + 1, SCHEMA_VERSION + 1):
            if STEPS[step]:
                conn.execute(STEPS[step])
        if before is None:
            conn.execute("INSERT INTO batchdeps_meta (name, value) VALUES "
                         "('application', %s), ('schema', %s), "
                         "('created', extract(epoch FROM now())::text)",
                         (APPLICATION, str(SCHEMA_VERSION)))
        else:
            conn.execute("UPDATE batchdeps_meta SET value = %s WHERE name = 'schema'",
                         (str(SCHEMA_VERSION),))
        conn.execute(FUNCTIONS)
        conn.execute(
            "SELECT setval('batchdeps_token_seq', greatest("
            "(SELECT last_value FROM batchdeps_token_seq), "
            "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint))")
    return before, SCHEMA_VERSION


def require_current(conn: Any, where: str) -> None:
    """StoreError unless the database has this version's schema (the server's check)."""
    version = version_of(conn, where)
    if version is None:
        raise StoreError(f"{where} has no batchdeps tables yet: run `batchdeps lock-server "
                         "--db URL --init` once to create them")
    if version < SCHEMA_VERSION:
        raise StoreError(f"{where} has schema {version}, this batchdeps needs "
                         f"{SCHEMA_VERSION}: run `batchdeps lock-server --db URL --init` to "
                         "migrate it (with the older servers stopped)")
