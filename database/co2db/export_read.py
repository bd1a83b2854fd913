"""The research export's reading of co2_readings: one unit's records, in
(date, time) order, as a pyarrow table of typed columns (RAW_NAMES), without
a Python object per value.

Fast path: SQLite itself writes the unit's records as one delimited text
(group_concat of printf; REAL values with 18 significant digits, which read
back to the very same double), which pyarrow's CSV reader parses in C. A value of the wrong storage class (text
where a number belongs, a fraction in an integer column) does not parse (or, text
such as 'inf', parses as a non-finite float: to be sure, any non-finite float
sends the unit the plain way too); the unit is then read the plain way,
value by value, and every such value is taken as empty and counted (Tally.unusable),
exactly as DATA-FORMATS.md's export asks.
"""

from __future__ import annotations

import io
import sqlite3
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

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


@dataclass
class Tally:
    """What the row computation met: rows, flags, values it could not use."""

    rows: int = 0
    flags: Counter = field(default_factory=Counter)
    unusable: Counter = field(default_factory=Counter)  # column -> values taken as empty


def _sql_field(name: str, kind: str) -> str:
    if kind == "text":  # as it is; NULL as the NULL mark
        return f"ifnull({name}, char(30))"
    if kind == "real":  # %s would give 15 digits only; text stays text (and fails to parse)
        return f"iif(typeof({name}) = 'real', printf('%!.18g', {name}), {name})"
    return name  # NULL prints as nothing; text or a fraction fails to parse as an integer


# Fields are separated by the control character US (\x1f), records by \n,
# nothing is quoted; NULL text is RS (\x1e). Text holding US, CR or LF
# changes a record's field count or the record count, text that is RS alone
# would read as NULL: each is seen (parse error, count check) and sends the
# unit the plain way.
_SEP, _NULL_TEXT = "\x1f", "\x1e"
_TEXTS = [name for name, kind in SOURCE if kind == "text"]
_LINE = "printf('" + "\x1f".join(["%s"] * len(SOURCE)) + "', " + ", ".join(_sql_field(n, k) for n, k in SOURCE) + ")"
_MARKED = " + ".join(f"total({name} = char(30))" for name in _TEXTS)
_WHERE = {True: "unit_id IS NULL", False: "unit_id = ?"}
_ORDER = " ORDER BY date, time"
_CSV_READ = pacsv.ReadOptions(column_names=list(RAW_NAMES), block_size=1 << 24)
_CSV_PARSE = pacsv.ParseOptions(delimiter=_SEP, quote_char=False, escape_char=False, double_quote=False)
_CSV_CONVERT = pacsv.ConvertOptions(column_types=RAW_SCHEMA, null_values=[""], strings_can_be_null=False)


def _params(unit: str | None) -> tuple:
    return () if unit is None else (unit,)


def read_unit(conn: sqlite3.Connection, unit: str | None, tally: Tally) -> pa.Table:
    """One unit's co2_readings records ordered by date, time, as RAW_SCHEMA columns."""
    where = _WHERE[unit is None]
    sql = (
        f"SELECT group_concat(line, char(10)), count(*), {_MARKED} FROM"
        f" (SELECT {_LINE} AS line, {', '.join(_TEXTS)} FROM co2_readings WHERE {where}{_ORDER})"
    )
    text, count, marked = conn.execute(sql, _params(unit)).fetchone()
    if not count:
        return RAW_SCHEMA.empty_table()
    if marked:
        return _read_plain(conn, unit, tally)
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8", "surrogatepass")),
            read_options=_CSV_READ,
            parse_options=_CSV_PARSE,
            convert_options=_CSV_CONVERT,
        )
    except (pa.ArrowInvalid, UnicodeError):
        return _read_plain(conn, unit, tally)
    if table.num_rows != count:
        return _read_plain(conn, unit, tally)
    for name, kind in SOURCE:  # text 'inf' or 'nan' where a REAL belongs parses as a float
        if kind == "real" and pc.all(pc.is_finite(table.column(name))).as_py() is False:
            return _read_plain(conn, unit, tally)
    null = pa.scalar(None, pa.string())
    for name in _TEXTS:
        column = table.column(name)
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.if_else(pc.equal(column, _NULL_TEXT), null, column))
    return table


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


def _read_plain(conn: sqlite3.Connection, unit: str | None, tally: Tally) -> pa.Table:
    """The unit read value by value (slow; only for units with values of the wrong type)."""
    names = ", ".join(RAW_NAMES)
    records = conn.execute(
        f"SELECT {names} FROM co2_readings WHERE {_WHERE[unit is None]}{_ORDER}", _params(unit)
    ).fetchall()
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
