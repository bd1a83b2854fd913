"""Reading the database for plots and pages: a read-only connection and the
SQL helpers they share (loose index scans, time text).

The pipeline's plots, pages (and export) never write to the database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from .cli import CommandError


def open_db_readonly(path: Path, any_thread: bool = False) -> sqlite3.Connection:
    """Open the SQLite file read-only; the pipeline's plots never write to it.
    any_thread: usable (one thread at a time) from threads other than this one."""
    if not path.is_file():
        raise CommandError(f"database {path} does not exist (run the importers first, e.g. `make` in database/)")
    uri = "file:" + quote(str(path.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=not any_thread)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlite3.Error as exc:
        raise CommandError(f"cannot read database {path}: {exc}") from exc
    return conn


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    """True when the database has this table (a fresh database may have none)."""
    row = conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None


def distinct_units_sql(table: str) -> str:
    """A CTE `units(id)` listing a table's unit_ids by seeking its (unit_id, ...) index.

    This "loose index scan" costs one index seek per unit instead of a scan
    of the whole table, which matters with millions of rows.
    """
    return f"""
        units(id) AS (
            SELECT (SELECT min(unit_id) FROM {table})
            UNION ALL
            SELECT (SELECT min(unit_id) FROM {table} WHERE unit_id > units.id)
            FROM units WHERE units.id IS NOT NULL
        )"""


def listed_units_sql(param: str = "units") -> str:
    """A CTE `units(id)` of the unit_ids in the JSON array parameter :param (see units_param)."""
    return f"units(id) AS (SELECT value FROM json_each(:{param}))"


def units_param(unit_ids: Iterable[str]) -> str:
    """The value of listed_units_sql()'s parameter."""
    return json.dumps(sorted(unit_ids))


def sql_ts(when: datetime, sep: str = "T") -> str:
    """A datetime as the text the tables hold, for comparisons in SQL."""
    return when.strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def julian_day(when: datetime) -> float:
    """SQLite's julianday() of a naive UTC datetime."""
    return (when - datetime(2000, 1, 1, 12)).total_seconds() / 86400.0 + 2451545.0


def parse_db_ts(text: str | None) -> datetime | None:
    """A time as stored in the tables ('YYYY-MM-DD HH:MM:SS' or ISO with T) or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None
