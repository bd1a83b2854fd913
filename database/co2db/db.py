"""The pipeline's SQLite connection: schema, pragmas, transactions."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

# The server inserts pings while the pipeline imports: wait for its short
# write transactions instead of failing with "database is locked".
BUSY_TIMEOUT_MS = 60_000

# Secondary indexes of co2_readings that a from-scratch bulk load drops and
# builds once at the end (schema.sql recreates them on the next run if a load
# was interrupted).
READINGS_INDEXES = ("co2_readings_unit_date", "co2_readings_source")

# What `python -m co2db reset` empties: everything the pipeline imports except
# pings, which the server inserts live too.
RESET_TABLES = (
    "co2_readings_edits",  # first: the deletes below then count nothing; a new generation is drawn
    "co2_readings",
    "co2_daily",
    "error_logs",
    "deploy_durations_tiered",
    "rejected_lines",
    "import_state",
)


class DatabaseError(Exception):
    """The database file cannot be opened or prepared."""


def schema_sql() -> str:
    """Return the text of co2db/schema.sql."""
    return resources.files("co2db").joinpath("schema.sql").read_text(encoding="utf-8")


def connect(db_file: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the database, in WAL mode, schema applied."""
    db_file = Path(db_file)
    try:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db_file, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseError(f"cannot open database {db_file}: {exc}") from exc
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise DatabaseError(f"cannot switch {db_file} to WAL mode (got {mode})")
    # NORMAL is safe in WAL mode (a crash may lose the last transactions, never
    # corrupt the file); the importers re-read anything not recorded as done.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
    conn.executescript(schema_sql())
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def begin_bulk_load(conn: sqlite3.Connection) -> None:
    """Prepare a from-scratch load of co2_readings: no indexes, no double writes.

    The secondary indexes are dropped (built once at the end: faster than
    keeping them up to date row by row). In WAL mode every page would be
    written twice (to the WAL, then to the database); a rollback journal
    writes new pages once. Leaving WAL needs the database to ourselves: when
    the server has it open the switch fails and the load stays in WAL mode.
    """
    for name in READINGS_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    try:
        conn.execute("PRAGMA journal_mode = DELETE").fetchone()
    except sqlite3.OperationalError:
        pass  # busy: stay in WAL mode


def end_bulk_load(conn: sqlite3.Connection, index_ready: Callable[[], None] | None = None) -> None:
    """Build the missing indexes and return to WAL mode.

    The (unit_id, date, time) index is built first, then the database returns
    to WAL mode and index_ready() is called (e.g. to start readers that need
    that index) while the other indexes are built: in WAL mode readers see a
    snapshot and do not hold up the writer.
    """
    first = re.search(rf"CREATE INDEX IF NOT EXISTS {READINGS_INDEXES[0]} [^;]*;", schema_sql())
    conn.execute(first.group(0))
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise DatabaseError(f"could not switch back to WAL mode (got {mode})")
    if index_ready is not None:
        index_ready()
    conn.executescript(schema_sql())


def database_file(conn: sqlite3.Connection) -> str:
    """The file name of the connection's main database."""
    return conn.execute("PRAGMA database_list").fetchone()[2]


def table_is_empty(conn: sqlite3.Connection, table: str) -> bool:
    """True when table has no rows."""
    return conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None
