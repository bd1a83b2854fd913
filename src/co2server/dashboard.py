"""What the operators' pages show, computed live from what is on disk (no Flask here).

Sources, cheapest first, and why:
- the pings TSV logs (var/pings/pings-NNNN.tsv) are the log of record, written
  before the database insert, so the newest pings are read from their *tail*
  (backwards from the end of the newest file): this works on a fresh server,
  while the pipeline holds the database, and when an insert failed
  (dash_pings.py, over the tail reads of dash_files.py);
- the database (read-only) answers per-unit aggregates through the
  (unit_id, ping_ts) index: the last ping, the pings of the last 24 hours and
  the last 30 ping times, however old (the liveness model's history)
  are index seeks, never a scan of a year of rows (dash_db.py);
- remote_data/ gives file counts and sizes (os.scandir, no reads), and the
  last line of a unit's newest readings and error files (a tail read;
  dash_folders.py);
- the registry of enrolled units (var/units.json), for units never heard of.
Every source may be missing or broken: the dashboard then shows what the
others know and says which source failed. Each unit's liveness (liveness.py)
is assessed from the ping times of the database and the log together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import Config
from .dash_db import HISTORY_PINGS, apply_deployments, read_database
from .dash_folders import FolderStats, read_update_fetches, scan_unit_folder, unit_folders
from .dash_pings import PINGS_TAIL_BYTES, read_ping_repairs, recent_pings
from .dash_text import ago_text, as_int, iso_seconds, iso_z, parse_iso, until_text, utc_now
from .liveness import STATES, Liveness, Schedule, error_hint, schedule, state_at
from .pinglog import REPAIRS_LOG
from .registry import ACTIVE, RegistryError
from .unit_keys import registry_for

__all__ = ["Dashboard", "UnitStatus", "build_dashboard", "iso_seconds", "recent_pings", "utc_now"]

QUOTA_WARN = 0.95
NEVER_SEEN = Liveness("never_seen", None, None, 0, None, None, None)
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


@dataclass
class UnitStatus:
    hw_id: str
    nickname: str | None = None
    site: str | None = None
    deployment_status: str | None = None
    last_ping: datetime | None = None
    rssi_dbm: int | None = None
    pings_24h: int = 0
    folders: dict[str, FolderStats] = field(default_factory=dict)
    newest_reading: str | None = None
    newest_error_line: str | None = None
    pending_update: str | None = None
    update_fetched_at: str | None = None
    sd_replaced_at: list[str] = field(default_factory=list)
    last_ping_repaired: str | None = None  # what the server repaired in the last ping's values
    usage: tuple[int, int] = (0, 0)  # (bytes, files) its folders hold, as quota.py counts them
    quota_full: bool = False  # at or near CO2_UNIT_MAX_BYTES / CO2_UNIT_MAX_FILES
    silent: bool = True
    liveness: Liveness = NEVER_SEEN

    def as_json(self, now: datetime) -> dict:
        ago = (now - self.last_ping).total_seconds() if self.last_ping else None
        live = self.liveness
        until = (live.expected_next.replace(tzinfo=None) - now).total_seconds() if live.expected_next else None
        return {
            "hw_id": self.hw_id,
            "nickname": self.nickname,
            "site": self.site,
            "deployment_status": self.deployment_status,
            "last_ping": self.last_ping.isoformat() if self.last_ping else None,
            "last_ping_age_s": round(ago) if ago is not None else None,
            "last_ping_ago": ago_text(ago),
            "rssi_dbm": self.rssi_dbm,
            "pings_24h": self.pings_24h,
            "silent": self.silent,
            "uploaded_bytes": sum(f.bytes for f in self.folders.values()),
            "uploaded_files": sum(f.files for f in self.folders.values()),
            "folders": {name: {"files": f.files, "bytes": f.bytes} for name, f in sorted(self.folders.items())},
            "newest_reading": self.newest_reading,
            "newest_error_line": self.newest_error_line,
            "pending_update": self.pending_update,
            "update_fetched": (self.update_fetched_at is not None) if self.pending_update else None,
            "update_fetched_at": self.update_fetched_at,
            "sd_card_replaced": bool(self.sd_replaced_at),
            "sd_card_replaced_at": self.sd_replaced_at,
            "last_ping_repaired": self.last_ping_repaired,
            "quota_used_bytes": self.usage[0],
            "quota_used_files": self.usage[1],
            "quota_full": self.quota_full,
            "liveness_state": live.state,
            "expected_next_contact": iso_z(live.expected_next),
            "expected_next_in": until_text(until),
            "missed_contacts": live.missed,
            "contact_period_s": live.period_s,
            "contact_tolerance_s": live.tolerance_s,
            "liveness_hint": live.hint,
        }


@dataclass
class Dashboard:
    generated_at: datetime
    silent_hours: float
    units: list[UnitStatus]
    problems: list[str]

    def as_json(self) -> dict:
        return {
            "generated_at": iso_seconds(self.generated_at),
            "silent_hours": self.silent_hours,
            "unit_count": len(self.units),
            "silent_count": sum(u.silent for u in self.units),
            "liveness_counts": {s: sum(u.liveness.state == s for u in self.units) for s in STATES},
            "problems": self.problems,
            "units": [u.as_json(self.generated_at) for u in self.units],
        }


def enrolled_units(config: Config, problems: list[str]) -> set[str]:
    """The active units of the registry (var/units.json): enrolled, perhaps never heard of."""
    try:
        return {hw for hw, rec in registry_for(config.var_dir).units().items() if rec.state == ACTIVE}
    except RegistryError as exc:
        problems.append(f"registry: {exc}")
        return set()


def contact_history(db_recent: list[str], tail_times: list[str]) -> list[str]:
    """The unit's last HISTORY_PINGS ping times (as written), newest first."""
    if not tail_times:
        return db_recent
    return sorted({*db_recent, *tail_times}, reverse=True)[:HISTORY_PINGS]


# Per process: a unit's schedule changes only when its history does, so it is
# kept by (unit, its history's newest and oldest ping and length).
_schedules: dict[tuple[str, str, str, int], Schedule | None] = {}


def unit_schedule(hw_id: str, history: list[str], last_ping: datetime | None) -> Schedule | None:
    """liveness.schedule of the unit's history (its last ping alone when older than the history)."""
    if not history:
        return schedule([last_ping] if last_ping is not None else [])  # heard of long ago: silent
    key = (hw_id, history[0], history[-1], len(history))
    if key not in _schedules:
        if len(_schedules) > 20000:
            _schedules.clear()
        times = [ts for ts in map(parse_iso, history) if ts is not None]
        _schedules[key] = schedule(times)
    return _schedules[key]


def urgency(unit: UnitStatus, now: datetime) -> tuple:
    """Sort key: by state (STATES order), the most overdue first, then by nickname and hardware ID."""
    live = unit.liveness
    return (STATES.index(live.state), -live.overdue_s(now), (unit.nickname or "~").lower(), unit.hw_id)


def build_dashboard(config: Config, now: datetime | None = None) -> Dashboard:
    """Every unit ever heard of or enrolled, the most urgent first (see `urgency`)."""
    now = now or utc_now()
    since = now - timedelta(hours=24)
    from_db = read_database(config.db_path, since.strftime(_TS_FORMAT))
    tail = recent_pings(config.pings_dir, 10**9, PINGS_TAIL_BYTES)

    ids = set(from_db.last) | {p.unit_id for p in tail if config.hw_id_re.fullmatch(p.unit_id)}
    ids |= set(unit_folders(config)) | enrolled_units(config, from_db.problems)
    units = {hw_id: UnitStatus(hw_id) for hw_id in ids}

    for hw_id, (ts, nickname, rssi) in from_db.last.items():
        unit = units[hw_id]
        unit.last_ping, unit.nickname, unit.rssi_dbm = parse_iso(ts), nickname, rssi
        unit.pings_24h = from_db.count_24h.get(hw_id, 0)
    # The log may be ahead of the database (a failed insert, a fresh server).
    tail_counts: dict[str, int] = {}
    tail_times: dict[str, list[str]] = {}
    for ping in tail:  # newest first
        unit = units.get(ping.unit_id)
        ts = parse_iso(ping.ping_ts)
        if unit is None or ts is None:
            continue
        tail_times.setdefault(ping.unit_id, []).append(ping.ping_ts)
        if ts >= since:
            tail_counts[ping.unit_id] = tail_counts.get(ping.unit_id, 0) + 1
        if unit.last_ping is None or ts > unit.last_ping:
            unit.last_ping, unit.nickname, unit.rssi_dbm = ts, ping.nickname, as_int(ping.rssi_dbm)
    for hw_id, count in tail_counts.items():
        units[hw_id].pings_24h = max(units[hw_id].pings_24h, count)

    apply_deployments(units, from_db.deployments, now)
    fetches = read_update_fetches(config.update_fetches_log)
    repairs = read_ping_repairs(config.var_dir / REPAIRS_LOG)
    silent_after = timedelta(hours=config.silent_hours)
    for unit in units.values():
        scan_unit_folder(unit, os.path.join(config.data_dir, unit.hw_id), fetches)
        repaired = repairs.get(unit.hw_id)
        if repaired and unit.last_ping is not None and repaired[0] == unit.last_ping:
            unit.last_ping_repaired = repaired[1]
        unit.silent = unit.last_ping is None or now - unit.last_ping > silent_after
        # Flagged from 95%: a unit at its quota has its chunks refused (quota.py).
        unit.quota_full = (unit.usage[0] >= QUOTA_WARN * config.unit_max_bytes
                           or unit.usage[1] >= QUOTA_WARN * config.unit_max_files)
        history = contact_history(from_db.recent.get(unit.hw_id, []), tail_times.get(unit.hw_id, []))
        sched = unit_schedule(unit.hw_id, history, unit.last_ping)
        hint = error_hint(unit.newest_error_line, sched)
        unit.liveness = state_at(sched, now, config.silent_hours, hint)

    ordered = sorted(units.values(), key=lambda u: urgency(u, now))
    return Dashboard(now, config.silent_hours, ordered, from_db.problems)
