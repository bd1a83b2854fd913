"""All of the server's SQLite access: connection, schema, ping inserts, reads.

Each uWSGI process keeps one connection for writing, used by one thread at a
time (threads queue on a Python lock, which is cheaper than SQLite's busy
loop); the schema is applied once per process, idempotently. Pings reach the
table through one background thread per process (PingTableWriter). While
the database is locked by another program (the pipeline importing) or
broken, inserts stand back for a moment and the failure is logged once per
back-off: the TSV log is the record, and the pipeline's pings import fills
the gaps.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from importlib import resources
from pathlib import Path

from .per_process import PerProcess

log = logging.getLogger("co2server")

# How long one insert may wait for the write lock before the ping is left to
# the TSV log, and how long later inserts then stand back.
BUSY_TIMEOUT_S = 0.5
BACKOFF_S = 2.0


class _Writer:
    """This process's connection to one database, for one thread at a time."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.skip_until = 0.0

    def get(self) -> sqlite3.Connection:
        if self.conn is None:
            conn = connect(self.db_path)
            try:
                apply_schema(conn)
            except sqlite3.Error:
                conn.close()
                raise
            self.conn = conn
        return self.conn

    def reset(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
        self.conn = None


_writers: PerProcess[_Writer] = PerProcess(lambda path: _Writer(Path(path)))


def _writer(db_path: Path) -> _Writer:
    return _writers.get(str(db_path))


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
        conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.row_factory = sqlite3.Row
    return conn


class PingTableWriter:
    """Inserts this process's pings into the table from one background thread.

    Request threads hand rows over and answer at once; the thread inserts
    whatever has queued up in one transaction, so a burst of pings costs one
    commit rather than one each. The row is a copy of the TSV line, which is
    fsynced before the 200: rows lost here (the database locked or broken,
    the worker killed) are filled in by the pipeline's pings import.
    """

    MAX_BATCH = 1000
    # A quarter of a second behind the log: few, larger commits, so the WAL
    # grows (and is checkpointed, with its fsyncs) several times less often.
    LINGER_S = 0.25

    def __init__(self, db_path: Path):
        self.writer = _writer(db_path)
        self.rows: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="ping-table-writer", daemon=True)
        self.thread.start()

    def submit(self, row: tuple) -> None:
        self.rows.put(row)

    def _take_batch(self) -> list[tuple]:
        batch = [self.rows.get()]
        time.sleep(self.LINGER_S)  # let a burst gather: one commit for all of it
        while len(batch) < self.MAX_BATCH:
            try:
                batch.append(self.rows.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        dropped, last_report = 0, float("-inf")
        while True:
            batch = self._take_batch()
            try:
                self._insert(batch)
            except Exception as exc:  # noqa: BLE001 - this thread must never die
                dropped += len(batch)
                if time.monotonic() - last_report >= BACKOFF_S:  # one line per back-off, not per batch
                    log.error("%d ping(s) logged to TSV but not inserted into %s: %s", dropped, self.writer.db_path, exc)
                    dropped, last_report = 0, time.monotonic()

    def _insert(self, batch: list[tuple]) -> None:
        writer = self.writer
        with writer.lock:
            if time.monotonic() < writer.skip_until:
                raise sqlite3.OperationalError("the database failed moments ago; left to the TSV log")
            try:
                conn = writer.get()
                conn.execute("BEGIN IMMEDIATE")
                for start in range(0, len(batch), ROWS_PER_INSERT):
                    rows = batch[start:start + ROWS_PER_INSERT]
                    conn.execute(_insert_pings_sql(len(rows)), [value for row in rows for value in row])
                conn.execute("COMMIT")
            except sqlite3.Error:
                writer.skip_until = time.monotonic() + BACKOFF_S  # locked or broken: stand back a moment
                writer.reset()
                raise


# Rows per INSERT statement: one statement step (one release of the GIL)
# inserts them all; executemany would step once per row.
ROWS_PER_INSERT = 100


def _insert_pings_sql(rows: int) -> str:
    return "INSERT OR IGNORE INTO pings VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


_ping_writers: PerProcess[PingTableWriter] = PerProcess(lambda path: PingTableWriter(Path(path)))


def insert_ping(db_path: Path, row: tuple) -> None:
    """Queue one ping row (the columns of the pings table, in order) for insertion."""
    _ping_writers.get(str(db_path)).submit(row)


def prepare(db_path: Path) -> None:
    """Create or migrate the schema now (at start-up), so readers find the tables."""
    writer = _writer(db_path)
    with writer.lock:
        try:
            writer.get()
        except sqlite3.Error as exc:
            writer.reset()
            log.error("database %s is not usable: %s (pings are still logged to TSV)", db_path, exc)


SQLITE_HEADER = b"SQLite format 3\x00"


def check(db_path: Path) -> str:
    """'ok', or what is wrong with the database, seen through a fresh read-only connection.

    Fresh each time: a long-lived connection keeps the schema it read once
    and would not notice the file overwritten or truncated under it. Reads
    the header, the schema and the newest ping through the index (a few
    pages; never a scan). The file's own header is read too: while a
    connection holds the write-ahead log open, SQLite reads pages from the
    log and would not see the file itself overwritten.
    """
    try:
        with open(db_path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"error: cannot read {db_path.name}: {exc.strerror or exc}"
    if head and head != SQLITE_HEADER:
        return f"error: {db_path.name} is not an SQLite database (its header was overwritten)"
    try:
        conn = connect(db_path, readonly=True)
    except sqlite3.Error as exc:
        return f"error: {exc}"
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("SELECT ping_ts FROM pings ORDER BY ping_ts DESC LIMIT 1").fetchone()
        return "ok"
    except sqlite3.Error as exc:
        return f"error: {exc}"
    finally:
        conn.close()
