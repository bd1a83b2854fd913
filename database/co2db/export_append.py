"""make export's append: the previous export brought up to date with the rows
added to co2_readings since, reading those rows only and rewriting only the
files their rows fall in; the result is byte for byte what a fresh export
would write (tests/test_export_append.py).

Used when nothing but rows were added since the previous export
(export.can_append: the same code and deployments, the same database
generation and edit count, the previous files all there). Then:

- the added rows are those with a rowid above the previous export's last;
- an added row can change the flags of older rows of its unit only near it:
  repeat_time at the same ts, close_pair up to 120 s after. So, per unit,
  the older rows of the days around the added ones (the day before, the
  days, the day after) are read too, their flags computed without and with
  the added rows, and those of the days and the day after whose flags
  differ are taken as changed;
- each Parquet partition holding changed or added rows is read back, those
  rows put in, and written again;
- each CSV file holding them is copied up to the month of its first changed
  row (where each month starts is in its resource, `co2db:months`) and
  written on from there (the rows of that month on, from the partitions);
- the daily summaries of the unit-days touched are computed again;
- every other file is hard-linked from the previous export, its size and
  sha256 taken from the previous package.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .export import files_intact
from .export_build import Built, Covered, Pieces, Pool, gathered
from .export_package import file_hash
from .export_read import Tally, unit_where
from .export_rows import EPOCH_COLUMN, TABLE_SCHEMA, repeat_close, unit_layout, unit_table
from .export_write import (
    BAD_TIME_CSV,
    DAILY_PARQUET,
    DAILY_SCHEMA,
    HEADER,
    NULL_PARTITION,
    Written,
    csv_groups,
    daily_rows,
    file_order,
    joined_keys,
    parquet_key,
    parquet_path,
    partition,
    sorted_rows,
    write_csv,
    write_csv_rows,
    write_daily,
    write_parquet,
)


def can_append(export_dir: Path, old: dict | None, base: str, version: tuple) -> bool:
    """True when the previous export can be brought up to date by appending."""
    generation, edits, _, last = version
    previous = (old or {}).get("co2db:readings")
    if generation is None or not isinstance(previous, dict) or old.get("co2db:base") != base:
        return False
    if previous.get("generation") != generation or previous.get("edits") != edits:
        return False
    if not isinstance(previous.get("last_rowid"), int) or previous["last_rowid"] > last:
        return False
    resources = old["resources"]
    if not all(
        isinstance(r, dict) and ("co2db:months" in r or not str(r.get("path")).startswith("csv/")) for r in resources
    ):
        return False  # an export from before CSV files said where their months start
    return files_intact(export_dir, old)


def _old_written(res: dict) -> Written:
    table = "daily" if res["path"].startswith("daily/") else "readings"
    months = tuple(tuple(m) for m in res.get("co2db:months", ()))
    return Written(res["path"], res["format"], res["rows"], res["description"], table, months, res.get("co2db:quoting"))


def _day_text(day: str, delta: int) -> str | None:
    try:
        return (date.fromisoformat(day) + timedelta(days=delta)).isoformat()
    except (ValueError, OverflowError):
        return None


def _row_keys(table: pa.Table) -> pa.Array:
    """unit, source file and line of each row, as one text."""
    return joined_keys(*(table.column(c) for c in ("unit_id", "source_file", "source_line")))


def changed_rows(pool: Pool, layout, cache: dict, prev_last: int, unit: str | None, added: pa.Table, tally: Tally):
    """(added rows, older rows whose flags the added ones change) of one unit, as export rows."""
    days = {d for d in pc.unique(added.column("date")).to_pylist() if d is not None}
    around = {t for d in days for t in (_day_text(d, -1), d, _day_text(d, 1)) if t is not None}
    touched = {t for d in days for t in (d, _day_text(d, 1)) if t is not None}
    where, params = unit_where(unit)
    older = pool.reader().records(
        f"{where} AND rowid <= ? AND date IN (SELECT value FROM json_each(?))",
        (*params, prev_last, json.dumps(sorted(around))),
        Tally(),
    )
    after = unit_table(layout, unit, pa.concat_tables([older, added]), cache, Tally())
    n = older.num_rows
    # Only repeat_time and close_pair look at other rows: the older rows' without the added ones.
    epoch = after.column(EPOCH_COLUMN)
    timed = epoch.is_valid().to_numpy(zero_copy_only=False)
    seconds = pc.fill_null(epoch, 0).to_numpy()
    repeat, close = repeat_close(seconds, timed)
    repeat_before, close_before = repeat_close(seconds[:n], timed[:n])
    moved = ((repeat[:n] != repeat_before) | (close[:n] != close_before)) & np.isin(
        older.column("date").to_numpy(zero_copy_only=False), list(touched)
    )
    new = after.slice(n)
    count_flags(new, tally)
    return new, after.slice(0, n).filter(pa.array(moved, pa.bool_()))


def count_flags(table: pa.Table, tally: Tally) -> None:
    """Rows and flags of export rows, into tally."""
    tally.rows += table.num_rows
    flags = pc.list_flatten(pc.split_pattern(table.column("qc_flags").drop_null(), ";"))
    for item in pc.value_counts(flags).to_pylist():
        tally.flags[item["values"]] += item["counts"]


def with_ts_text(table: pa.Table) -> pa.Table:
    """The rows with ts written from their epoch seconds (as the raw date and time give it)."""
    seconds = pc.cast(table.column(EPOCH_COLUMN), pa.timestamp("s", tz="UTC"))
    return table.set_column(0, "ts", pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ"))


def _from_parquet(path: Path, site: str | None) -> pa.Table:
    """A partition file of a site read back as export rows (TABLE_SCHEMA)."""
    table = pq.read_table(path)
    epoch = pc.cast(pc.cast(table.column("ts"), pa.timestamp("s", tz="UTC")), pa.int64())  # stored as ms
    ts = pa.nulls(table.num_rows, pa.string())  # the text only where a CSV file is written: with_ts_text
    columns = []
    for field in TABLE_SCHEMA:
        if field.name == "ts":
            columns.append(ts)
        elif field.name == EPOCH_COLUMN:
            columns.append(epoch)
        elif field.name == "site":
            columns.append(pa.nulls(table.num_rows, pa.string()) if site is None else pa.repeat(site, table.num_rows))
        else:
            columns.append(table.column(field.name))
    return pa.Table.from_arrays(columns, schema=TABLE_SCHEMA).combine_chunks()


class Partitions:
    """The Parquet partitions of the export being made: rewritten ones held
    new, the others read back from the previous export when needed."""

    def __init__(self, export_dir: Path, old: dict) -> None:
        self.export_dir = export_dir
        self.keys = {parquet_key(r["path"]) for r in old["resources"] if r["path"].startswith("parquet/")}
        # Folder name -> site (a long name is cut in its folder's name; the package has it whole).
        self.sites = {partition(site, None)[0]: site for site in old.get("co2db:sites", [])}
        self.old = set(self.keys)
        self.new: dict[tuple[str, str], pa.Table] = {}

    def table(self, key: tuple[str, str]) -> pa.Table:
        if key in self.new:
            return self.new[key]
        if key in self.old:
            return _from_parquet(self.export_dir / parquet_path(key), self.sites.get(key[0]))
        return TABLE_SCHEMA.empty_table()

    def put(self, key: tuple[str, str], table: pa.Table) -> None:
        self.keys.add(key)
        self.new[key] = table

    def of_site(self, site_dir: str, from_year: int | None) -> list[tuple[str, str]]:
        """The keys of one site folder, from a year on (None: every year and no year)."""
        keys = []
        for key in sorted(self.keys):
            year = key[1].split("=", 1)[1]
            if key[0] == site_dir and (from_year is None or (year != NULL_PARTITION and int(year) >= from_year)):
                keys.append(key)
        return keys

    def csv_rows(self, path: str, site_dir: str, from_year: int | None) -> pa.Table:
        """The rows of one CSV file held in a site folder's partitions, from a year on (unsorted)."""
        pieces = []
        for key in self.of_site(site_dir, from_year):
            table = self.table(key)
            mine = csv_groups(table).get(path)
            if mine is not None:
                pieces.append((table, mine))
        return gathered(pieces) if pieces else TABLE_SCHEMA.empty_table()


def _csv_site_dir(path: str, rows: pa.Table) -> str:
    """The site folder whose partitions hold a CSV file's rows."""
    return partition(rows.column("site")[0].as_py() if path.startswith("csv/site-") else None, None)[0]


def rewrite_csv(staging: Path, export_dir: Path, res: dict, rows: pa.Table, parts: Partitions) -> Written:
    """One CSV file: the previous bytes up to the month of its first changed
    row, then every row from that month on (from the partitions)."""
    path = res["path"]
    epoch = rows.column(EPOCH_COLUMN)
    first = pc.min(epoch).as_py() if path != BAD_TIME_CSV else None
    months = [tuple(m) for m in res.get("co2db:months", ())]
    if first is not None:
        month = str(np.datetime64(first, "s").astype("datetime64[M]"))
        kept = [m for m in months if m[0] <= month]
    else:
        kept = []
    start = kept.pop() if kept else None  # the month written again from its start
    site_dir = _csv_site_dir(path, rows)
    from_year = int(start[0][:4]) if start else None
    tail = parts.csv_rows(path, site_dir, from_year)
    if start is not None:
        month_start = int(np.datetime64(start[0], "M").astype("datetime64[s]").astype(np.int64))
        tail = tail.filter(pc.greater_equal(tail.column(EPOCH_COLUMN), month_start))
    tail = with_ts_text(sorted_rows(tail))
    offset, before = (start[1], start[2]) if start else (len(HEADER), 0)
    out = staging / path
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(export_dir / path, "rb") as src, open(out, "wb") as f:
        _copy(src, f, offset)
        try:
            marks = write_csv_rows(f, tail, res["co2db:quoting"], before)
        except pa.ArrowInvalid:
            marks = None  # a field now needs quotes: the whole file, quoted
    if marks is None:
        return write_csv(staging, path, with_ts_text(parts.csv_rows(path, site_dir, None)))
    return Written(
        path, "csv", before + tail.num_rows, res["description"], "readings", (*kept, *marks), res["co2db:quoting"]
    )


def _copy(src, dst, length: int) -> None:
    """The first length bytes of src into dst, in the kernel where it can."""
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(src.fileno(), dst.fileno(), length - done)
            if n == 0:
                break
            done += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
            raise  # a full disk, say: the run fails, the previous export stays
        src.seek(done)
        dst.seek(done)
        while done < length:
            chunk = src.read(min(1 << 20, length - done))
            if not chunk:
                break
            dst.write(chunk)
            done += len(chunk)
    if done != length:
        raise OSError(f"the previous export's file is shorter than its package says ({done} < {length} bytes)")
    dst.seek(length)


def append(staging: Path, export_dir: Path, old: dict, db: Path, conn, snapshot: tuple, tally: Tally):
    """Bring the previous export up to date in staging; returns (Built, stats, files kept)."""
    prev_last = old["co2db:readings"]["last_rowid"]
    layout = unit_layout(conn)
    cache: dict = {}
    pool = Pool(db, snapshot)
    parts = Partitions(export_dir, old)
    try:
        added = pool.reader().records("rowid > ?", (prev_last,), tally)
        added_units = pc.unique(added.column("unit_id")).to_pylist()

        def unit_changes(unit):
            mine = added.filter(
                pc.is_null(added.column("unit_id")) if unit is None else pc.equal(added.column("unit_id"), unit)
            )
            unit_tally = Tally()
            return (*changed_rows(pool, layout, cache, prev_last, unit, mine, unit_tally), unit_tally)

        results = pool.map(unit_changes, added_units)
        moved = [r[1] for r in results]
        for _, _, unit_tally in results:
            tally.add(unit_tally)
        changed = pa.concat_tables([TABLE_SCHEMA.empty_table(), *(r[0] for r in results), *moved]).combine_chunks()
        removed = _row_keys(pa.concat_tables([TABLE_SCHEMA.empty_table(), *moved]))
        pieces = Pieces()
        pieces.add(changed)

        def rewrite_partition(key):
            table = parts.table(key)
            if len(removed) and table.num_rows:
                table = table.filter(pc.invert(pc.is_in(_row_keys(table), value_set=removed)))
            return key, pa.concat_tables([table, gathered(pieces.parquet[key])]).combine_chunks()

        written: dict[str, tuple[Written, tuple]] = {}  # path -> (file, its size and hash)

        def hashed(w: Written) -> tuple[Written, tuple]:
            return w, file_hash(staging / w.path)  # in the writing thread, while the file is in the cache

        for key, table in pool.map(rewrite_partition, sorted(pieces.parquet)):
            parts.put(key, table)
        for w, stat in pool.map(lambda key: hashed(write_parquet(staging, key, parts.new[key])), sorted(parts.new)):
            written[w.path] = w, stat
        previous = {r["path"]: r for r in old["resources"]}

        def csv_file(path):
            rows = gathered(pieces.csv[path])
            if path in previous:
                return hashed(rewrite_csv(staging, export_dir, previous[path], rows, parts))
            return hashed(write_csv(staging, path, rows))

        for w, stat in pool.map(csv_file, sorted(pieces.csv)):
            written[w.path] = w, stat
        daily = _new_daily(export_dir, changed, parts)
    finally:
        pool.close()
    for w in write_daily(staging, daily):
        written[w.path] = hashed(w)
    files, stats, kept = _all_files(staging, export_dir, old, written)
    covered = Covered(units=set(old.get("co2db:units", [])), sites=set(old.get("co2db:sites", [])))
    covered.add(changed)
    span, units, sites = covered.described()
    temporal = old.get("temporal") or {}  # the ISO texts order as the times do
    starts = [s for s in (temporal.get("start"), span[0]) if s]
    ends = [e for e in (temporal.get("end"), span[1]) if e]
    span = (min(starts) if starts else None, max(ends) if ends else None)
    print(f"export: appended {tally.rows} rows, {len(removed)} older rows re-flagged", file=sys.stderr)
    return Built(files, span, units, sites), stats, kept


def _new_daily(export_dir: Path, changed: pa.Table, parts: Partitions) -> list[pa.Table]:
    """The daily summaries with those of the unit-days of changed rows computed again."""

    def keys(table: pa.Table) -> pa.Array:  # of timed rows
        days = pa.array(table.column(EPOCH_COLUMN).to_numpy() // 86400, pa.int32()).cast(pa.date32())  # floor
        return joined_keys(days, table.column("unit_id"), table.column("site"))

    timed = changed.filter(pc.is_valid(changed.column(EPOCH_COLUMN)))
    touched = pc.unique(keys(timed))
    old = pq.read_table(export_dir / DAILY_PARQUET)
    old = pa.Table.from_arrays(old.columns, schema=DAILY_SCHEMA)
    kept = pc.invert(pc.is_in(joined_keys(old.column("date"), old.column("unit_id"), old.column("site")), touched))
    summaries = [old.filter(kept)]
    for table in parts.new.values():
        table = table.filter(pc.is_valid(table.column(EPOCH_COLUMN)))
        summaries.append(daily_rows(table.filter(pc.is_in(keys(table), touched))))
    return summaries


def _all_files(staging: Path, export_dir: Path, old: dict, written: dict[str, tuple]):
    """Every file of the export: the written ones hashed, the others hard-linked
    from the previous export with its size and hash. (files, stats, kept)"""
    stats, files, kept = {}, [], 0
    for res in old["resources"]:
        if res["path"] in written:
            continue
        target = staging / res["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(export_dir / res["path"], target)
        except OSError:
            shutil.copy2(export_dir / res["path"], target)  # no hard links here: a copy, same bytes and mtime
        stats[res["path"]] = (res["bytes"], res["hash"])
        files.append(_old_written(res))
        kept += 1
    for path, (w, stat) in written.items():
        stats[path] = stat
        files.append(w)
    return sorted(files, key=file_order), stats, kept
