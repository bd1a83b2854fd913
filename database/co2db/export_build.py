"""make export's building of the data files (export.py decides whether to,
and swaps them in): every unit's rows computed (export_rows.py), WORKERS
units at once, then the CSV files, the Parquet dataset and the daily
summaries written (export_write.py) into the staging folder.

Kept apart from export.py so that a run with nothing new does not load
pyarrow and numpy at all.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .export import fingerprint
from .export_read import Tally
from .export_rows import EPOCH_COLUMN, FLAG_LIST, TABLE_SCHEMA, export_unit, export_units, ts_text, unit_layout
from .export_write import base_order, daily_rows, write_csv, write_daily, write_parquet
from .readonly import open_db_readonly

__all__ = ["FLAG_LIST", "Tally", "build"]
WORKERS = 2  # units read and computed at once (SQLite and pyarrow release the GIL)


def _worker_connection(db: Path, print_: str) -> None:
    """Open this worker thread's connection; its snapshot must be the main one's."""
    conn = open_db_readonly(db)
    conn.execute("BEGIN")
    _local.conn = conn if fingerprint(conn) == print_ else None


def _export_unit(layout, unit, cache) -> tuple:
    conn = _local.conn
    if conn is None:
        raise _SnapshotMoved
    table, tally = export_unit(conn, layout, unit, cache)
    return table, daily_rows(table), tally


class _SnapshotMoved(Exception):
    """The database changed between the main connection's snapshot and a worker's."""


_local = threading.local()


def unit_results(db: Path, conn: sqlite3.Connection, print_: str):
    """(unit, table, daily rows, tally) of every unit, WORKERS threads at once, each
    with its own connection on the same snapshot (same fingerprint); when the
    database moved in between, one unit after another on the main connection."""
    layout = unit_layout(conn)
    units = export_units(conn)
    cache: dict = {}
    workers = max(1, min(WORKERS, os.cpu_count() or 1))
    if workers > 1 and len(units) > 1:
        pool = ThreadPoolExecutor(workers, initializer=_worker_connection, initargs=(db, print_))
        try:
            return [
                (u, *r)
                for u, r in zip(
                    units, pool.map(_export_unit, [layout] * len(units), units, [cache] * len(units)), strict=True
                )
            ]
        except _SnapshotMoved:
            pass
        finally:
            pool.shutdown()
    results = []
    for unit in units:
        table, tally = export_unit(conn, layout, unit, cache)
        results.append((unit, table, daily_rows(table), tally))
    return results


def _one_table(tables: list) -> pa.Table:
    """The tables as one, each column in one piece; emptied as it goes (memory: each
    column's pieces are freed once it is copied)."""
    if not tables:
        return TABLE_SCHEMA.empty_table()
    pieces = [[chunk for t in tables for chunk in t.column(name).chunks] for name in TABLE_SCHEMA.names]
    tables.clear()
    columns = []
    for field in TABLE_SCHEMA:
        chunks = pieces.pop(0)
        columns.append(pa.concat_arrays(chunks) if chunks else pa.array([], field.type))
        del chunks
    return pa.Table.from_arrays(columns, schema=TABLE_SCHEMA)


def build(
    staging: Path, db: Path, conn: sqlite3.Connection, print_: str, tally: Tally
) -> tuple[list, tuple, list[str], list[str]]:
    """Write every data file into staging; return (files, time span, units, sites)."""
    tables, summaries = [], []
    results = unit_results(db, conn, print_)
    while results:
        unit, table, daily, unit_tally = results.pop(0)
        tables.append(table)
        summaries += daily
        tally.rows += unit_tally.rows
        tally.flags.update(unit_tally.flags)
        tally.unusable.update(unit_tally.unusable)
        print(f"export: {unit}: {table.num_rows} rows", file=sys.stderr)
    table = _one_table(tables)
    base = base_order(table)
    files = write_csv(staging, table, base)
    files += write_parquet(staging, table, base)
    files += write_daily(staging, summaries)
    units = sorted(u for u in pc.unique(table.column("unit_id")).to_pylist() if u is not None)
    sites = sorted(s for s in pc.unique(table.column("site")).to_pylist() if s is not None)
    low, high = pc.min_max(table.column(EPOCH_COLUMN)).values()
    span = (ts_text(low.as_py()), ts_text(high.as_py())) if low.is_valid else (None, None)
    return files, span, units, sites
