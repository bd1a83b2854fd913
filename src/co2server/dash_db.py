"""The database's answers for the dashboard (read-only): per-unit recent pings, counts, deployments."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import db
from .dash_text import as_int, parse_iso

if TYPE_CHECKING:
    from .dashboard import UnitStatus

DB_BUSY_TIMEOUT_MS = 500


_UNITS_SQL = """
WITH RECURSIVE ids(unit_id) AS (
    SELECT min(unit_id) FROM pings
    UNION ALL
    SELECT (SELECT min(unit_id) FROM pings WHERE unit_id > ids.unit_id) FROM ids WHERE ids.unit_id IS NOT NULL
)
SELECT unit_id FROM ids WHERE unit_id IS NOT NULL
"""
_LAST_PING_SQL = "SELECT ping_ts, nickname, rssi_dbm FROM pings WHERE unit_id = ? ORDER BY ping_ts DESC LIMIT 1"
_COUNT_SINCE_SQL = "SELECT count(*) FROM pings WHERE unit_id = ? AND ping_ts >= ?"
# The liveness model's history: read from the (unit_id, ping_ts) index alone
# (a covering seek, no table rows), bounded in count, not in time: a daily
# unit silent for a month keeps its schedule and shows 30 missed calls.
_RECENT_SQL = "SELECT ping_ts FROM pings WHERE unit_id = ? ORDER BY ping_ts DESC LIMIT ?"
HISTORY_PINGS = 30  # liveness.MAX_CONTACTS: the cycles the model looks at


@dataclass
class DbPings:
    last: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)
    count_24h: dict[str, int] = field(default_factory=dict)
    recent: dict[str, list[str]] = field(default_factory=dict)  # ping times, newest first
    deployments: list[tuple] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_database(db_path: Path, since_iso: str) -> DbPings:
    """Per unit (index seeks): the last ping, the 24-hour count (`since_iso` on) and
    its last HISTORY_PINGS ping times; and the deployments table."""
    out = DbPings()
    if not db_path.exists():
        out.problems.append("database not created yet")
        return out
    try:
        conn = db.connect(db_path, readonly=True)
        # A page must not hang while the pipeline holds a write lock: wait a
        # little, then show what the log and the folders know.
        conn.execute(f"PRAGMA busy_timeout = {DB_BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        out.problems.append(f"database: {exc}")
        return out
    try:
        try:
            # The recursive skip-scan walks the (unit_id, ping_ts) index one
            # unit at a time: 500 seeks instead of reading millions of rows.
            units = [row[0] for row in conn.execute(_UNITS_SQL)]
            for unit_id in units:
                row = conn.execute(_LAST_PING_SQL, (unit_id,)).fetchone()
                if row:
                    out.last[unit_id] = (row[0], row[1], as_int(row[2]))
                recent = [r[0] for r in conn.execute(_RECENT_SQL, (unit_id, HISTORY_PINGS))]
                out.recent[unit_id] = recent
                if len(recent) < HISTORY_PINGS or recent[-1] < since_iso:
                    out.count_24h[unit_id] = sum(ts >= since_iso for ts in recent)  # all of the day is there
                else:
                    out.count_24h[unit_id] = conn.execute(_COUNT_SINCE_SQL, (unit_id, since_iso)).fetchone()[0]
        except sqlite3.Error as exc:
            out.problems.append(f"pings table: {exc}")
        try:
            out.deployments = [
                tuple(row) for row in conn.execute(
                    "SELECT unit_id, nickname, site, status, start_ts, end_ts FROM deploy_durations_tiered"
                )
            ]
        except sqlite3.Error as exc:
            if "no such table" not in str(exc):
                out.problems.append(f"deployments table: {exc}")
    finally:
        conn.close()
    return out


def apply_deployments(units: dict[str, UnitStatus], rows: list[tuple], now: datetime) -> None:
    """Site (and status) of the deployment open now; nickname fallback from the latest row."""
    rank = {"deployed": 0, "en_route": 1, "lab_check": 2}
    latest: dict[str, tuple] = {}
    current: dict[str, tuple] = {}
    for row in rows:
        unit_id, _nick, _site, status, start_ts, end_ts = row
        if unit_id not in units:
            continue
        start = parse_iso(start_ts) if start_ts else None
        end = parse_iso(end_ts) if end_ts else None
        if start_ts and start is None:
            continue
        if unit_id not in latest or (start or datetime.min) >= (parse_iso(latest[unit_id][4]) or datetime.min):
            latest[unit_id] = row
        if (start is None or start <= now) and (end is None or now < end):
            old = current.get(unit_id)
            if old is None or rank.get(status, 9) < rank.get(old[3], 9):
                current[unit_id] = row
    for unit_id, row in current.items():
        units[unit_id].site = row[2]
        units[unit_id].deployment_status = row[3]
    for unit_id, row in latest.items():
        if units[unit_id].nickname is None and row[1]:
            units[unit_id].nickname = row[1]

