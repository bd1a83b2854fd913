"""The research dataset's rows: one per co2_readings row, with its time, its
deployment period and its quality flags, exactly as DATA-FORMATS.md ("The
research dataset (export)") fixes them.

No file is written here (export_write.py does that) and no SQL (export_read.py
reads a unit's records): this module computes, per unit, the table of COLUMNS
(plus EPOCH_COLUMN, the seconds of ts) with pyarrow and numpy, column by
column, never row by row.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .deployments import Layout, build_layout, load_periods
from .export_read import CO2_NAMES, RAW_REALS, Tally

# (name, type, unit, description). Types are Table Schema types; the Parquet
# types follow from them (export_write.py).
COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("ts", "datetime", None, "date and time of the reading, UTC, from the unit's clock; empty when bad_time"),
    ("unit_id", "string", None, "hardware ID of the unit (co2unit-<12 hex digits>)"),
    ("nickname", "string", None, "the unit's nickname as it wrote it; empty when unset or misconfigured"),
    ("site", "string", None, "deployment site of the period containing ts; empty when none"),
    ("status", "string", None, "status of that period: deployed, en_route or lab_check; empty when none"),
    ("tier", "integer", None, "tier of that period (plot order; low tiers are lab units); empty when none"),
    ("temp_c", "number", "°C", "temperature"),
    ("flash_count", "integer", None, "camera flashes seen since the last reading"),
    ("co2_mean_ppm", "number", "ppm", "mean of the non-empty values of the ten, rounded to 0.1"),
    ("co2_median_ppm", "number", "ppm", "median of the non-empty values of the ten"),
    ("co2_min_ppm", "integer", "ppm", "smallest of the non-empty values of the ten"),
    ("co2_max_ppm", "integer", "ppm", "largest of the non-empty values of the ten"),
    *((f"co2_{i:02d}_ppm", "integer", "ppm", f"CO2 reading {i} of the ten taken in a row") for i in range(1, 11)),
    ("co2_output_filtered", "number", None, "raw sensor field: CO2 output, filtered (newer firmware only)"),
    ("led_normalized_filtered", "number", None, "raw sensor field: LED normalized, filtered (newer firmware only)"),
    ("led_signal_filtered", "number", None, "raw sensor field: LED signal, filtered (newer firmware only)"),
    ("zero_point", "number", None, "raw sensor field: zero point (newer firmware only)"),
    ("sensor_temp_filtered", "number", "°C", "raw sensor field: sensor temperature, filtered (newer firmware only)"),
    ("qc_flags", "string", None, "quality flags that apply, in the order of the flag list, joined with ';'"),
    ("source_file", "string", None, "the readings file, relative to the data folder"),
    ("source_line", "integer", None, "1-based line number in source_file"),
)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
# The computed tables hold COLUMNS, then this one: the epoch seconds of ts (null when bad_time).
EPOCH_COLUMN = "_epoch"

# The flags in their order, with what they mean.
FLAG_LIST: tuple[tuple[str, str], ...] = (
    ("bad_time", "date or time is empty or not a valid date and time of day; ts is empty, no period"),
    ("sensor_limit", "temp_c is 85.0, or a CO2 value is 0 or 200010 (power-on values: kept, not to be trusted)"),
    ("missing", "temp_c or one of the ten CO2 values is empty"),
    ("repeat_time", "another row of the same unit has the same ts (every such row is flagged)"),
    ("close_pair", "the unit's previous distinct ts is less than 120 s earlier (extra reading after a reboot)"),
    ("not_deployed", "status is not deployed (en route, lab check, or in no period)"),
)
SENSOR_LIMIT_TEMP = 85.0
SENSOR_LIMIT_CO2 = (0, 200010)
CLOSE_PAIR_SECONDS = 120

_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)")
_EPOCH_DAY = date(1970, 1, 1)
_TYPES = {"datetime": pa.string(), "string": pa.string(), "integer": pa.int64(), "number": pa.float64()}
TABLE_SCHEMA = pa.schema([(name, _TYPES[kind]) for name, kind, _, _ in COLUMNS] + [(EPOCH_COLUMN, pa.int64())])
# qc_flags text of every combination of the six flags (bit i: FLAG_LIST[i]).
_FLAG_TEXTS = pa.array([";".join(n for i, (n, _) in enumerate(FLAG_LIST) if code >> i & 1) for code in range(64)])


def _day_seconds(text: str | None) -> int | None:
    if text is None or not _DATE.fullmatch(text):
        return None
    try:
        return (date.fromisoformat(text) - _EPOCH_DAY).days * 86400
    except ValueError:
        return None


def _time_seconds(text: str | None) -> int | None:
    m = _TIME.fullmatch(text) if text is not None else None
    if not m:
        return None
    h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59:
        return None
    return h * 3600 + mi * 60 + s


def _seconds_of(column: pa.Array, parse, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, valid) per value of a date or time column: each distinct text parsed once."""
    encoded = pc.dictionary_encode(column)
    texts = encoded.dictionary.to_pylist()
    parsed = [cache[t] if t in cache else cache.setdefault(t, parse(t)) for t in texts] + [None]
    values = np.array([0 if p is None else p for p in parsed], dtype=np.int64)
    valid = np.array([p is not None for p in parsed], dtype=bool)
    index = pc.fill_null(encoded.indices, len(texts)).to_numpy().astype(np.int64)
    return values[index], valid[index]


def ts_text(seconds: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floats(column) -> np.ndarray:
    """A numeric arrow column as float64 numpy, NaN for null."""
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _masked(values: np.ndarray, empty: np.ndarray, kind) -> pa.Array:
    return pa.array(values.astype(kind.to_pandas_dtype()), type=kind, mask=empty)


def co2_columns(ten: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """Mean (rounded to 0.1), median, min and max of each row's non-NaN values
    of the ten (an n x 10 float array); null when all ten are NaN. The
    median of an even count is the mean of the two middle values; the mean is
    Python's round(sum / count, 1) of each distinct (sum, count)."""
    present = ~np.isnan(ten)
    count = present.sum(axis=1)
    empty = count == 0
    ordered = np.sort(ten, axis=1)  # NaN last
    rows = np.arange(len(ten))
    last = np.maximum(count - 1, 0)
    mid = count // 2
    upper = ordered[rows, np.minimum(mid, 9)]
    lower = ordered[rows, np.maximum(mid - 1, 0)]
    median = np.where(count % 2 == 1, upper, (lower + upper) / 2)
    total = np.where(present, ten, 0.0).sum(axis=1)  # integers: exact
    key = total.astype(np.int64) * 16 + count
    distinct, inverse = np.unique(key, return_inverse=True)
    means = np.array([round((k >> 4) / (k & 15), 1) if k & 15 else 0.0 for k in distinct.tolist()], dtype=np.float64)
    return (
        _masked(means[inverse.reshape(-1)], empty, pa.float64()),
        _masked(median, empty, pa.float64()),
        _masked(np.where(empty, 0, ordered[:, 0]), empty, pa.int64()),
        _masked(np.where(empty, 0, ordered[rows, last]), empty, pa.int64()),
    )


def repeat_close(epoch: np.ndarray, timed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """repeat_time and close_pair of one unit's rows (only timed rows can have them)."""
    repeat = np.zeros(len(epoch), dtype=bool)
    close = np.zeros(len(epoch), dtype=bool)
    where = np.flatnonzero(timed)
    if not len(where):
        return repeat, close
    order = where[np.argsort(epoch[where], kind="stable")]
    ordered = epoch[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    distinct = ordered[starts]
    repeat[order] = np.bincount(group)[group] > 1
    close[order] = np.r_[False, np.diff(distinct) < CLOSE_PAIR_SECONDS][group]
    return repeat, close


def unit_table(layout: Layout, unit: str | None, raw: pa.Table, cache: dict, tally: Tally) -> pa.Table:
    """The export rows (TABLE_SCHEMA) of one unit's raw records (export_read.RAW_SCHEMA)."""
    n = raw.num_rows
    day, day_ok = _seconds_of(raw.column("date").combine_chunks(), _day_seconds, cache.setdefault("d", {}))
    tod, tod_ok = _seconds_of(raw.column("time").combine_chunks(), _time_seconds, cache.setdefault("t", {}))
    timed = day_ok & tod_ok
    epoch = day + tod
    ts = pc.binary_join_element_wise(raw.column("date"), "T", raw.column("time"), "Z", "")
    ts = pc.if_else(pa.array(timed), ts, pa.scalar(None, pa.string()))
    periods, index = layout.periods_at(unit, np.where(timed, epoch, 0) * 1_000_000) if unit is not None else ([], None)
    index = np.where(timed, index, -1) if index is not None else np.full(n, -1)
    pick = np.where(index < 0, len(periods), index)
    site = pa.array([p.site for p in periods] + [None], pa.string()).take(pick)
    status = pa.array([p.given_status for p in periods] + [None], pa.string()).take(pick)
    tier = pa.array([p.tier for p in periods] + [None], pa.int64()).take(pick)
    deployed = np.array([p.given_status == "deployed" for p in periods] + [False])[pick]
    temp = _floats(raw.column("temp"))
    ten = np.column_stack([_floats(raw.column(name)) for name in CO2_NAMES]) if n else np.zeros((0, 10))
    repeat, close = repeat_close(epoch, timed)
    bits = (
        ~timed,
        (temp == SENSOR_LIMIT_TEMP) | np.isin(ten, SENSOR_LIMIT_CO2).any(axis=1),
        np.isnan(temp) | np.isnan(ten).any(axis=1),
        repeat,
        close,
        ~deployed,
    )
    code = np.zeros(n, dtype=np.int8)
    for i, ((name, _), bit) in enumerate(zip(FLAG_LIST, bits, strict=True)):
        code |= bit.astype(np.int8) << i
        tally.flags[name] += int(bit.sum())
    flags = pa.DictionaryArray.from_arrays(pa.array(code, mask=code == 0), _FLAG_TEXTS).dictionary_decode()
    tally.rows += n
    columns = [
        ts,
        raw.column("unit_id"),
        raw.column("nickname"),
        site,
        status,
        tier,
        raw.column("temp"),
        raw.column("flash_count"),
        *co2_columns(ten),
        *(raw.column(name) for name in CO2_NAMES),
        *(raw.column(name) for name in RAW_REALS),
        flags,
        raw.column("source_file"),
        raw.column("line_no"),
        pa.array(epoch, mask=~timed),
    ]
    return pa.Table.from_arrays(
        [pa.chunked_array([c]) if isinstance(c, pa.Array) else c for c in columns], schema=TABLE_SCHEMA
    )


def unit_layout(conn: sqlite3.Connection) -> Layout:
    """The deployment layout the rows are attributed with."""
    return build_layout(load_periods(conn))
