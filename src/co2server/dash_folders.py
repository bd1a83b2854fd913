"""What a unit's folder under remote_data/ tells: file counts and sizes, last lines, updates, SD cards."""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .chunks import SUPERSEDED
from .config import Config
from .dash_files import LAST_LINE_BYTES, last_line_fields, lines_backwards
from .dash_text import iso_seconds, printable
from .quota import unit_usage
from .unit_updates import complete_updates

if TYPE_CHECKING:
    from .dashboard import UnitStatus

ERRORS_FILE_RE = re.compile(r"errors-\d{4,}\.txt")
READINGS_FILE_RE = re.compile(r"readings-\d{4,}\.tsv")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RE = re.compile(r"\d{2}:\d{2}:\d{2}")
_SUPERSEDED_STAMP = "%Y%m%dT%H%M%S.%fZ"
# The update-fetch log gains a line per downloaded file; only its end matters.
FETCH_LOG_TAIL_BYTES = 1024 * 1024


@dataclass
class FolderStats:
    files: int = 0
    bytes: int = 0



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

