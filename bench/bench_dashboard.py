"""Benchmark: the units dashboard and /metrics with 500 units and a year of hourly pings.

    .venv/bin/python bench/bench_dashboard.py [--units 500] [--days 365] [--requests 20] [--rebuild]

Builds (once; cached in bench/out/dashboard/) a database with ~4.4 million
ping rows generated in SQL, the matching remote_data/ folders (errors and
readings files, some updates, some superseded folders), starts the real
uWSGI from server.ini.example on a free loopback port and times
GET /status/units, GET /status/units.json and GET /metrics (whose per-unit
error-log counts read an error_logs table of a year of daily entries per
unit, added to a cached data set that lacks it). Prints median and p95 against
the 200 ms target, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from conftest import UwsgiServer  # noqa: E402  (the tests' real-uWSGI runner)
from firmware import http_request  # noqa: E402

TARGET_MS = 200.0
OUT = ROOT / "bench" / "out" / "dashboard"
SCHEMA = ROOT / "src" / "co2server" / "schema.sql"


def hw_id(j: int) -> str:
    return f"co2unit-{0x30aea4000000 + j:012x}"


def build_database(db_path: Path, units: int, days: int, end: datetime) -> int:
    """Fill the pings table in one INSERT ... SELECT over two recursive CTEs."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA.read_text())
    conn.execute("DROP INDEX pings_ts_unit")
    conn.execute("DROP INDEX pings_unit_ts")
    start = (end - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
    hours = days * 24
    # Every 20th unit fell silent two days before the end.
    conn.execute(
        """
        WITH RECURSIVE h(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM h WHERE i < ?),
                       u(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM u WHERE j < ?),
        raw AS (
            SELECT strftime('%Y-%m-%dT%H:%M:%f', ?, '+' || i || ' hours', '+' || (j * 7 % 3600) || ' seconds')
                   || printf('%03d', j) AS ts, i, j
            FROM h, u
            WHERE j % 20 != 0 OR i < ? - 48
        )
        INSERT INTO pings
        SELECT ts, substr(ts, 1, 10), substr(ts, 12), printf('co2unit-%012x', 53526633906176 + j),
               printf('site-%03d', j), 5 + (i + j) % 20, -113 + 2 * ((i + j) % 20), 99
        FROM raw
        """,
        (hours - 1, units - 1, start, hours),
    )
    conn.executescript(SCHEMA.read_text())  # the indexes, built once over all rows
    conn.execute(
        "INSERT INTO deploy_durations_tiered SELECT printf('co2unit-%012x', 53526633906176 + value), "
        "printf('site-%03d', value), printf('vj_site_%d', value), value % 30, 'deployed', '2019-08-01', NULL, '' "
        "FROM (WITH RECURSIVE s(value) AS (SELECT 0 UNION ALL SELECT value + 1 FROM s WHERE value < ?) "
        "SELECT value FROM s)",
        (units - 1,),
    )
    rows = conn.execute("SELECT count(*) FROM pings").fetchone()[0]
    conn.close()
    return rows


def add_error_logs(db_path: Path, units: int, days: int, end: datetime) -> int:
    """A daily error-log entry per unit for `days` (an uncaught exception every 7th day), if there are none yet."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        if conn.execute("SELECT count(*) FROM error_logs").fetchone()[0] == 0:
            start = (end - timedelta(days=days)).strftime("%Y-%m-%d")
            conn.execute(
                """
                WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < ?),
                               u(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM u WHERE j < ?)
                INSERT INTO error_logs
                SELECT printf('co2unit-%012x', 53526633906176 + j), date(?, '+' || i || ' days'), '03:16:00',
                       CASE WHEN (i + j) % 7 = 0 THEN 'uncaught' END, date(?, '+' || i || ' days'), '03:16:00',
                       CASE WHEN (i + j) % 7 = 0 THEN 'EXC' ELSE 'INFO' END, 'entry', 'errors/errors-0000.txt', i
                FROM d, u
                """,
                (days - 1, units - 1, start, start),
            )
        return conn.execute("SELECT count(*) FROM error_logs").fetchone()[0]
    finally:
        conn.close()


def build_remote_data(data_dir: Path, units: int) -> int:
    """Per unit: 3 error logs, 20 readings files, sometimes an update or a superseded folder."""
    shutil.rmtree(data_dir, ignore_errors=True)
    files = 0
    reading = "\tvaranger\t2026-01-01\t12:00:00\t1.5\t0" + "\t600" * 10 + "\n"
    for j in range(units):
        unit = data_dir / hw_id(j)
        (unit / "errors").mkdir(parents=True)
        (unit / "data" / "readings").mkdir(parents=True)
        for n in range(3):
            (unit / "errors" / f"errors-{n:04d}.txt").write_text(
                "----- 2026-01-01 12:00:00 INFO  Self-test. LTE attached: True.\n" * 200)
        for n in range(20):
            (unit / "data" / "readings" / f"readings-{n:04d}.tsv").write_text((hw_id(j) + reading) * 400)
        files += 23
        if j % 10 == 0:
            update = unit / "updates" / "update-2026-01-01" / "flash"
            update.mkdir(parents=True)
            (update / "main.py").write_text("pass\n")
            files += 1
        if j % 25 == 0:
            (unit / "superseded" / "20260101T000000.000000Z" / "data").mkdir(parents=True)
    return files


def timed(port: int, path: str, count: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(count):
        t0 = time.perf_counter()
        reply = http_request(port, "GET", path, timeout=120)
        times.append((time.perf_counter() - t0) * 1000)
        if reply.status != 200:
            raise SystemExit(f"{path} answered {reply.status}: {reply.body[:300]!r}")
        size = len(reply.body)
    return times, size


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached data set")
    args = parser.parse_args()

    root = OUT / f"u{args.units}-d{args.days}"
    db_path = root / "var" / "db.sqlite3"
    stamp = root / "built-at"
    end = datetime.now(UTC).replace(tzinfo=None)
    if args.rebuild or not stamp.exists():
        t0 = time.perf_counter()
        rows = build_database(db_path, args.units, args.days, end)
        files = build_remote_data(root / "remote_data", args.units)
        stamp.write_text(end.isoformat())
        print(f"built {rows:,} ping rows and {files:,} files in {time.perf_counter() - t0:.1f} s ({root})")
    else:
        print(f"using the data set built at {stamp.read_text()} in {root} (--rebuild to rebuild)")
    print(f"{add_error_logs(db_path, args.units, args.days, end):,} error-log rows")

    server = UwsgiServer(root)
    (root / "uwsgi.log").unlink(missing_ok=True)
    server.start(timeout=120)
    try:
        timed(server.port, "/status/units.json", 2)  # warm both workers' caches
        print(f"{os.cpu_count()} CPUs; {args.requests} requests each, after 2 warm-up requests")
        print(f"{'URL':<22} {'median ms':>10} {'p95 ms':>8} {'target':>7} {'median/target':>14} {'body':>10}")
        for path in ("/status/units", "/status/units.json", "/metrics"):
            times, size = timed(server.port, path, args.requests)
            median = statistics.median(times)
            verdict = "ok" if median < TARGET_MS else "SLOW"
            print(f"{path:<22} {median:>10.1f} {p95(times):>8.1f} {TARGET_MS:>7.0f} "
                  f"{median / TARGET_MS:>13.2f}x {size:>9,}B {verdict}")
    finally:
        server.stop()
    in_process(root, args.requests)
    print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} CPUs "
          "(other work on the machine inflates the wall times above, not the CPU times)")


def in_process(root: Path, count: int) -> None:
    """CPU time of one dashboard build in this process: what a request costs, load aside."""
    from co2server.config import Config
    from co2server.dashboard import build_dashboard

    config = Config.from_environ({"CO2_DATA_DIR": str(root / "remote_data"), "CO2_VAR_DIR": str(root / "var")})
    cold_wall = time.perf_counter()
    cold_cpu = time.process_time()
    build_dashboard(config)
    cold = ((time.perf_counter() - cold_wall) * 1000, (time.process_time() - cold_cpu) * 1000)
    walls, cpus = [], []
    for _ in range(count):
        t0, c0 = time.perf_counter(), time.process_time()
        board = build_dashboard(config)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    print(f"build_dashboard in-process, {len(board.units)} units: first (cold caches) "
          f"{cold[0]:.1f} ms wall / {cold[1]:.1f} ms CPU; then median {statistics.median(walls):.1f} ms wall / "
          f"{statistics.median(cpus):.1f} ms CPU, p95 {p95(walls):.1f} ms wall")
    from co2server.metrics import render

    walls, cpus = [], []
    for _ in range(count):
        t0, c0 = time.perf_counter(), time.process_time()
        body = render(config, None)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    metrics_cpu = statistics.median(cpus)
    print(f"/metrics in-process (the dashboard, the error-log counts and the exposition), {len(body):,} bytes: "
          f"median {statistics.median(walls):.1f} ms wall / {metrics_cpu:.1f} ms CPU, p95 {p95(walls):.1f} ms wall")


if __name__ == "__main__":
    main()
