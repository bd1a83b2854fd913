"""The research export's reading of co2_readings: records as a pyarrow table
of typed columns (RAW_NAMES), without a Python object per value.

Fast path: the ADBC SQLite driver (Apache Arrow's) reads the records straight
into Arrow columns, in C, releasing the GIL (two threads read two units at
once). It infers each column's type from a whole batch (BATCH_ROWS rows: a
unit's records at once), widening it to text when a value of another storage
class is among them; a column that comes back of any type but the expected
one (text where a number belongs, a fraction in an integer column, a blob),
text that is not valid UTF-8, or a batch that disagrees with the one before
sends the records the plain way: value by value through the sqlite3 module,
every value of the wrong type taken as empty and counted (Tally.unusable),
exactly as DATA-FORMATS.md's export asks. A column that is empty throughout
comes back untyped and is given its type.

Both ways read the same snapshot of the database: a Reader's two
connections are checked against the export's snapshot_key() (see
export.py) when they open.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import adbc_driver_sqlite.dbapi as adbc_sqlite
import pyarrow as pa

from .readonly import open_db_readonly

CO2_NAMES = tuple(f"co2_{i:02d}" for i in range(1, 11))
RAW_REALS = (
    "co2_output_filtered",
    "led_normalized_filtered",
    "led_signal_filtered",
    "zero_point",
    "sensor_temp_filtered",
)
# (co2_readings column, kind): the order of the raw table's columns.
SOURCE = (
    ("unit_id", "text"),
    ("nickname", "text"),
    ("date", "text"),
    ("time", "text"),
    ("temp", "real"),
    ("flash_count", "integer"),
    *((name, "integer") for name in CO2_NAMES),
    *((name, "real") for name in RAW_REALS),
    ("source_file", "text"),
    ("line_no", "integer"),
)
RAW_NAMES = tuple(name for name, _ in SOURCE)
_TYPES = {"text": pa.string(), "real": pa.float64(), "integer": pa.int64()}
RAW_SCHEMA = pa.schema([(name, _TYPES[kind]) for name, kind in SOURCE])
BUSY_TIMEOUT_MS = 30_000  # as open_db_readonly's
BATCH_ROWS = 1 << 22  # rows per ADBC batch: the rows its type inference looks at
_SELECT = "SELECT " + ", ".join(RAW_NAMES) + " FROM co2_readings"


@dataclass
class Tally:
    """What the row computation met: rows, flags, values it could not use."""

    rows: int = 0
    flags: Counter = field(default_factory=Counter)
    unusable: Counter = field(default_factory=Counter)  # column -> values taken as empty

    def add(self, other: Tally) -> None:
        self.rows += other.rows
        self.flags.update(other.flags)
        self.unusable.update(other.unusable)


class SnapshotMoved(Exception):
    """The database changed between the export's snapshot and a reader's."""


class Reader:
    """One thread's two read-only connections (ADBC and sqlite3), each in a
    read transaction on the snapshot whose key_of() is key (export.py's
    readings_version)."""

    def __init__(self, db: Path, key: tuple, key_of) -> None:
        self.plain = open_db_readonly(db, any_thread=True)  # closed by the pool's owner
        self.plain.execute("BEGIN")
        self.fast = adbc_sqlite.connect("file:" + quote(str(db.resolve())) + "?mode=ro")
        _AdbcRows(self.fast).execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # the WAL opened by another
        if key_of(self.plain) != key or key_of(_AdbcRows(self.fast)) != key:
            self.close()
            raise SnapshotMoved

    def close(self) -> None:
        self.plain.close()
        self.fast.close()

    def records(self, where: str, params: tuple, tally: Tally) -> pa.Table:
        """The co2_readings records WHERE where, as RAW_SCHEMA columns (in no set order)."""
        cursor = self.fast.cursor()
        try:
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            cursor.execute(f"{_SELECT} WHERE {where}", params)
            table = _typed(cursor.fetch_arrow_table())
        except (OSError, adbc_sqlite.Error):
            table = None  # a batch's types disagree with the one before
        finally:
            cursor.close()
        return table if table is not None else self._plain(where, params, tally)

    def _plain(self, where: str, params: tuple, tally: Tally) -> pa.Table:
        """The records read value by value (slow; only for values of the wrong type)."""
        self.plain.text_factory = bytes  # text that is not UTF-8 is repaired, not fatal
        try:
            records = self.plain.execute(f"{_SELECT} WHERE {where}", params).fetchall()
        finally:
            self.plain.text_factory = str
        columns = list(zip(*records, strict=True)) if records else [()] * len(SOURCE)
        arrays = []
        for (name, kind), values in zip(SOURCE, columns, strict=True):
            if kind == "text":
                clean = [_text(v) for v in values]
            elif kind == "real":
                clean = [_number(v, name, tally) for v in values]
            else:
                clean = [_integer(v, name, tally) for v in values]
            arrays.append(pa.array(clean, type=_TYPES[kind]))
        return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)


class _AdbcRows:
    """An ADBC connection answering conn.execute(sql, params).fetchone()/fetchall()/iteration."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple = ()) -> list:
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql, params)
            return _Rows(cursor.fetchall())
        finally:
            cursor.close()


class _Rows(list):
    def fetchone(self):
        return self[0] if self else None

    def fetchall(self) -> list:
        return list(self)


def _typed(table: pa.Table) -> pa.Table | None:
    """The table as RAW_SCHEMA, None when a column holds values of another type."""
    columns = []
    for i, expected in enumerate(RAW_SCHEMA):
        column = table.column(i)
        if column.type != expected.type:
            if column.null_count != len(column):
                return None
            column = pa.nulls(len(column), expected.type)
        columns.append(column)
    typed = pa.Table.from_arrays(columns, schema=RAW_SCHEMA)
    try:
        typed.validate(full=True)  # UTF-8 of every text
    except pa.ArrowInvalid:
        return None
    return typed


def _number(value: object, column: str, tally: Tally) -> float | None:
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    tally.unusable[column] += 1  # text SQLite could not make a number of
    return None


def _integer(value: object, column: str, tally: Tally) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    tally.unusable[column] += 1  # text, or a fraction in an integer column
    return None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def unit_where(unit: str | None) -> tuple[str, tuple]:
    """The WHERE clause and parameters of one unit's records."""
    return ("unit_id IS NULL", ()) if unit is None else ("unit_id = ?", (unit,))


def unit_ids(conn: sqlite3.Connection) -> list[str | None]:
    """The units of co2_readings, seeking the (unit_id, date, time) index."""
    found = []
    row = conn.execute("SELECT min(unit_id) FROM co2_readings").fetchone()
    while row is not None and row[0] is not None:
        found.append(row[0])
        row = conn.execute("SELECT min(unit_id) FROM co2_readings WHERE unit_id > ?", (row[0],)).fetchone()
    if conn.execute("SELECT 1 FROM co2_readings WHERE unit_id IS NULL LIMIT 1").fetchone():
        found.append(None)
    return found
