"""make export's building of the data files (export.py decides whether to,
and swaps them in): every unit's rows computed (export_rows.py), WORKERS
units at once, each already split by the file and the partition its rows
belong in; then each file's rows gathered, sorted and written
(export_write.py), WORKERS files at once, into the staging folder.

Kept apart from export.py so that a run with nothing new does not load
pyarrow, numpy or the ADBC driver at all.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .export_read import Reader, SnapshotMoved, Tally, unit_ids, unit_where
from .export_rows import EPOCH_COLUMN, FLAG_LIST, unit_layout, unit_table
from .export_write import Written, csv_groups, daily_rows, partition_groups, write_csv, write_daily, write_parquet
from .readonly import table_exists

__all__ = ["FLAG_LIST", "SnapshotMoved", "Tally", "build"]
WORKERS = 2  # units read and computed, files written, at once (SQLite, ADBC and pyarrow release the GIL)


@dataclass
class Pieces:
    """Rows gathered for the files: per CSV path and per Parquet partition,
    the (table, row indices) pieces of every unit that has rows there."""

    csv: dict = field(default_factory=lambda: defaultdict(list))
    parquet: dict = field(default_factory=lambda: defaultdict(list))

    def add(self, table: pa.Table) -> None:
        for path, rows in csv_groups(table).items():
            self.csv[path].append((table, rows))
        for key, rows in partition_groups(table).items():
            self.parquet[key].append((table, rows))


def gathered(pieces: list) -> pa.Table:
    """One table of the pieces' rows (unsorted: the writers sort)."""
    return pa.concat_tables([table.take(rows) for table, rows in pieces]).combine_chunks()


class Pool:
    """WORKERS threads, each with its own Reader on the export's snapshot (or
    one thread when there is one core)."""

    def __init__(self, db: Path, snapshot: tuple[tuple, Callable]) -> None:
        self.local = threading.local()
        self.workers = max(1, min(WORKERS, os.cpu_count() or 1))
        self.readers: list[Reader] = []
        self.lock = threading.Lock()
        self.db, self.snapshot = db, snapshot
        self.pool = ThreadPoolExecutor(self.workers)

    def reader(self) -> Reader:
        reader = getattr(self.local, "reader", None)
        if reader is None:
            reader = self.local.reader = Reader(self.db, *self.snapshot)  # SnapshotMoved
            with self.lock:
                self.readers.append(reader)
        return reader

    def map(self, fn: Callable, items: Iterable) -> list:
        return list(self.pool.map(fn, items))

    def close(self) -> None:
        self.pool.shutdown()
        for reader in self.readers:
            reader.close()


def _unit_rows(pool: Pool, layout, cache: dict, unit: str | None) -> tuple:
    tally = Tally()
    where, params = unit_where(unit)
    table = unit_table(layout, unit, pool.reader().records(where, params, tally), cache, tally)
    return table, daily_rows(table), tally


def write_files(pool: Pool, staging: Path, pieces: Pieces) -> list[Written]:
    """Every CSV file and Parquet partition of the pieces, sorted by path and key."""
    jobs = [(write_csv, path, pieces.csv[path]) for path in sorted(pieces.csv)]
    jobs += [(write_parquet, key, pieces.parquet[key]) for key in sorted(pieces.parquet)]
    return pool.map(lambda job: job[0](staging, job[1], gathered(job[2])), jobs)


@dataclass
class Built:
    """What the package says of the data: its files, time span, units and sites."""

    files: list[Written]
    span: tuple[str | None, str | None]
    units: list[str]
    sites: list[str]


def describe(tables: Iterable[pa.Table]) -> tuple[tuple, list[str], list[str]]:
    """(time span, units, sites) of the rows of tables."""
    from .export_rows import ts_text

    low = high = None
    units: set[str] = set()
    sites: set[str] = set()
    for table in tables:
        units.update(u for u in pc.unique(table.column("unit_id")).to_pylist() if u is not None)
        sites.update(s for s in pc.unique(table.column("site")).to_pylist() if s is not None)
        lo, hi = (v.as_py() for v in pc.min_max(table.column(EPOCH_COLUMN)).values())
        if lo is not None:
            low, high = min(lo, low if low is not None else lo), max(hi, high if high is not None else hi)
    span = (ts_text(low), ts_text(high)) if low is not None else (None, None)
    return span, sorted(units), sorted(sites)


def build(staging: Path, db: Path, conn: sqlite3.Connection, snapshot: tuple, tally: Tally) -> Built:
    """Write every data file into staging, from scratch. snapshot: (key,
    key_of) that the readers' connections must agree on with conn; raises
    SnapshotMoved when the database changed since (export.py runs again)."""
    layout = unit_layout(conn)
    units = unit_ids(conn) if table_exists(conn, "co2_readings") else []
    cache: dict = {}
    pool = Pool(db, snapshot)
    try:
        results = pool.map(lambda unit: _unit_rows(pool, layout, cache, unit), units)
        pieces, summaries, tables = Pieces(), [], []
        for unit, (table, daily, unit_tally) in zip(units, results, strict=True):
            pieces.add(table)
            tables.append(table)
            summaries.append(daily)
            tally.rows += unit_tally.rows
            tally.flags.update(unit_tally.flags)
            tally.unusable.update(unit_tally.unusable)
            print(f"export: {unit}: {table.num_rows} rows", file=sys.stderr)
        del results
        files = write_files(pool, staging, pieces)
    finally:
        pool.close()
    files += write_daily(staging, summaries)
    return Built(files, *describe(tables))
