"""What the operators' pages show, computed live from what is on disk (no Flask here).

Sources, cheapest first, and why:
- the pings TSV logs (var/pings/pings-NNNN.tsv) are the log of record, written
  before the database insert, so the newest pings are read from their *tail*
  (backwards from the end of the newest file): this works on a fresh server,
  while the pipeline holds the database, and when an insert failed;
- the database (read-only) answers per-unit aggregates through the
  (unit_id, ping_ts) index: the last ping and the pings of the last 24 hours
  are index seeks, never a scan of a year of rows;
- remote_data/ gives file counts and sizes (os.scandir, no reads), and the
  last line of a unit's newest readings and error files (a tail read).
Every source may be missing or broken: the dashboard then shows what the
others know and says which source failed.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import db
from .chunks import SUPERSEDED
from .config import Config
from .pinglog import REPAIRS_LOG
from .quota import unit_usage
from .unit_updates import complete_updates

PINGS_FILE_RE = re.compile(r"pings-(\d{4,})\.tsv")
ERRORS_FILE_RE = re.compile(r"errors-\d{4,}\.txt")
READINGS_FILE_RE = re.compile(r"readings-\d{4,}\.tsv")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RE = re.compile(r"\d{2}:\d{2}:\d{2}")
_SUPERSEDED_STAMP = "%Y%m%dT%H%M%S.%fZ"

# How much of the pings log the dashboard reads to find units the database
# does not know yet (a fresh server, a failed insert): a day of pings of a
# few dozen units. /status/alive/recent reads exactly as far back as it needs.
PINGS_TAIL_BYTES = 256 * 1024
# How far back from a file's end a "last line" is looked for.
LAST_LINE_BYTES = 8 * 1024
# The update-fetch log gains a line per downloaded file; only its end matters.
FETCH_LOG_TAIL_BYTES = 1024 * 1024
BLOCK = 16 * 1024
DB_BUSY_TIMEOUT_MS = 500
MAX_LINE_CHARS = 300


QUOTA_WARN = 0.95

def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso_seconds(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def parse_iso(text: str | None) -> datetime | None:
    """A naive UTC datetime from the ISO times we write, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", ""))
    except ValueError:
        return None


def ago_text(seconds: float | None) -> str:
    """'just now', '12 min ago', '3 h ago', '5 d ago' (or 'never')."""
    if seconds is None:
        return "never"
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def printable(raw: bytes, limit: int = MAX_LINE_CHARS) -> str:
    """A line of field data made safe to show: ASCII, no control characters, capped."""
    text = raw.decode("ascii", errors="replace").replace("\t", " ")
    text = "".join(c if " " <= c <= "~" else "\N{REPLACEMENT CHARACTER}" for c in text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


# ---------------------------------------------------------------- tail reads

def lines_backwards(path: Path, max_bytes: int | None = None) -> Iterator[bytes]:
    """The complete lines of `path`, last first, reading blocks from the end.

    A last line without its newline (still being written) is left out. Stops
    after `max_bytes` from the end when given (the line cut there is dropped).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        pos = os.fstat(fd).st_size
        floor = 0 if max_bytes is None else max(0, pos - max_bytes)
        buf = b""
        started = False  # found the newline that ends the last complete line
        while pos > floor:
            step = min(BLOCK, pos - floor)
            pos -= step
            buf = os.pread(fd, step, pos) + buf
            if not started:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    continue  # all unfinished so far
                buf, started = buf[:cut], True
            cut = buf.rfind(b"\n")
            while cut >= 0:
                yield buf[cut + 1:]
                buf = buf[:cut]
                cut = buf.rfind(b"\n")
        if started and pos == 0:
            yield buf  # the file's first line
    finally:
        os.close(fd)


def numbered_files(folder: Path, pattern: re.Pattern[str]) -> list[str]:
    """Names in `folder` matching `pattern` (first group: the number), in number order."""
    try:
        names = [e.name for e in os.scandir(folder) if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names, key=lambda n: (len(pattern.fullmatch(n).group(1)), n))


@dataclass(frozen=True)
class PingLine:
    ping_ts: str
    unit_id: str
    nickname: str | None
    rssi_raw: str | None
    rssi_dbm: str | None
    ber_raw: str | None

    @classmethod
    def parse(cls, raw: bytes) -> PingLine | None:
        fields = raw.decode("utf-8", errors="replace").split("\t")  # nicknames are UTF-8 (DATA-FORMATS.md)
        if len(fields) < 2 or parse_iso(fields[0]) is None or not fields[1]:
            return None
        fields += [None] * (6 - len(fields))
        values = [None if f in (None, "", "None") else f for f in fields[:6]]
        return cls(fields[0], fields[1], *values[2:6])


def recent_pings(pings_dir: Path, n: int, max_bytes: int | None = None) -> list[PingLine]:
    """The last `n` pings of the TSV logs, newest first (unparseable lines skipped)."""
    found: list[PingLine] = []
    budget = max_bytes
    for name in reversed(numbered_files(pings_dir, PINGS_FILE_RE)):
        path = pings_dir / name
        for raw in lines_backwards(path, budget):
            ping = PingLine.parse(raw)
            if ping is not None:
                found.append(ping)
                if len(found) >= n:
                    return found
        if budget is not None:
            try:
                budget -= os.lstat(path).st_size
            except OSError:
                pass
            if budget <= 0:
                break
    return found


def last_line_fields(path: Path, accept) -> tuple[list[str], bytes] | None:
    """The last complete line near the end of `path` that `accept(fields)` takes."""
    for raw in lines_backwards(path, LAST_LINE_BYTES):
        fields = raw.decode("ascii", errors="replace").split("\t")
        if accept(fields):
            return fields, raw
    return None


# ---------------------------------------------------------------- per unit

@dataclass
class FolderStats:
    files: int = 0
    bytes: int = 0


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

    def as_json(self, now: datetime) -> dict:
        ago = (now - self.last_ping).total_seconds() if self.last_ping else None
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
        }


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# Per-process caches, so a request costs two stats per folder, not one per file.
# The uploaded files are sequential and append-only: every file of a folder
# but the last one (by sorted name) is finished, so their sizes are kept while
# the folder's own mtime (a file added, removed or renamed) is unchanged; the
# last file is stat'ed on every request. A folder changed within the last
# second is never cached (mtime granularity), and entries expire anyway.
FOLDER_CACHE_TTL_S = 600.0
_folder_cache: dict[str, tuple[int, float, int, int, str, tuple[str, ...]]] = {}
_tail_cache: dict[tuple[str, int, int], str | None] = {}


def _full_scan(folder: str, pattern: re.Pattern[str]) -> tuple[int, int, str, int, list[str]]:
    """(files, bytes, last name, last size, names matching pattern) from one scandir."""
    files = total = 0
    last_name, last_size, names = "", 0, []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name[0] != "." and entry.is_file(follow_symlinks=False):
                size = entry.stat(follow_symlinks=False).st_size
                files += 1
                total += size
                if name > last_name:
                    last_name, last_size = name, size
                if pattern.fullmatch(name):
                    names.append(name)
    names.sort()
    return files, total, last_name, last_size, names


def _scan_files(folder: str, pattern: re.Pattern[str]) -> tuple[FolderStats, list[str]]:
    """Count and size of the plain files in `folder`, and the names matching `pattern`, sorted."""
    try:
        st = os.lstat(folder)
    except OSError:
        return FolderStats(), []
    if not stat.S_ISDIR(st.st_mode):
        return FolderStats(), []
    now = time.monotonic()
    hit = _folder_cache.get(folder)
    if hit and hit[0] == st.st_mtime_ns and now - hit[1] < FOLDER_CACHE_TTL_S:
        _mtime, _at, files, frozen_bytes, last_name, names = hit
        try:
            last_size = os.lstat(folder + os.sep + last_name).st_size if last_name else 0
            return FolderStats(files, frozen_bytes + last_size), list(names)
        except OSError:
            pass  # gone meanwhile: scan afresh
    try:
        files, total, last_name, last_size, names = _full_scan(folder, pattern)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return FolderStats(), []
    if time.time() - st.st_mtime_ns / 1e9 > 1.0:
        _folder_cache[folder] = (st.st_mtime_ns, now, files, total - last_size, last_name, tuple(names))
    return FolderStats(files, total), names


def _cached_tail(path: str, compute) -> str | None:
    """compute(path), remembered while the file's size and mtime stay the same."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _tail_cache:
        if len(_tail_cache) > 20000:
            _tail_cache.clear()
        _tail_cache[key] = compute(Path(path))
    return _tail_cache[key]


def _subdirs(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.name[0] != "." and e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _reading_fields(fields: list[str]) -> bool:
    return len(fields) >= 4 and bool(_DATE_RE.fullmatch(fields[2]) and _TIME_RE.fullmatch(fields[3]))


def _reading_time(path: Path) -> str | None:
    found = last_line_fields(path, _reading_fields)
    return f"{found[0][2]}T{found[0][3]}" if found else None


def _newest_reading(readings_dir: str, names: list[str]) -> str | None:
    """Date and time of the last complete reading line (the unit's clock, UTC)."""
    for name in reversed(names[-2:]):  # a just-started file may hold no complete line yet
        found = _cached_tail(readings_dir + os.sep + name, _reading_time)
        if found:
            return found
    return None


def _error_summary_line(path: Path) -> str | None:
    fallback = None
    for raw in lines_backwards(path, LAST_LINE_BYTES):
        if raw.startswith(b"----- "):
            return printable(raw[6:])
        if fallback is None and raw.strip():
            fallback = printable(raw)
    return fallback


def _newest_error_line(errors_dir: str, names: list[str]) -> str | None:
    """The summary line of the newest entry of the last error log (else its last line)."""
    if not names:
        return None
    return _cached_tail(errors_dir + os.sep + names[-1], _error_summary_line)


def _superseded_times(superseded_dir: str) -> list[str]:
    times = []
    for stamp in _subdirs(superseded_dir):
        try:
            times.append(iso_seconds(datetime.strptime(stamp, _SUPERSEDED_STAMP)))
        except ValueError:
            times.append(stamp)  # moved aside by hand: still worth a warning
    return sorted(times)


def scan_unit_folder(unit: UnitStatus, unit_dir: str, fetches: dict[tuple[str, str], str]) -> None:
    """Fill in what the unit's folder under remote_data/ tells (sizes, last lines, updates).

    Plain string paths and one scandir per folder: this runs for every unit
    on every request.
    """
    present = set(_subdirs(unit_dir))
    if not present and not os.path.isdir(unit_dir):
        return
    sep = os.sep
    errors_dir = unit_dir + sep + "errors"
    unit.folders["errors"], error_logs = _scan_files(errors_dir, ERRORS_FILE_RE)
    unit.newest_error_line = _newest_error_line(errors_dir, error_logs)
    if "data" in present:
        for sub in _subdirs(unit_dir + sep + "data"):
            folder = unit_dir + sep + "data" + sep + sub
            stats, names = _scan_files(folder, READINGS_FILE_RE)
            if stats.files:
                unit.folders[f"data/{sub}"] = stats
            if sub == "readings":
                unit.newest_reading = _newest_reading(folder, names)
    if "updates" in present:
        try:
            names = complete_updates(Path(unit_dir, "updates"))
        except OSError:
            names = []
        if names:
            unit.pending_update = names[-1]
            unit.update_fetched_at = fetches.get((unit.hw_id, names[-1]))
    if SUPERSEDED in present:
        unit.sd_replaced_at = _superseded_times(unit_dir + sep + SUPERSEDED)
        unit.usage = unit_usage(unit_dir)  # the folders kept aside count too (rare: walk them)
    else:
        unit.usage = (sum(f.bytes for f in unit.folders.values()), sum(f.files for f in unit.folders.values()))


def read_update_fetches(log_path: Path) -> dict[tuple[str, str], str]:
    """{(hw_id, update folder): time of the first fetched file} from var/update-fetches.tsv."""
    fetched: dict[tuple[str, str], str] = {}
    for raw in lines_backwards(log_path, FETCH_LOG_TAIL_BYTES):
        fields = raw.decode("ascii", errors="replace").split("\t")
        if len(fields) >= 3:
            top = fields[2].split("/", 1)[0]
            fetched[(fields[1], top)] = fields[0][:19]  # backwards: the earliest wins
    return fetched


def read_ping_repairs(log_path: Path) -> dict[str, tuple[datetime | None, str]]:
    """{hw_id: (ping time, what was repaired)} of each unit's last repaired ping (var/ping-repairs.tsv)."""
    repairs: dict[str, tuple[datetime | None, str]] = {}
    for raw in lines_backwards(log_path, PINGS_TAIL_BYTES):
        fields = raw.decode("utf-8", errors="replace").split("\t")
        if len(fields) >= 3 and fields[1] not in repairs:  # backwards: the newest wins
            repairs[fields[1]] = (parse_iso(fields[0]), printable_text(fields[2]))
    return repairs


def printable_text(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """`printable` for text that may be UTF-8: control characters replaced, capped."""
    text = "".join("\N{REPLACEMENT CHARACTER}" if c < " " or "\x7f" <= c <= "\x9f" else c for c in text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


# ---------------------------------------------------------------- database

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


@dataclass
class DbPings:
    last: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)
    count_24h: dict[str, int] = field(default_factory=dict)
    deployments: list[tuple] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_database(db_path: Path, since_iso: str) -> DbPings:
    """Per-unit last ping and 24-hour count (index seeks), and the deployments table."""
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
                    out.last[unit_id] = (row[0], row[1], _as_int(row[2]))
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


def _apply_deployments(units: dict[str, UnitStatus], rows: list[tuple], now: datetime) -> None:
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


# ---------------------------------------------------------------- the whole table

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
            "problems": self.problems,
            "units": [u.as_json(self.generated_at) for u in self.units],
        }


def unit_folders(config: Config) -> list[str]:
    """Folders under remote_data/ named like a hardware ID."""
    try:
        with os.scandir(config.data_dir) as entries:
            return sorted(
                e.name for e in entries
                if config.hw_id_re.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def build_dashboard(config: Config, now: datetime | None = None) -> Dashboard:
    """Every unit ever heard of, silent ones first, then by nickname and hardware ID."""
    now = now or utc_now()
    since = now - timedelta(hours=24)
    from_db = read_database(config.db_path, since.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    tail = recent_pings(config.pings_dir, 10**9, PINGS_TAIL_BYTES)

    ids = set(from_db.last) | {p.unit_id for p in tail if config.hw_id_re.fullmatch(p.unit_id)}
    ids |= set(unit_folders(config))
    units = {hw_id: UnitStatus(hw_id) for hw_id in ids}

    for hw_id, (ts, nickname, rssi) in from_db.last.items():
        unit = units[hw_id]
        unit.last_ping, unit.nickname, unit.rssi_dbm = parse_iso(ts), nickname, rssi
        unit.pings_24h = from_db.count_24h.get(hw_id, 0)
    # The log may be ahead of the database (a failed insert, a fresh server).
    tail_counts: dict[str, int] = {}
    for ping in tail:  # newest first
        unit = units.get(ping.unit_id)
        ts = parse_iso(ping.ping_ts)
        if unit is None or ts is None:
            continue
        if ts >= since:
            tail_counts[ping.unit_id] = tail_counts.get(ping.unit_id, 0) + 1
        if unit.last_ping is None or ts > unit.last_ping:
            unit.last_ping, unit.nickname, unit.rssi_dbm = ts, ping.nickname, _as_int(ping.rssi_dbm)
    for hw_id, count in tail_counts.items():
        units[hw_id].pings_24h = max(units[hw_id].pings_24h, count)

    _apply_deployments(units, from_db.deployments, now)
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

    ordered = sorted(units.values(), key=lambda u: (not u.silent, (u.nickname or "~").lower(), u.hw_id))
    return Dashboard(now, config.silent_hours, ordered, from_db.problems)
