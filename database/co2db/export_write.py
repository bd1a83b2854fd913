"""The research dataset's files: which rows go in which file, and writing
the CSV files, the Parquet dataset and the daily summaries into a folder.

Every writer returns a Written per file (path relative to the export folder,
format, data rows, description); export_package.py describes them.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from urllib.parse import quote

from .export_rows import (
    CO2_MEAN,
    COLUMNS,
    EPOCH,
    FLAGS,
    SITE,
    SOURCE_FILE,
    SOURCE_LINE,
    STATUS,
    TEMP,
    TIER,
    TS,
    UNIT,
)

# The partition value of rows without a site (readings in no period, or in a
# period without a site) and without a year (bad_time): Hive's own name for a
# null partition, which pyarrow and DuckDB read back as null.
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
BAD_TIME_CSV = "csv/bad_time.csv"
_SAFE = re.compile(r"[A-Za-z0-9_-]")

# Columns of the daily summaries: (name, type, unit, description).
DAILY_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("date", "date", None, "UTC day of the readings"),
    ("unit_id", "string", None, "hardware ID of the unit"),
    ("site", "string", None, "deployment site of the readings (a day a unit moved has a row per period)"),
    ("status", "string", None, "status of their period; empty when none"),
    ("tier", "integer", None, "tier of their period; empty when none"),
    ("n_readings", "integer", None, "readings that day in this period"),
    ("n_flagged", "integer", None, "of them, readings with any qc flag"),
    ("co2_mean_ppm", "number", "ppm", "mean of co2_mean_ppm over the unflagged readings, rounded to 0.1"),
    ("co2_min_ppm", "number", "ppm", "smallest co2_mean_ppm of the unflagged readings"),
    ("co2_max_ppm", "number", "ppm", "largest co2_mean_ppm of the unflagged readings"),
    ("temp_mean_c", "number", "°C", "mean temperature of the unflagged readings, rounded to 0.001"),
    ("temp_min_c", "number", "°C", "lowest temperature of the unflagged readings"),
    ("temp_max_c", "number", "°C", "highest temperature of the unflagged readings"),
)


@dataclass(frozen=True)
class Written:
    path: str  # POSIX, relative to the export folder
    format: str  # csv or parquet
    rows: int
    description: str
    table: str  # readings or daily: which schema


def safe_name(text: str) -> str:
    """A file-name-safe, reversible spelling: characters other than
    [A-Za-z0-9_-] become ~XX (UTF-8 bytes in hex)."""
    return "".join(ch if _SAFE.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode()) for ch in text)


def csv_path(row: tuple) -> str:
    """Which CSV file a row belongs in."""
    if row[TS] is None:
        return BAD_TIME_CSV
    if row[SITE] is not None:
        return f"csv/site-{safe_name(row[SITE])}.csv"
    return f"csv/unit-{safe_name(row[UNIT] or 'none')}.csv"


def csv_key(row: tuple) -> tuple:
    """What decides csv_path (cheap, for grouping millions of rows)."""
    return (row[TS] is None, row[SITE], row[UNIT] if row[SITE] is None else None)


# By ts, then unit, then where the line is. Within one file either every
# row has a ts or none has (bad_time), so None never meets an integer.
sort_key = itemgetter(EPOCH, UNIT, SOURCE_FILE, SOURCE_LINE)


def partition(row: tuple) -> tuple[str, str]:
    """(site=..., year=...) folder names of a row's Parquet partition."""
    site = row[SITE]
    year = row[TS][:4] if row[TS] is not None else None
    return (
        "site=" + (quote(site, safe="") if site is not None else NULL_PARTITION),
        "year=" + (year if year is not None else NULL_PARTITION),
    )


def partition_key(row: tuple) -> tuple:
    return (row[SITE], row[TS][:4] if row[TS] is not None else None)


def group_rows(rows: list[tuple], key, name) -> dict:
    """Rows grouped by name(first row) over the cheap key(row), each group sorted."""
    grouped: dict = defaultdict(list)
    for row in rows:
        grouped[key(row)].append(row)
    named = {}
    for part in grouped.values():
        part.sort(key=sort_key)
        named[name(part[0])] = part
    return named


def _describe_csv(path: str, rows: list[tuple]) -> str:
    if path == BAD_TIME_CSV:
        return "readings whose date or time is not valid (flag bad_time), of every unit"
    first = rows[0]
    if first[SITE] is not None:
        return f"readings of every unit that stood at site {first[SITE]}, by ts then unit"
    return f"readings of unit {first[UNIT]} in no deployment period (or one without a site), by ts"


def write_csv(folder: Path, grouped: dict[str, list[tuple]]) -> list[Written]:
    """One CSV per file key: UTF-8, header, comma, RFC 4180 quoting, \\n."""
    written = []
    names = [c[0] for c in COLUMNS]
    width = len(COLUMNS)
    for path, rows in sorted(grouped.items()):
        out = folder / path
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(names)
            writer.writerows(row[:width] for row in rows)
        written.append(Written(path, "csv", len(rows), _describe_csv(path, rows), "readings"))
    return written


def arrow_schema(columns=COLUMNS):
    import pyarrow as pa

    types = {
        "datetime": pa.timestamp("s", tz="UTC"),
        "date": pa.date32(),
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
    }
    fields = []
    for name, kind, unit, description in columns:
        meta = {"description": description, **({"unit": unit} if unit else {})}
        fields.append(pa.field(name, types[kind], metadata=meta))
    return pa.schema(fields)


# The readings' Parquet files leave out `site`: its folder name gives it
# (readers add it from there, and refuse a file column of the same name).
PARQUET_COLUMNS = tuple(c for c in COLUMNS if c[0] != "site")


def _arrow_table(rows: list[tuple], columns, epoch_column: int | None, skip: int | None = None):
    """A pyarrow table of the rows; column 0 from epoch_column when given; column skip left out."""
    import pyarrow as pa

    schema = arrow_schema(columns)
    sources = [i for i in range(len(columns) + (skip is not None)) if i != skip]
    if epoch_column is not None:
        sources[0] = epoch_column
    transposed = list(zip(*rows, strict=True)) if rows else [()] * (max(sources) + 1)
    arrays = [pa.array(transposed[s], type=f.type) for s, f in zip(sources, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(folder: Path, grouped: dict[tuple[str, str], list[tuple]]) -> list[Written]:
    """One part file per site and year, hive-style folders."""
    import pyarrow.parquet as pq

    written = []
    for (site_dir, year_dir), rows in sorted(grouped.items()):
        path = f"parquet/{site_dir}/{year_dir}/part-0.parquet"
        out = folder / path
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_arrow_table(rows, PARQUET_COLUMNS, EPOCH, SITE), out, compression="zstd")
        site, year = site_dir.split("=", 1)[1], year_dir.split("=", 1)[1]
        description = f"readings of site {site}, year {year} ({NULL_PARTITION}: none)"
        written.append(Written(path, "parquet", len(rows), description, "readings"))
    return written


def daily_rows(rows: list[tuple]) -> list[tuple]:
    """Per unit, UTC day and period (site, status, tier): counts, and CO2 and
    temperature statistics over the unflagged readings. bad_time rows have no day."""
    days: dict[tuple, list] = {}
    for row in rows:
        if row[TS] is None:
            continue
        key = (row[TS][:10], row[UNIT], row[SITE], row[STATUS], row[TIER])
        acc = days.get(key)
        if acc is None:
            acc = days[key] = [0, 0, [], []]
        acc[0] += 1
        if row[FLAGS] is not None:
            acc[1] += 1
            continue
        if row[CO2_MEAN] is not None:
            acc[2].append(row[CO2_MEAN])
        if row[TEMP] is not None:
            acc[3].append(row[TEMP])
    out = []
    for key in sorted(days, key=lambda k: (k[0], k[1] or "", k[2] or "", k[3] or "")):
        n, flagged, co2, temp = days[key]
        out.append((*key, n, flagged, *_stats(co2, 1), *_stats(temp, 3)))
    return out


def _stats(values: list[float], digits: int) -> tuple:
    if not values:
        return None, None, None
    return round(sum(values) / len(values), digits), min(values), max(values)


def write_daily(folder: Path, rows: list[tuple]) -> list[Written]:
    """daily/daily.csv and daily/daily.parquet, the same rows."""
    import datetime as dt

    import pyarrow.parquet as pq

    summaries = daily_rows(rows)
    (folder / "daily").mkdir(parents=True, exist_ok=True)
    with open(folder / "daily/daily.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([c[0] for c in DAILY_COLUMNS])
        writer.writerows(summaries)
    typed = [(dt.date.fromisoformat(r[0]), *r[1:]) for r in summaries]
    pq.write_table(_arrow_table(typed, DAILY_COLUMNS, None), folder / "daily/daily.parquet", compression="zstd")
    text = "daily summaries per unit, UTC day and deployment period"
    return [
        Written("daily/daily.csv", "csv", len(summaries), text, "daily"),
        Written("daily/daily.parquet", "parquet", len(summaries), text, "daily"),
    ]
