"""All of the server's SQLite access: connection, schema, ping inserts, reads.

Connections are per thread and per process (uWSGI forks workers and runs
threads in each); the schema is applied once per process, idempotently.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from importlib import resources
from pathlib import Path

log = logging.getLogger("co2server")

# A ping must never wait long for the database: the TSV log is the record.
BUSY_TIMEOUT_S = 2.0

_local = threading.local()
_schema_ready: set[tuple[int, str]] = set()
_schema_lock = threading.Lock()


def _schema_sql() -> str:
    return resources.files(__package__).joinpath("schema.sql").read_text()


def apply_schema(conn: sqlite3.Connection) -> None:
    """Create or migrate the tables of DATA-FORMATS.md; safe to repeat."""
    conn.execute("PRAGMA journal_mode=WAL")
    try:
        conn.executescript(_schema_sql())
    except sqlite3.IntegrityError:
        # A database from before the unique ping key may hold duplicate rows.
        log.warning("removing duplicate ping rows so the unique index can be created")
        conn.execute(
            "DELETE FROM pings WHERE rowid NOT IN (SELECT min(rowid) FROM pings GROUP BY ping_ts, unit_id)"
        )
        conn.commit()
        conn.executescript(_schema_sql())


def connect(db_path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.row_factory = sqlite3.Row
    return conn


def connection(db_path: Path) -> sqlite3.Connection:
    """This thread's connection to `db_path`, with the schema applied."""
    key = (os.getpid(), str(db_path))
    cache = getattr(_local, "conns", None)
    if cache is None:
        cache = _local.conns = {}
    conn = cache.get(key)
    if conn is None:
        conn = connect(db_path)
        with _schema_lock:
            if key not in _schema_ready:
                apply_schema(conn)
                _schema_ready.add(key)
        cache[key] = conn
    return conn


def forget_connection(db_path: Path) -> None:
    """Drop this thread's connection after an error, so the next use reconnects."""
    key = (os.getpid(), str(db_path))
    conn = getattr(_local, "conns", {}).pop(key, None)
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass
    with _schema_lock:
        _schema_ready.discard(key)


def insert_ping(db_path: Path, row: tuple) -> None:
    """Insert one ping row (the columns of the pings table, in order)."""
    try:
        conn = connection(db_path)
        conn.execute("INSERT OR IGNORE INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    except sqlite3.Error:
        forget_connection(db_path)
        raise


def check(db_path: Path) -> str:
    """'ok', or what is wrong with the database."""
    try:
        conn = connection(db_path)
        conn.execute("SELECT count(*) FROM (SELECT 1 FROM pings LIMIT 1)").fetchone()
        return "ok"
    except sqlite3.Error as exc:
        forget_connection(db_path)
        return f"error: {exc}"
