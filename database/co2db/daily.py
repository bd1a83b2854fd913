"""co2_daily: per unit and day sums of co2_readings, kept up to date by the importer.

The all-time CO2 plot bins two years into days or wider bins; computing each
reading's CO2 mean for millions of rows on every run cost seconds. co2_daily
holds, per (unit_id, date), what those bins need: the number of readings, and
the sum and count of the readings' CO2 means and temperatures (sensor-limit
codes and NULLs left out, exactly as the plot computes them). A bin of one or
more days is then sum(co2_sum) / sum(co2_n): weighted by readings, not a mean
of daily means.

It is derived data: always equal to DAILY_SELECT over the whole of
co2_readings (rows with a NULL unit_id or date are not in it; no plot shows
them). The readings importer keeps it so:

- incremental runs collect the (unit_id, date) pairs of the lines they read
  and of the rows they delete (a rewritten file), then recompute only those
  pairs (refresh());
- a bulk load, or a database that has readings but no co2_daily yet, builds
  it in one pass (rebuild());
- moving a file's rows to a new label (superseded folders) changes no pair.

derived_state remembers that co2_daily is complete, with its VERSION: a
database from before co2_daily (or from another VERSION) is rebuilt once.
Within a (unit_id, date) the sums run in the order of the (unit_id, date,
time) index, in refresh(), rebuild() and the plot's raw path alike, so they
give the same floating-point figures.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

NAME = "co2_daily"
VERSION = 1

# Sensor-limit codes (DATA-FORMATS.md): kept by the import, left out of means.
CO2_VALID_MIN = 1  # 0 is the sensor's limit code
CO2_VALID_MAX = 199_999  # 200010 is the sensor's limit code
TEMP_LIMIT_CODE = 85.0


def _valid(col: str) -> str:
    return f"{col} BETWEEN {CO2_VALID_MIN} AND {CO2_VALID_MAX}"


_CO2_COLS = [f"co2_{i:02d}" for i in range(1, 11)]


def co2_mean_sql() -> str:
    """SQL for the mean of co2_01..co2_10 of one row, ignoring NULLs and limit codes.

    Most rows have ten valid values: a chain of ANDs (NULL if any value is
    NULL, stopping at the first invalid one) takes the plain mean; only other
    rows pay for the value-by-value version. (No function calls: min()/max()
    of ten values cost twice as much.)
    """
    all_valid = " AND ".join(_valid(c) for c in _CO2_COLS)
    total = " + ".join(f"iif({_valid(c)}, {c}, 0)" for c in _CO2_COLS)
    count = " + ".join(f"coalesce({_valid(c)}, 0)" for c in _CO2_COLS)
    return f"CASE WHEN {all_valid} THEN ({' + '.join(_CO2_COLS)}) * 0.1 ELSE ({total}) * 1.0 / nullif({count}, 0) END"


def co2_known_sql() -> str:
    """SQL true when co2_mean_sql() is not NULL: some value is valid (usually the first)."""
    return " OR ".join(_valid(c) for c in _CO2_COLS)


TEMP_KNOWN_SQL = f"typeof(temp) IN ('real', 'integer') AND temp <> {TEMP_LIMIT_CODE}"
TEMP_SQL = f"iif({TEMP_KNOWN_SQL}, temp, NULL)"

# Per (unit_id, date): the columns of co2_daily. Each aggregate names its own
# expression (SQLite would evaluate a shared subquery column once per use):
# the counts use cheap tests equivalent to "the value is not NULL".
_DAILY_SELECT = """
    SELECT r.unit_id AS unit_id, r.date AS date, count(*) AS n,
           sum({co2}) AS co2_sum, count(CASE WHEN {co2_known} THEN 1 END) AS co2_n,
           sum({temp}) AS temp_sum, count(CASE WHEN {temp_known} THEN 1 END) AS temp_n
    FROM co2_readings AS r
    {where}
    GROUP BY r.unit_id, r.date"""


def daily_select(where: str = "") -> str:
    """SELECT giving co2_daily's rows for the readings (alias r) that pass where."""
    return _DAILY_SELECT.format(
        co2=co2_mean_sql(), co2_known=co2_known_sql(), temp=TEMP_SQL, temp_known=TEMP_KNOWN_SQL, where=where
    )


_COMPLETE = "r.unit_id IS NOT NULL AND r.date IS NOT NULL"


def is_built(conn: sqlite3.Connection) -> bool:
    """True when co2_daily is complete (built by this VERSION and kept since)."""
    try:
        row = conn.execute("SELECT version FROM derived_state WHERE name = ?", (NAME,)).fetchone()
    except sqlite3.OperationalError:  # a database without the pipeline's tables
        return False
    return row is not None and row[0] == VERSION


def mark_incomplete(conn: sqlite3.Connection) -> None:
    """Empty co2_daily and mark it incomplete (in the caller's transaction)."""
    conn.execute(f"DELETE FROM {NAME}")
    conn.execute("DELETE FROM derived_state WHERE name = ?", (NAME,))


def _mark_built(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO derived_state (name, version) VALUES (?, ?)", (NAME, VERSION))


def _units(conn: sqlite3.Connection) -> list[str]:
    """The distinct unit_ids of co2_readings, by index seeks."""
    return [u for (u,) in conn.execute(
        "WITH RECURSIVE units(id) AS ("
        " SELECT (SELECT min(unit_id) FROM co2_readings)"
        " UNION ALL SELECT (SELECT min(unit_id) FROM co2_readings WHERE unit_id > units.id)"
        " FROM units WHERE units.id IS NOT NULL) SELECT id FROM units WHERE id IS NOT NULL"
    )]  # fmt: skip


def _range_select(lo: str | None, hi: str | None) -> str:
    where = [_COMPLETE]
    if lo is not None:
        where.append("r.unit_id >= :lo")
    if hi is not None:
        where.append("r.unit_id < :hi")
    return daily_select("WHERE " + " AND ".join(where))


class Rebuild:
    """A full build of co2_daily under way: unit ranges computed here and in helpers.

    A full build of millions of readings is CPU-bound in SQLite: with two
    cores the units are cut in two ranges, each computed by its own process
    (reading only). start_rebuild() starts the helpers; finish() computes
    this process's range (if any), collects the helpers' rows and writes
    co2_daily in one short transaction.
    """

    def __init__(self, conn: sqlite3.Connection, parts: int, here: bool):
        units = _units(conn)
        parts = max(1, min(parts, len(units)))
        cuts = [units[len(units) * k // parts] for k in range(1, parts)]
        ranges = list(zip([None, *cuts], [*cuts, None], strict=True))
        self.here = ranges.pop(0) if here else None
        db_file = conn.execute("PRAGMA database_list").fetchone()[2]
        self.procs = [_start_helper(db_file, lo, hi) for lo, hi in ranges]

    def cancel(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs = []

    def finish(self, conn: sqlite3.Connection) -> int:
        """Wait for the helpers and write co2_daily (no transaction open); return its rows."""
        try:
            rows = []
            if self.here is not None:
                lo, hi = self.here
                rows = conn.execute(_range_select(lo, hi), {"lo": lo, "hi": hi}).fetchall()
            for proc in self.procs:
                rows.extend(_helper_rows(proc))
        finally:
            self.cancel()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"DELETE FROM {NAME}")
            conn.executemany(f"INSERT INTO {NAME} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            _mark_built(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)


def _cores() -> int:
    return 2 if (os.cpu_count() or 1) > 1 else 1


def start_rebuild(conn: sqlite3.Connection) -> Rebuild:
    """Start a full build entirely in helper processes (this one has other work meanwhile).

    They read a snapshot: the database must be in WAL mode if this process
    writes before finish().
    """
    return Rebuild(conn, _cores(), here=False)


def rebuild(conn: sqlite3.Connection, workers: int | None = None) -> int:
    """Recompute all of co2_daily now (no transaction open); return its rows.

    With two cores, a helper process computes the second half of the units
    while this one computes the first.
    """
    return Rebuild(conn, workers or _cores(), here=True).finish(conn)


def _start_helper(db_file: str, lo: str | None, hi: str | None) -> subprocess.Popen:
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "co2db.daily", db_file, lo or "", hi or ""],
        stdout=subprocess.PIPE,
        env=env,
    )


def _helper_rows(proc: subprocess.Popen) -> list:
    import marshal

    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"a {NAME} helper process failed (exit status {proc.returncode})")
    return marshal.loads(out)


def _helper_main(db_file: str, lo: str, hi: str) -> None:
    """Print (marshal) the co2_daily rows of the units in [lo, hi) ('' = open); read only."""
    import marshal

    conn = sqlite3.connect(db_file, timeout=60)
    conn.execute("PRAGMA query_only = ON")
    conn.execute("PRAGMA cache_size = -65536")
    rows = conn.execute(_range_select(lo or None, hi or None), {"lo": lo or None, "hi": hi or None}).fetchall()
    conn.close()
    sys.stdout.buffer.write(marshal.dumps(rows))


def ensure_built(conn: sqlite3.Connection) -> bool:
    """Build co2_daily if it is not complete (a database from before it); True if built now."""
    if is_built(conn):
        return False
    rebuild(conn)
    return True


_PAIR_RE = re.compile(rb"^(co2unit-[^\t\n]*)\t[^\t\n]*\t([^\t\n]*)", re.MULTILINE)


def pairs_in_lines(data: bytes) -> set[tuple[str, str]]:
    """(unit_id, date) of every line of data that may become a row (a superset)."""
    return {(u.decode("ascii", "replace"), d.decode("ascii", "replace")) for u, d in _PAIR_RE.findall(data)}


def pairs_of_file(conn: sqlite3.Connection, label: str) -> set[tuple[str, str]]:
    """(unit_id, date) of the rows that came from one file (before deleting them)."""
    return set(conn.execute(
        "SELECT DISTINCT unit_id, date FROM co2_readings WHERE source_file = ?"
        " AND unit_id IS NOT NULL AND date IS NOT NULL", (label,)
    ))  # fmt: skip


def refresh(conn: sqlite3.Connection, pairs: Iterable[tuple[str, str]]) -> int:
    """Recompute the co2_daily rows of these (unit_id, date) pairs, in the caller's transaction.

    DELETE, then INSERT ... SELECT of one pair at a time: each is one range
    of the (unit_id, date, time) index, summed in index order with no sort.
    Returns the number of pairs.
    """
    pairs = sorted(pairs)
    conn.executemany(f"DELETE FROM {NAME} WHERE unit_id = ? AND date = ?", pairs)
    conn.executemany(f"INSERT INTO {NAME} " + daily_select("WHERE r.unit_id = ? AND r.date = ?"), pairs)
    return len(pairs)


if __name__ == "__main__":
    _helper_main(*sys.argv[1:4])
