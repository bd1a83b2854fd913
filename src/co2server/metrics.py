"""GET /metrics: the Prometheus text format, computed at scrape time (prometheus_client).

Per unit (labels hw_id, nickname, site) everything comes from
`build_dashboard` (the units dashboard's own readers: the pings log's tail,
the database's per-unit index seeks, the unit's folder under remote_data/),
except the error-log counts, which come from the database's `error_logs`
table (filled by the pipeline's import, so as fresh as its last run). Per
server: the request counters of all worker processes (request_metrics.py),
the pings table's lag behind the pings log, a fresh database check
(db.check), free space of the data and var disks (as /healthz sees them), the
pipeline's last success (the mtime of var/pipeline-last-ok, touched by
scripts/make-summaries.sh) and the version. The README's metrics table says
the same per series.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flask import Response, current_app, request
from flask_restful import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from . import db
from .config import CHECKOUT, Config
from .dashboard import build_dashboard, recent_pings
from .errors import ApiError
from .health import disk_space
from .liveness import STATES
from .params import config


def _version() -> str:
    """The checkout's version, as pyproject.toml says."""
    try:
        with open(CHECKOUT / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


VERSION = _version()
# The text format Prometheus 2 reads (generate_latest writes it for our names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PIPELINE_OK_FILE = "pipeline-last-ok"
UNIT_LABELS = ["hw_id", "nickname", "site"]
DB_BUSY_TIMEOUT_MS = 500
UNCAUGHT_DAYS_LOOKBACK = 14  # days_running counts up to this many

# Index ranges of error_logs_unit_date. Per day and level since yesterday (?2, the date 24 h ago):
# the entries and uncaught exceptions of the last 24 h (?3: the time 24 h ago), the uncaught of the day.
_ERRORS_SQL = """
SELECT idate, level, sum(idate > ?2 OR itime >= ?3), sum(etype = 'uncaught' AND (idate > ?2 OR itime >= ?3)),
       sum(etype = 'uncaught')
FROM error_logs WHERE unit_id = ?1 AND idate >= ?2 GROUP BY idate, level ORDER BY idate DESC
"""
# Only for a unit with an uncaught exception yesterday: the earlier days with one.
_UNCAUGHT_DAYS_SQL = """
SELECT DISTINCT idate FROM error_logs WHERE unit_id = ? AND idate >= ? AND idate < ? AND etype = 'uncaught'
ORDER BY idate DESC
"""


def unix(ts: datetime | None) -> float | None:
    """Seconds since the epoch of a UTC datetime (naive ones are UTC, as the dashboard's are)."""
    if ts is None:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def _reading_unix(text: str | None) -> float | None:
    try:
        return unix(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None


def days_running(dates: list[str], today: date) -> int:
    """Consecutive days, ending today or yesterday, among `dates` (ISO, newest first)."""
    run, expected = 0, None
    for text in dates:
        try:
            day = date.fromisoformat(text)
        except (TypeError, ValueError):
            continue
        if expected is None:
            if (today - day).days > 1:
                return 0
        elif day != expected:
            break
        run, expected = run + 1, day - timedelta(days=1)
    return run


class ErrorLogCounts:
    """Per unit: error-log entries per level and uncaught exceptions in the last 24 h, days running with one."""

    def __init__(self, db_path: Path, now: datetime):
        self.now = now
        self.problem: str | None = None
        self.conn = None
        try:
            self.conn = db.connect(db_path, readonly=True) if db_path.exists() else None
            if self.conn is not None:
                self.conn.execute(f"PRAGMA busy_timeout = {DB_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            self.problem = str(exc)

    def unit(self, hw_id: str) -> tuple[dict[str, int], int, int] | None:
        if self.conn is None or self.problem:
            return None
        since = self.now - timedelta(hours=24)
        yesterday = since.strftime("%Y-%m-%d")
        levels: dict[str, int] = {}
        uncaught, dates = 0, []
        try:
            rows = self.conn.execute(_ERRORS_SQL, (hw_id, yesterday, since.strftime("%H:%M:%S")))
            for day, level, recent, recent_uncaught, day_uncaught in rows:
                if recent:
                    levels[level or "-"] = levels.get(level or "-", 0) + recent
                uncaught += recent_uncaught or 0
                if day_uncaught and (not dates or dates[-1] != day):
                    dates.append(day)
            if dates and dates[-1] == yesterday:  # a run that may go further back
                lookback = (self.now - timedelta(days=UNCAUGHT_DAYS_LOOKBACK)).strftime("%Y-%m-%d")
                dates += [row[0] for row in self.conn.execute(_UNCAUGHT_DAYS_SQL, (hw_id, lookback, yesterday))]
        except sqlite3.Error as exc:  # no error_logs table before the pipeline's first run
            self.problem = str(exc)
            return None
        return levels, uncaught, days_running(dates, self.now.date())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def pings_table_lag(cfg: Config) -> float | None:
    """Seconds by which the newest ping of the log is ahead of the newest row of the pings table."""
    newest_log = recent_pings(cfg.pings_dir, 1)
    if not newest_log:
        return 0.0
    logged = datetime.fromisoformat(newest_log[0].ping_ts)
    try:
        conn = db.connect(cfg.db_path, readonly=True)
        try:
            conn.execute(f"PRAGMA busy_timeout = {DB_BUSY_TIMEOUT_MS}")
            row = conn.execute("SELECT max(ping_ts) FROM pings").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if row is None or row[0] is None:  # none inserted yet: all of the log is missing
        return unix(logged)
    return max(0.0, (logged - datetime.fromisoformat(row[0])).total_seconds())


def _gauge(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=UNIT_LABELS + (extra or []))


class UnitCollector:
    """The per-unit and per-server series, computed when Prometheus scrapes (a prometheus_client collector)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def collect(self):
        started = time.perf_counter()
        cfg = self.cfg
        board = build_dashboard(cfg)
        g = {
            "last_ping": _gauge("co2unit_last_ping_timestamp_seconds", "Time of the unit's last ping (unix seconds)"),
            "expected": _gauge("co2unit_expected_next_contact_timestamp_seconds",
                               "When the unit's next contact is expected from its usual schedule (unix seconds)"),
            "missed": _gauge("co2unit_missed_contacts", "Contacts the unit missed in a row"),
            "state": _gauge("co2unit_liveness_state", "1 for the unit's liveness state, 0 for the others", ["state"]),
            "rssi": _gauge("co2unit_rssi_dbm", "Signal strength reported in the unit's last ping (dBm)"),
            "pings": _gauge("co2unit_pings_24h", "Pings from the unit in the last 24 hours"),
            "reading": _gauge("co2unit_newest_reading_timestamp_seconds",
                              "Time of the unit's newest uploaded reading, by its own clock (unix seconds)"),
            "bytes": _gauge("co2unit_uploaded_bytes", "Bytes the unit uploaded, per folder", ["folder"]),
            "errors": _gauge("co2unit_error_log_entries_24h",
                             "Entries of the unit's error log dated in the last 24 hours, per level (imported ones)",
                             ["level"]),
            "uncaught": _gauge("co2unit_uncaught_exceptions_24h",
                               "Uncaught exceptions in the unit's error log dated in the last 24 hours"),
            "uncaught_days": _gauge("co2unit_uncaught_exception_days_running",
                                    "Days in a row, up to today or yesterday, with an uncaught exception logged"),
            "sd": _gauge("co2unit_sd_card_replaced",
                         "Superseded folders kept since the unit's SD card was replaced (0: never)"),
            "quota": _gauge("co2unit_over_quota", "1 when the unit is at 95% or more of its storage quota"),
        }
        errors = ErrorLogCounts(cfg.db_path, board.generated_at)
        try:
            for unit in board.units:
                labels = [unit.hw_id, unit.nickname or "", unit.site or ""]
                self._unit_series(g, unit, labels, errors)
        finally:
            errors.close()
        yield from g.values()
        yield from self._server_series(cfg, len(board.units), board.problems)
        yield GaugeMetricFamily("co2server_metrics_collect_seconds", "Time taken to compute the per-unit series",
                                value=time.perf_counter() - started)

    @staticmethod
    def _unit_series(g: dict, unit, labels: list[str], errors: ErrorLogCounts) -> None:
        def put(key, value, *extra):
            if value is not None:
                g[key].add_metric(labels + list(extra), float(value))

        put("last_ping", unix(unit.last_ping))
        liveness = getattr(unit, "liveness", None)
        if liveness is not None:
            put("expected", unix(liveness.expected_next))
            put("missed", liveness.missed)
            for state in STATES:
                put("state", 1 if liveness.state == state else 0, state)
        put("rssi", unit.rssi_dbm)
        put("pings", unit.pings_24h)
        put("reading", _reading_unix(unit.newest_reading))
        for folder, stats in sorted(unit.folders.items()):
            put("bytes", stats.bytes, folder)
        counted = errors.unit(unit.hw_id)
        if counted is not None:
            levels, uncaught, days = counted
            for level, n in sorted(levels.items()):
                put("errors", n, level)
            put("uncaught", uncaught)
            put("uncaught_days", days)
        put("sd", len(unit.sd_replaced_at))
        put("quota", int(unit.quota_full))

    @staticmethod
    def _server_series(cfg: Config, units: int, problems: list[str]):
        yield GaugeMetricFamily("co2server_units", "Units the server knows of (pings, database, folders)", value=units)
        yield GaugeMetricFamily("co2server_database_up", "1 when a fresh read of the database works",
                                value=1 if db.check(cfg.db_path) == "ok" else 0)
        yield GaugeMetricFamily("co2server_dashboard_problems", "Sources the dashboard could not read",
                                value=len(problems))
        lag = pings_table_lag(cfg)
        if lag is not None:
            yield GaugeMetricFamily("co2server_pings_table_lag_seconds",
                                    "How far the pings table is behind the pings log (seconds)", value=lag)
        free = GaugeMetricFamily("co2server_disk_free_bytes", "Free bytes on the disk", labels=["disk"])
        size = GaugeMetricFamily("co2server_disk_size_bytes", "Size of the disk in bytes", labels=["disk"])
        ratio = GaugeMetricFamily("co2server_disk_free_ratio", "Free share of the disk (0 to 1)", labels=["disk"])
        for disk, folder in (("data", cfg.data_dir), ("var", cfg.var_dir)):
            found = disk_space(folder, 0)
            if "free_bytes" in found:
                free.add_metric([disk], found["free_bytes"])
                size.add_metric([disk], found["total_bytes"])
                ratio.add_metric([disk], found["free_bytes"] / found["total_bytes"] if found["total_bytes"] else 0)
        yield from (free, size, ratio)
        try:
            ok = os.stat(cfg.var_dir / PIPELINE_OK_FILE).st_mtime
        except OSError:
            ok = None
        if ok is not None:
            yield GaugeMetricFamily("co2server_pipeline_last_success_timestamp_seconds",
                                    "When scripts/make-summaries.sh last finished without error (unix seconds)",
                                    value=ok)
        info = InfoMetricFamily("co2server_build", "The server's version")
        info.add_metric([], {"version": VERSION, "python": sys.version.split()[0], "key_mode": cfg.key_mode})
        yield info


def render(cfg: Config, counters_folder: Path | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if counters_folder is not None:
        MultiProcessCollector(registry, path=str(counters_folder))
    registry.register(UnitCollector(cfg))
    return generate_latest(registry)


class Metrics(Resource):
    def get(self):
        if request.environ.get("CO2_DOOR") == "units":  # nginx answers 404 there itself; never on that door
            raise ApiError(404, "NOT_FOUND", "no such resource on the units' address")
        counter = current_app.extensions.get("co2_request_counter")
        body = render(config(), counter.folder if counter else None)
        return Response(body, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
