"""The research dataset's rows: one per co2_readings row, with its time, its
deployment period and its quality flags, exactly as DATA-FORMATS.md ("The
research dataset (export)") fixes them.

No file is written here (export_write.py does that): this module reads the
database and yields rows as tuples in the order of COLUMNS.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from .deployments import Layout, build_layout, load_periods
from .readonly import table_exists

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
# A row tuple holds COLUMNS, then the epoch seconds of ts (None when bad_time).
EPOCH = len(COLUMNS)
TS, UNIT, NICK, SITE, STATUS, TIER, TEMP = range(7)
CO2_MEAN = COLUMN_NAMES.index("co2_mean_ppm")
CO2_FIRST = COLUMN_NAMES.index("co2_01_ppm")
FLAGS = COLUMN_NAMES.index("qc_flags")
SOURCE_FILE = COLUMN_NAMES.index("source_file")
SOURCE_LINE = COLUMN_NAMES.index("source_line")

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
SENSOR_LIMIT_CO2 = frozenset({0, 200010})
CLOSE_PAIR_SECONDS = 120

_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)")
_EPOCH_DAY = date(1970, 1, 1)

SOURCE_SQL = (
    "SELECT unit_id, nickname, date, time, temp, flash_count,"
    " co2_01, co2_02, co2_03, co2_04, co2_05, co2_06, co2_07, co2_08, co2_09, co2_10,"
    " co2_output_filtered, led_normalized_filtered, led_signal_filtered, zero_point,"
    " sensor_temp_filtered, source_file, line_no FROM co2_readings"
)


@dataclass
class Tally:
    """What the row computation met: rows, flags, values it could not use."""

    rows: int = 0
    flags: Counter = field(default_factory=Counter)
    unusable: Counter = field(default_factory=Counter)  # column -> values taken as empty


class Clock:
    """Validates date and time text and turns it into epoch seconds (cached)."""

    def __init__(self) -> None:
        self._days: dict[str, int | None] = {}
        self._times: dict[str, int | None] = {}

    def seconds(self, day: object, time: object) -> int | None:
        """Epoch seconds of a YYYY-MM-DD date and HH:MM:SS time; None when either is not valid."""
        if not isinstance(day, str) or not isinstance(time, str):
            return None
        d = self._days.get(day, -1)
        if d == -1:
            d = self._days[day] = _day_seconds(day)
        t = self._times.get(time, -1)
        if t == -1:
            t = self._times[time] = _time_seconds(time)
        if d is None or t is None:
            return None
        return d + t


def _day_seconds(text: str) -> int | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return (date.fromisoformat(text) - _EPOCH_DAY).days * 86400
    except ValueError:
        return None


def _time_seconds(text: str) -> int | None:
    m = _TIME.fullmatch(text)
    if not m:
        return None
    h, mi, s = (int(g) for g in m.groups())
    if h > 23 or mi > 59 or s > 59:
        return None
    return h * 3600 + mi * 60 + s


def as_number(value: object, column: str, tally: Tally) -> float | None:
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    tally.unusable[column] += 1  # text SQLite could not make a number of
    return None


def as_integer(value: object, column: str, tally: Tally) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    tally.unusable[column] += 1  # text, or a fraction in an integer column
    return None


def co2_stats(values: list[int | None]) -> tuple[float | None, float | None, int | None, int | None]:
    """(mean rounded to 0.1, median, min, max) of the non-NULL values; all None when none."""
    present = sorted(v for v in values if v is not None) if None in values else sorted(values)
    n = len(present)
    if not n:
        return None, None, None, None
    mid = n // 2
    median = float(present[mid]) if n % 2 else (present[mid - 1] + present[mid]) / 2
    return round(sum(present) / n, 1), median, present[0], present[-1]


def ts_text(seconds: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


_RAW_NAMES = COLUMN_NAMES[CO2_FIRST + 10 : CO2_FIRST + 15]
_CO2_NAMES = tuple(f"co2_{i:02d}" for i in range(1, 11))
_EPOCH_DATETIME = datetime(1970, 1, 1)


def unit_rows(layout: Layout, records: list[tuple], clock: Clock, tally: Tally) -> list[tuple]:
    """The export rows of one unit's co2_readings records (any order).

    Hot loop (millions of rows): plain types are passed through without a call."""
    seconds = [clock.seconds(rec[2], rec[3]) for rec in records]
    counts = Counter(s for s in seconds if s is not None)
    timed = sorted(counts)
    close = {b for a, b in zip(timed, timed[1:], strict=False) if b - a < CLOSE_PAIR_SECONDS}
    limit_co2 = SENSOR_LIMIT_CO2
    rows = []
    append = rows.append
    for secs, rec in zip(seconds, records, strict=True):
        unit_id = rec[0]
        temp = rec[4]
        if temp is not None and type(temp) is not float:
            temp = as_number(temp, "temp", tally)
        flash = rec[5]
        if flash is not None and type(flash) is not int:
            flash = as_integer(flash, "flash_count", tally)
        co2 = list(rec[6:16])
        for i, v in enumerate(co2):
            if v is not None and type(v) is not int:
                co2[i] = as_integer(v, _CO2_NAMES[i], tally)
        raw = list(rec[16:21])
        for i, v in enumerate(raw):
            if v is not None and type(v) is not float:
                raw[i] = as_number(v, _RAW_NAMES[i], tally)
        flags = []
        if secs is None:
            flags.append("bad_time")
            period = None
        else:
            period = layout.period_at(unit_id, _EPOCH_DATETIME + timedelta(seconds=secs))
        if temp == SENSOR_LIMIT_TEMP or not limit_co2.isdisjoint(co2):
            flags.append("sensor_limit")
        if temp is None or None in co2:
            flags.append("missing")
        if secs is not None and counts[secs] > 1:
            flags.append("repeat_time")
        if secs in close:
            flags.append("close_pair")
        if period is None or period.status != "deployed":
            flags.append("not_deployed")
        if period is None:
            site = status = tier = None
        else:
            site, status, tier = period.site, period.status, period.tier
        append(
            (
                f"{rec[2]}T{rec[3]}Z" if secs is not None else None,
                unit_id,
                rec[1],
                site,
                status,
                tier,
                temp,
                flash,
                *co2_stats(co2),
                *co2,
                *raw,
                ";".join(flags) if flags else None,
                rec[21],
                rec[22],
                secs,
            )
        )
        if flags:
            tally.flags.update(flags)
    tally.rows += len(rows)
    return rows


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


def export_rows(conn: sqlite3.Connection, tally: Tally) -> Iterator[tuple[str | None, list[tuple]]]:
    """(unit_id, its rows) for every unit of co2_readings; tally counts them."""
    if not table_exists(conn, "co2_readings"):
        return
    layout = build_layout(load_periods(conn))
    clock = Clock()
    for unit in unit_ids(conn):
        where = " WHERE unit_id IS NULL" if unit is None else " WHERE unit_id = ?"
        records = conn.execute(SOURCE_SQL + where + " ORDER BY date, time", () if unit is None else (unit,)).fetchall()
        yield unit, unit_rows(layout, records, clock, tally)
