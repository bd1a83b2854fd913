"""The research dataset's files: which rows go in which file, and writing
the CSV files, the Parquet dataset and the daily summaries into a folder.

Every writer returns a Written per file (path relative to the export folder,
format, data rows, description); export_package.py describes them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .export_rows import COLUMNS, EPOCH_COLUMN

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
    # Readings CSV files: where each month's rows start, (YYYY-MM, byte offset,
    # rows before), and the quoting style: what an append rewrites from.
    months: tuple = ()
    quoting: str | None = None


# Longest spelling of a site or unit in a file or folder name (a name is at
# most 255 bytes): longer ones are cut and end in ~~ and 12 hex digits of the
# sha256 of the text, which keeps them apart.
NAME_BYTES = 200


def bounded(spelled: str, text: str) -> str:
    """An ASCII spelling of text (~XX or %XX escapes) cut to NAME_BYTES, never inside an escape."""
    if len(spelled) <= NAME_BYTES:
        return spelled
    cut = NAME_BYTES - 14
    while spelled[cut - 2] in "~%" or spelled[cut - 1] in "~%":
        cut -= 1
    return spelled[:cut] + "~~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def safe_name(text: str) -> str:
    """A file-name-safe spelling: characters other than [A-Za-z0-9_-] become
    ~XX (UTF-8 bytes in hex); reversible unless longer than NAME_BYTES."""
    spelled = "".join(ch if _SAFE.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode()) for ch in text)
    return bounded(spelled, text)


def csv_path(bad_time: bool, site: str | None, unit: str | None) -> str:
    """Which CSV file a row belongs in."""
    if bad_time:
        return BAD_TIME_CSV
    if site is not None:
        return f"csv/site-{safe_name(site)}.csv"
    return f"csv/unit-{safe_name(unit or 'none')}.csv"


def partition(site: str | None, year: str | None) -> tuple[str, str]:
    """(site=..., year=...) folder names of a row's Parquet partition."""
    return (
        "site=" + (bounded(quote(site, safe=""), site) if site is not None else NULL_PARTITION),
        "year=" + (year if year is not None else NULL_PARTITION),
    )


def _codes(column) -> tuple[np.ndarray, list]:
    """Per value, its rank among the column's distinct values in sorted order
    (null: -1); and those values sorted."""
    encoded = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    values = encoded.dictionary.to_pylist()
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values) + 1, dtype=np.int64)
    rank[order] = np.arange(len(values))
    rank[-1] = -1
    return rank[pc.fill_null(encoded.indices, len(values)).to_numpy().astype(np.int64)], [values[i] for i in order]


def base_order(table: pa.Table) -> np.ndarray:
    """Row indices by ts, then unit, then where the line is (the order within every file)."""
    epoch = pc.fill_null(table.column(EPOCH_COLUMN), 0).to_numpy()
    unit, _ = _codes(table.column("unit_id"))
    source, _ = _codes(table.column("source_file"))
    line = pc.fill_null(table.column("source_line"), 0).to_numpy()
    return np.lexsort((line, source, unit, epoch))


def _groups(keys: list[np.ndarray]):
    """(first row index, row indices) of each group of equal keys (per-row
    codes, one array per key), the groups in key order, each group's rows in
    row order."""
    code = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:  # codes >= -2: mixed into one integer, in key order
        code = code * (int(key.max(initial=0)) + 3) + (key + 2)
    order = np.argsort(code, kind="stable")
    if not len(order):
        return
    ordered = code[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    for begin, end in zip(starts, [*starts[1:], len(order)], strict=True):
        yield order[begin], order[begin:end]


def csv_groups(table: pa.Table) -> dict[str, np.ndarray]:
    """CSV path -> the row indices of its rows (in table order)."""
    bad = table.column(EPOCH_COLUMN).is_null().to_numpy(zero_copy_only=False)
    site, _ = _codes(table.column("site"))
    unit, _ = _codes(table.column("unit_id"))
    keys = [bad.astype(np.int64), np.where(bad, -2, site), np.where(bad | (site >= 0), -2, unit)]
    named = {}
    for first, rows in _groups(keys):
        row = table.slice(first, 1).to_pylist()[0]
        named[csv_path(bool(bad[first]), row["site"], row["unit_id"])] = rows
    return named


def partition_groups(table: pa.Table) -> dict[tuple[str, str], np.ndarray]:
    """(site=..., year=...) -> the row indices of its rows (in table order)."""
    site, _ = _codes(table.column("site"))
    epoch = table.column(EPOCH_COLUMN)
    year = pc.fill_null(pc.year(pc.cast(epoch, pa.timestamp("s"))), -1).to_numpy().astype(np.int64)
    named = {}
    for first, rows in _groups([site, year]):
        y = int(year[first])  # from the epoch seconds, not the ts text (which read-back rows lack)
        named[partition(table.column("site")[int(first)].as_py(), f"{y:04d}" if y >= 0 else None)] = rows
    return named


def _describe_csv(path: str, first: dict) -> str:
    if path == BAD_TIME_CSV:
        return "readings whose date or time is not valid (flag bad_time), of every unit"
    if first["site"] is not None:
        return f"readings of every unit that stood at site {first['site']}, by ts then unit"
    return f"readings of unit {first['unit_id']} in no deployment period (or one without a site), by ts"


def _number_text(column) -> pa.Array:
    """Numbers as Python's csv module writes them (repr), each distinct value formatted once."""
    encoded = pc.dictionary_encode(column)
    texts = pa.array([repr(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pa.DictionaryArray.from_arrays(encoded.indices, texts).dictionary_decode()


def csv_text_table(table: pa.Table, columns=COLUMNS) -> pa.Table:
    """The table as the CSV files write it: those columns only, numbers formatted."""
    texts = []
    for name, kind, _, _ in columns:
        column = table.column(name).combine_chunks()
        texts.append(_number_text(column) if kind == "number" else column)
    return pa.table(texts, names=[c[0] for c in columns])


def header(columns=COLUMNS) -> bytes:
    return (",".join(c[0] for c in columns) + "\n").encode()


HEADER = header()
QUOTING = ("none", "needed")  # only fields that need it, when none needs it; else every text field


def sorted_rows(table: pa.Table) -> pa.Table:
    """The rows in the order of every file (base_order)."""
    return table.take(base_order(table))


def month_starts(table: pa.Table) -> list[tuple[str, int]]:
    """(YYYY-MM, first row) of each month of a table sorted by ts (none for bad_time rows)."""
    if EPOCH_COLUMN not in table.column_names or table.column(EPOCH_COLUMN).null_count:
        return []
    epoch = table.column(EPOCH_COLUMN)
    months = epoch.to_numpy().astype("datetime64[s]").astype("datetime64[M]")
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]]) if len(months) else []
    return [(str(months[i]), int(i)) for i in starts]


def write_csv_rows(f, table: pa.Table, quoting: str, rows_before: int = 0, columns=COLUMNS) -> list:
    """Write sorted rows at f's position (no header), month by month; return
    the months' (YYYY-MM, byte offset, rows before). Raises pa.ArrowInvalid
    when quoting is "none" and a field needs quotes."""
    text = csv_text_table(table, columns)
    options = pacsv.WriteOptions(include_header=False, quoting_style=quoting)
    starts = month_starts(table) or [("", 0)]
    marks = []
    for (month, begin), (_, end) in zip(starts, [*starts[1:], ("", table.num_rows)], strict=True):
        if month:
            marks.append((month, f.tell(), rows_before + begin))
        if end > begin:
            pacsv.write_csv(text.slice(begin, end - begin), f, options)
    return marks


def write_csv_file(out: Path, table: pa.Table, columns=COLUMNS) -> tuple[str, list]:
    """UTF-8, header, comma, RFC 4180 quoting (the first style of QUOTING
    that can write every field), \n line ends; NULL is empty. Sorted rows;
    returns (quoting style, months)."""
    with open(out, "wb") as f:
        for style in QUOTING:
            f.write(header(columns))
            try:
                return style, write_csv_rows(f, table, style, columns=columns)
            except pa.ArrowInvalid:
                f.seek(0)
                f.truncate()
    raise AssertionError("the last quoting style writes any field")


def write_csv(folder: Path, path: str, table: pa.Table) -> Written:
    """One CSV file of a csv_groups path: its rows, sorted."""
    out = folder / path
    out.parent.mkdir(parents=True, exist_ok=True)
    table = sorted_rows(table)
    style, months = write_csv_file(out, table)
    first = table.slice(0, 1).to_pylist()[0]
    return Written(path, "csv", table.num_rows, _describe_csv(path, first), "readings", tuple(months), style)


def arrow_schema(columns=COLUMNS) -> pa.Schema:
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


# The daily summaries in memory (arrow_schema's, without the descriptions).
DAILY_SCHEMA = pa.schema([(f.name, f.type) for f in arrow_schema(DAILY_COLUMNS)])

# The readings' Parquet files leave out `site`: its folder name gives it
# (readers add it from there, and refuse a file column of the same name).
PARQUET_COLUMNS = tuple(c for c in COLUMNS if c[0] != "site")
_PARQUET_SCHEMA = arrow_schema(PARQUET_COLUMNS)


def parquet_table(table: pa.Table) -> pa.Table:
    """The table as the Parquet files hold it: ts a UTC timestamp, no site."""
    columns = []
    for field in _PARQUET_SCHEMA:
        if field.name == "ts":
            columns.append(pc.cast(table.column(EPOCH_COLUMN), pa.int64()).cast(field.type))
        else:
            columns.append(table.column(field.name))
    return pa.Table.from_arrays(columns, schema=_PARQUET_SCHEMA)


def file_order(w: Written) -> tuple:
    """The order of the files in the package: CSV by path, partitions by key, the daily files."""
    if w.path.startswith("csv/"):
        return (0, w.path)
    if w.path.startswith("parquet/"):
        return (1, *parquet_key(w.path))
    return (2, w.path)


def parquet_path(key: tuple[str, str]) -> str:
    return f"parquet/{key[0]}/{key[1]}/part-0.parquet"


def parquet_key(path: str) -> tuple[str, str]:
    """The (site=..., year=...) key of a parquet_path."""
    _, site_dir, year_dir, _ = path.split("/")
    return site_dir, year_dir


def write_parquet(folder: Path, key: tuple[str, str], table: pa.Table) -> Written:
    """The part file of one site and year (a partition_groups key): its rows, sorted."""
    path = parquet_path(key)
    out = folder / path
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(parquet_table(sorted_rows(table)), out, compression="zstd")
    site, year = key[0].split("=", 1)[1], key[1].split("=", 1)[1]
    description = f"readings of site {site}, year {year} ({NULL_PARTITION}: none)"
    return Written(path, "parquet", table.num_rows, description, "readings")


def daily_rows(table: pa.Table) -> pa.Table:
    """Per unit, UTC day and period (site, status, tier): counts, and CO2 and
    temperature statistics over the unflagged readings (DAILY_SCHEMA). bad_time
    rows have no day. Of any export rows; write_daily sorts."""
    timed = sorted_rows(table.filter(pc.is_valid(table.column(EPOCH_COLUMN))))  # sums in one order, always
    unflagged = pc.is_null(timed.column("qc_flags"))
    null = pa.scalar(None, pa.float64())
    grouping = pa.table(
        {
            "day": pa.array(timed.column(EPOCH_COLUMN).to_numpy() // 86400),  # floor: UTC days
            "unit_id": timed.column("unit_id"),
            "site": timed.column("site"),
            "status": timed.column("status"),
            "tier": timed.column("tier"),
            "flagged": pc.cast(pc.invert(unflagged), pa.int64()),
            "co2": pc.if_else(unflagged, timed.column("co2_mean_ppm"), null),
            "temp": pc.if_else(unflagged, timed.column("temp_c"), null),
        }
    )
    keys = ["day", "unit_id", "site", "status", "tier"]
    summed = grouping.group_by(keys, use_threads=False).aggregate(
        [
            ("flagged", "count", pc.CountOptions("all")),
            ("flagged", "sum"),
            *((c, agg) for c in ("co2", "temp") for agg in ("sum", "count", "min", "max")),
        ]
    )
    day = pc.cast(pc.cast(summed.column("day"), pa.int32()), pa.date32())
    columns = [day, *(summed.column(k) for k in keys[1:]), summed.column("flagged_count"), summed.column("flagged_sum")]
    for name, digits in (("co2", 1), ("temp", 3)):
        means = [
            round(total / count, digits) if count else None  # Python's rounding of the exact double
            for total, count in zip(
                summed.column(f"{name}_sum").to_pylist(), summed.column(f"{name}_count").to_pylist(), strict=True
            )
        ]
        columns += [pa.array(means, pa.float64()), summed.column(f"{name}_min"), summed.column(f"{name}_max")]
    return pa.Table.from_arrays(columns, schema=DAILY_SCHEMA)


def joined_keys(*columns) -> pa.Array:
    """The values of columns, row by row, as one text each (joined with \x00, NULL as \x01)."""
    texts = [pc.cast(c, pa.string()) for c in columns]
    return pc.binary_join_element_wise(*texts, "\x00", null_handling="replace", null_replacement="\x01")


DAILY_CSV, DAILY_PARQUET = "daily/daily.csv", "daily/daily.parquet"


def write_daily(folder: Path, summaries: list[pa.Table]) -> list[Written]:
    """DAILY_CSV and DAILY_PARQUET, the same rows, by day, unit, site, status, tier."""
    table = pa.concat_tables([DAILY_SCHEMA.empty_table(), *summaries])
    order = [(c[0], "ascending") for c in DAILY_COLUMNS[:5]]
    table = table.take(pc.sort_indices(table, sort_keys=order))  # empty values last
    (folder / "daily").mkdir(parents=True, exist_ok=True)
    write_csv_file(folder / DAILY_CSV, table, columns=DAILY_COLUMNS)
    typed = pa.Table.from_arrays(table.columns, schema=arrow_schema(DAILY_COLUMNS))
    pq.write_table(typed, folder / DAILY_PARQUET, compression="zstd")
    text = "daily summaries per unit, UTC day and deployment period"
    return [
        Written(DAILY_CSV, "csv", table.num_rows, text, "daily"),
        Written(DAILY_PARQUET, "parquet", table.num_rows, text, "daily"),
    ]
