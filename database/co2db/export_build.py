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
import shutil
import sqlite3
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .export_read import Reader, SnapshotMoved, Tally, unit_ids, unit_where
from .export_rows import EPOCH_COLUMN, FLAG_LIST, unit_layout, unit_table
from .export_write import (
    BAD_TIME_CSV,
    NULL_PARTITION,
    Written,
    csv_groups,
    daily_rows,
    file_order,
    partition_groups,
    write_csv,
    write_daily,
    write_parquet,
)
from .readonly import table_exists

__all__ = ["FLAG_LIST", "SnapshotMoved", "Tally", "build"]
NO_SITE, NO_YEAR = f"site={NULL_PARTITION}", f"year={NULL_PARTITION}"
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


@dataclass
class Covered:
    """The time span, units and sites of the rows seen so far."""

    low: int | None = None
    high: int | None = None
    units: set = field(default_factory=set)
    sites: set = field(default_factory=set)

    def add(self, table: pa.Table) -> None:
        self.units.update(u for u in pc.unique(table.column("unit_id")).to_pylist() if u is not None)
        self.sites.update(s for s in pc.unique(table.column("site")).to_pylist() if s is not None)
        lo, hi = (v.as_py() for v in pc.min_max(table.column(EPOCH_COLUMN)).values())
        if lo is not None:
            self.low = lo if self.low is None else min(lo, self.low)
            self.high = hi if self.high is None else max(hi, self.high)

    def described(self) -> tuple[tuple, list[str], list[str]]:
        from .export_rows import ts_text

        span = (ts_text(self.low), ts_text(self.high)) if self.low is not None else (None, None)
        return span, sorted(self.units), sorted(self.sites)


BATCH_UNITS = 16  # units whose rows are held at once (more when a site's units are more)


def unit_batches(layout, units: list, size: int | None = None) -> list[list]:
    """The units in batches of about size (BATCH_UNITS), every site's units in one batch
    (units are linked through the sites of their periods), so that a batch's
    files are complete when it is written. Rows in no site (the NULL-site
    partitions and bad_time.csv, shared by all units) are written last."""
    size = size or BATCH_UNITS
    parent = {unit: unit for unit in units}

    def root(unit):
        while parent[unit] != unit:
            parent[unit] = parent[parent[unit]]
            unit = parent[unit]
        return unit

    first_at: dict[str, object] = {}
    for unit in units:
        for period in layout.periods_of(unit) if unit is not None else []:
            if period.site is None:
                continue
            other = first_at.setdefault(period.site, unit)
            parent[root(unit)] = root(other)
    linked: dict = {}
    for unit in units:
        linked.setdefault(root(unit), []).append(unit)
    batches, batch = [], []
    for group in linked.values():
        if batch and len(batch) + len(group) > size:
            batches.append(batch)
            batch = []
        batch += group
    return [*batches, batch] if batch else batches


def build(staging: Path, db: Path, conn: sqlite3.Connection, snapshot: tuple, tally: Tally) -> Built:
    """Write every data file into staging, from scratch, a batch of units at
    a time (memory: one batch). snapshot: (key, key_of) that the readers'
    connections must agree on with conn; raises SnapshotMoved when the
    database changed since (export.py runs again)."""
    layout = unit_layout(conn)
    units = unit_ids(conn) if table_exists(conn, "co2_readings") else []
    cache: dict = {}
    pool = Pool(db, snapshot)
    files, summaries, covered = [], [], Covered()
    spill = Spill(staging / ".spill")
    try:
        for batch in unit_batches(layout, units):
            results = pool.map(lambda unit: _unit_rows(pool, layout, cache, unit), batch)
            pieces = Pieces()
            for unit, (table, daily, unit_tally) in zip(batch, results, strict=True):
                pieces.add(table)
                covered.add(table)
                summaries.append(daily)
                tally.add(unit_tally)
                print(f"export: {unit}: {table.num_rows} rows", file=sys.stderr)
            del results
            files += write_files(pool, staging, spill.keep(pieces))
        files += write_files(pool, staging, spill.pieces())
    finally:
        pool.close()
        spill.remove()
    files += write_daily(staging, summaries)
    return Built(sorted(files, key=file_order), *covered.described())


class Spill:
    """The rows in no site, shared by the units of every batch, set aside in
    Parquet files (one per batch and partition) until every batch is read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[tuple[str, str], list[Path]] = defaultdict(list)

    def keep(self, pieces: Pieces) -> Pieces:
        """The pieces to write now; the rows in no site set aside."""
        shared = [key for key in pieces.parquet if key[0] == NO_SITE]
        for key in shared:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{sum(map(len, self.files.values()))}.parquet"
            pq.write_table(gathered(pieces.parquet.pop(key)), path, compression="lz4")
            self.files[key].append(path)
        pieces.csv.pop(BAD_TIME_CSV, None)  # the rows of the no-site, no-year partition
        return pieces

    def pieces(self) -> Pieces:
        """The set-aside rows as the pieces of their files."""
        pieces = Pieces()
        for key in sorted(self.files):
            table = pa.concat_tables([pq.read_table(path) for path in self.files[key]])
            pieces.parquet[key].append((table, np.arange(table.num_rows)))
            if key[1] == NO_YEAR:
                pieces.csv[BAD_TIME_CSV].append((table, np.arange(table.num_rows)))
        return pieces

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
