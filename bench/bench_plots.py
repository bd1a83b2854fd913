"""Benchmark the plots and pages at scale.

    .venv/bin/python bench/bench_plots.py [--units 100] [--years 2] [--ping-units 500] [--rebuild]

Builds (once; reused while the sizes match) bench/out/plots.sqlite3 with
100 units x 2 years of half-hourly readings (3.5 M rows), 500 units x 1 year
of hourly pings (about 4.2 M rows, some missed) and a deployments table
(sites with tiers, en_route and lab_check periods, units never deployed),
all generated in SQL, and co2_daily as the readings importer builds it. Then runs each Makefile command as a subprocess and
prints its wall time (imports included), its output size, and the ratio to a
reference measured in the same run: one plain SQL pass over the table the
command reads (`SELECT count(*), avg(...)`), i.e. "this plot costs N scans".
Budget: the whole pipeline for one new day is 10 s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "co2server" / "schema.sql"
OUT = ROOT / "bench" / "out"
START = "2024-01-01"


def build(db: Path, units: int, years: int, ping_units: int) -> None:
    """Fill a fresh database in SQL (recursive CTEs), indexes built at the end."""
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.executescript(SCHEMA.read_text())
    for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL").fetchall():
        conn.execute(f"DROP INDEX {name}")
    halfhours = years * 365 * 48
    started = time.perf_counter()
    # Readings: unit by unit (as the importer inserts them), every 30 minutes.
    conn.execute(
        """
        WITH RECURSIVE
          u(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM u WHERE k < :units - 1),
          t(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM t WHERE i < :n - 1)
        INSERT INTO co2_readings (unit_id, nickname, date, time, temp, flash_count,
            co2_01, co2_02, co2_03, co2_04, co2_05, co2_06, co2_07, co2_08, co2_09, co2_10)
        SELECT unit_id, nickname, date, time, temp, 0,
               v, v + 3, v - 2, iif(i % 17 = 0, NULL, v + 1), v, v - 4, v + 2, v, v - 1, v + 5
        FROM (
            SELECT printf('co2unit-%012x', 655360 + k) AS unit_id,
                   iif(k % 10 = 9, NULL, printf('bench-%03d', k)) AS nickname,
                   date(:start, '+' || (i / 48) || ' days') AS date,
                   printf('%02d:%02d:%02d', (i % 48) / 2, (i % 2) * 30, k % 60) AS time,
                   round(-8 + 14 * sin((i / 48 - 100) * 6.2832 / 365)
                         + 3 * sin(i * 6.2832 / 48) + (abs(random()) % 100) / 50.0, 4) AS temp,
                   CAST(450 + 3 * k + 120 * (1 + sin(i * 6.2832 / 48 + k))
                        + abs(random()) % 40 AS INTEGER) AS v,
                   i
            FROM u, t)
        """,
        {"units": units, "n": halfhours, "start": START},
    )
    print(f"  readings: {conn.execute('SELECT count(*) FROM co2_readings').fetchone()[0]:,} rows"
          f" in {time.perf_counter() - started:.1f} s")  # fmt: skip
    started = time.perf_counter()
    conn.execute(
        """
        WITH RECURSIVE
          u(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM u WHERE k < :units - 1),
          t(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM t WHERE i < :n - 1)
        INSERT INTO pings
        SELECT ts, substr(ts, 1, 10), substr(ts, 12), unit_id, nickname, raw, raw * 2 - 113, 99
        FROM (
            SELECT strftime('%Y-%m-%dT%H:%M:%S', :start_ping, '+' || (i * 3600 + k * 7) || ' seconds')
                   || printf('.%06d', abs(random()) % 1000000) AS ts,
                   printf('co2unit-%012x', 655360 + k) AS unit_id,
                   iif(k % 10 = 9, NULL, printf('bench-%03d', k)) AS nickname,
                   iif(abs(random()) % 50 = 0, NULL, 5 + abs(random()) % 20) AS raw
            FROM u, t
            -- about 5 % of pings missed; unit 7 silent for its last 3 days
            WHERE abs(random()) % 20 <> 0 AND NOT (k = 7 AND i > :n - 72))
        """,
        {"units": ping_units, "n": 365 * 24, "start_ping": f"{int(START[:4]) + years - 1}-01-01"},
    )
    print(f"  pings: {conn.execute('SELECT count(*) FROM pings').fetchone()[0]:,} rows"
          f" in {time.perf_counter() - started:.1f} s")  # fmt: skip
    # Deployments: 80 % of the units deployed at a site (two units per site
    # over time for some), each first en route; every 10th unit also had a
    # lab check; the rest never deployed. Tiers 1..30.
    rows = []
    end = f"{int(START[:4]) + years}-01-01"
    for k in range(ping_units):
        unit = f"co2unit-{655360 + k:012x}"
        nick = None if k % 10 == 9 else f"bench-{k:03d}"
        if k % 5 == 4:
            continue  # never deployed
        site = f"site_{k % 240:03d}"
        tier = 30 - (k % 240) // 8
        start = f"{START[:4]}-{1 + k % 6:02d}-{1 + k % 27:02d}"
        deployed = f"{START[:4]}-{2 + k % 6:02d}-{1 + k % 27:02d}T12:00:00"
        rows.append((unit, nick, site, tier, "en_route", start, deployed, None))
        if k % 10 == 0:
            lab_start = f"{int(START[:4]) + years - 1}-06-01"
            lab_end = f"{int(START[:4]) + years - 1}-06-20"
            rows.append((unit, nick, site, tier, "deployed", deployed, lab_start, None))
            rows.append((unit, nick, "lab", 1, "lab_check", lab_start, lab_end, None))
            rows.append((unit, nick, site, tier, "deployed", lab_end, None, None))
        else:
            rows.append((unit, nick, site, tier, "deployed", deployed, None if k < 480 else end, None))
    conn.executemany("INSERT INTO deploy_durations_tiered VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    started = time.perf_counter()
    conn.executescript(SCHEMA.read_text())  # the indexes
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    print(f"  indexes in {time.perf_counter() - started:.1f} s")


def ensure_daily(db: Path) -> None:
    """Add what the readings importer derives (co2_daily), as `make` would on this database."""
    sys.path.insert(0, str(ROOT / "database"))
    from co2db import daily
    from co2db import db as co2db_db

    conn = co2db_db.connect(db)  # the pipeline's schema: co2_daily, derived_state
    try:
        if not daily.is_built(conn):
            started = time.perf_counter()
            rows = daily.rebuild(conn)
            print(f"  co2_daily: {rows:,} rows in {time.perf_counter() - started:.1f} s")
    finally:
        conn.close()


def timed_sql(db: Path, sql: str) -> float:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    started = time.perf_counter()
    conn.execute(sql).fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def run(module: str, *args) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "database"))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", f"co2db.{module}", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT / "database",
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{module} failed:\n{proc.stderr}")
    return elapsed, proc.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100, help="units with readings")
    parser.add_argument("--years", type=int, default=2, help="years of half-hourly readings")
    parser.add_argument("--ping-units", type=int, default=500, help="units with a year of pings")
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / f"plots-{args.units}u-{args.years}y-{args.ping_units}p.sqlite3"
    if args.rebuild or not db.exists():
        print(f"building {db.name} ...")
        build(db, args.units, args.years, args.ping_units)
    ensure_daily(db)
    pub = OUT / "pub"
    pub.mkdir(exist_ok=True)
    now = f"{int(START[:4]) + args.years}-01-01T00:00:00"

    refs = {
        "readings": timed_sql(db, "SELECT count(*), avg(temp), avg(co2_05) FROM co2_readings"),
        "pings": timed_sql(db, "SELECT count(*), avg(rssi_dbm) FROM pings"),
    }
    print(f"reference: one SQL pass over co2_readings {refs['readings']:.2f} s, over pings {refs['pings']:.2f} s")
    common = ("--db", db, "--now", now)
    jobs = [
        ("pings_all_tiered.svg", "pings", "plot_pings", (*common, "--out", pub / "pings_all_tiered.svg")),
        (
            "co2_tiered_recent_hires.svg",
            "readings",
            "plot_co2",
            (*common, "--out", pub / "co2_tiered_recent_hires.svg", "--recent-days", "14"),
        ),
        ("co2_tiered_all_hires.svg", "readings", "plot_co2", (*common, "--out", pub / "co2_tiered_all_hires.svg")),
        ("pages", "pings", "pages", ("--db", db, "--pub-dir", pub, "--now", now)),
    ]
    total = 0.0
    print(f"{'output':30} {'wall s':>7} {'x ref':>6}  command's own line")
    for name, ref, module, argv in jobs:
        elapsed, line = run(module, *argv)
        total += elapsed
        print(f"{name:30} {elapsed:7.2f} {elapsed / refs[ref]:6.1f}  {line}")
    print(f"{'all plots and pages':30} {total:7.2f}  (budget for the whole pipeline: 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
