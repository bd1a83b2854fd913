"""The shared incremental file reader: what was imported, up to where.

Input files only grow (units and the server append to them). For each file
the table import_state remembers its size and mtime when last looked at, the
byte offset just after the last complete line imported (done_bytes), the
number of lines imported and a hash of the imported part. A run then:

- reads nothing from a file whose size and mtime are unchanged (so a run with
  nothing new costs one stat() per file);
- otherwise re-hashes the imported part: if it is intact, reads only from
  done_bytes on (an append); if the file shrank or its imported part
  changed, the importer deletes the file's rows and re-imports it whole;
- imports only complete lines: bytes after the last newline wait for the
  next run;
- recognises a file that moved (the server moves a replaced SD card's folders
  under superseded/<stamp>/): a new file whose start matches the imported part
  of a vanished (or rewritten) file with the same move key takes over its rows
  and state instead of being imported a second time;
- keeps the rows and the state of a file that vanished without reappearing
  (acknowledged data is never deleted).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHECK_SPAN = 4096  # bytes hashed at each end of the imported part

NEW = "new"
UNCHANGED = "unchanged"
APPENDED = "appended"
REWRITTEN = "rewritten"


@dataclass
class FileState:
    """One row of import_state."""

    file: str
    kind: str
    size: int = 0
    mtime_ns: int = 0
    done_bytes: int = 0
    done_lines: int = 0
    check_hash: str = ""
    carry: str | None = None

    def carry_value(self):
        """The importer-specific carry-over, decoded from JSON (None if unset)."""
        return None if self.carry is None else json.loads(self.carry)


@dataclass
class SourceFile:
    """An input file found on disk: its label in the tables and where it is."""

    label: str
    path: Path
    move_key: str | None = None  # files with equal keys may be moves of each other


@dataclass
class Work:
    """What a run does with one input file."""

    source: SourceFile
    mode: str  # NEW, UNCHANGED, APPENDED or REWRITTEN
    state: FileState  # the state to continue from (fresh for NEW/REWRITTEN)
    size: int
    mtime_ns: int


@dataclass
class Chunk:
    """The complete lines read from a file past its done_bytes."""

    data: bytes  # empty, or ending with b"\n"
    pending: int  # bytes after the last newline (an incomplete last line)
    end: int  # done_bytes after importing data
    size: int  # bytes seen in the file
    check_hash: str  # hash of [0, end)


def load_states(conn: sqlite3.Connection, kind: str) -> dict[str, FileState]:
    """All import_state rows of one kind, by file label."""
    rows = conn.execute(
        "SELECT file, kind, size, mtime_ns, done_bytes, done_lines, check_hash, carry FROM import_state WHERE kind = ?",
        (kind,),
    )
    return {row[0]: FileState(*row) for row in rows}


def save_state(conn: sqlite3.Connection, state: FileState) -> None:
    """Insert or replace one import_state row."""
    conn.execute(
        "INSERT OR REPLACE INTO import_state"
        " (file, kind, size, mtime_ns, done_bytes, done_lines, check_hash, carry)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            state.file,
            state.kind,
            state.size,
            state.mtime_ns,
            state.done_bytes,
            state.done_lines,
            state.check_hash,
            state.carry,
        ),
    )


def delete_state(conn: sqlite3.Connection, label: str) -> None:
    """Forget one file's import_state row."""
    conn.execute("DELETE FROM import_state WHERE file = ?", (label,))


def forget_file(conn: sqlite3.Connection, table: str, label: str) -> None:
    """Delete the rows of `table` and the rejected lines that came from one file."""
    conn.execute(f"DELETE FROM {table} WHERE source_file = ?", (label,))
    conn.execute("DELETE FROM rejected_lines WHERE file = ?", (label,))


def relabel_file(conn: sqlite3.Connection, table: str, old: str, new: str) -> None:
    """Move a file's rows to its new label (the file was moved, not changed)."""
    conn.execute(f"UPDATE {table} SET source_file = ? WHERE source_file = ?", (new, old))
    conn.execute("UPDATE rejected_lines SET file = ? WHERE file = ?", (new, old))


def hash_parts(head: bytes, tail: bytes, end: int) -> str:
    """The check hash of an imported part [0, end) from its first and last bytes."""
    digest = hashlib.sha1(str(end).encode())
    digest.update(head)
    digest.update(tail)
    return digest.hexdigest()


def read_check_hash(fh, end: int) -> str:
    """Hash of bytes [0, end) of an open binary file, from its two ends."""
    fh.seek(0)
    head = fh.read(min(end, CHECK_SPAN))
    start = max(0, end - CHECK_SPAN)
    fh.seek(start)
    tail = fh.read(end - start)
    return hash_parts(head, tail, end)


def file_check_hash(path: Path, end: int) -> str | None:
    """Hash of bytes [0, end) of path, or None if it is shorter or unreadable."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < end:
                return None
            return read_check_hash(fh, end)
    except OSError:
        return None


def read_new_lines(path: Path, offset: int) -> Chunk:
    """Read the complete lines of path from byte offset on."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
        last_nl = data.rfind(b"\n") + 1
        pending = len(data) - last_nl
        if pending:
            data = data[:last_nl]
        end = offset + last_nl
        if offset == 0:
            check = hash_parts(data[:CHECK_SPAN], data[max(0, end - CHECK_SPAN) :], end)
        else:
            check = read_check_hash(fh, end)
    return Chunk(data, pending, end, end + pending, check)


def stat_or_none(path: Path) -> os.stat_result | None:
    """os.stat(path), or None when the file is gone."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def plan(
    conn: sqlite3.Connection,
    kind: str,
    sources: Iterable[SourceFile],
    relabel: Callable[[str, str], None],
) -> tuple[list[Work], list[FileState]]:
    """Decide per input file what to do; return (work in input order, vanished states).

    relabel(old, new) must move a file's rows to a new label; it runs inside
    the caller's transaction (the caller commits).
    """
    states = load_states(conn, kind)
    seen: set[str] = set()
    work: list[Work] = []
    candidates: dict[str | None, list[FileState]] = {}  # lost or rewritten, by move key
    key_of: dict[str, str | None] = {}
    for src in sources:
        seen.add(src.label)
        st = stat_or_none(src.path)
        if st is None:
            continue
        state = states.get(src.label)
        key_of[src.label] = src.move_key
        if state is None:
            mode = NEW
        elif st.st_size == state.size and st.st_mtime_ns == state.mtime_ns:
            mode = UNCHANGED
        elif st.st_size < state.done_bytes:
            mode = REWRITTEN
        elif file_check_hash(src.path, state.done_bytes) != state.check_hash:
            mode = REWRITTEN
        else:
            mode = APPENDED
        if mode == REWRITTEN:
            candidates.setdefault(src.move_key, []).append(state)
        work.append(Work(src, mode, state, st.st_size, st.st_mtime_ns))
    vanished = [s for label, s in states.items() if label not in seen]
    for state in vanished:
        # The move key of a vanished file is not known from disk: importers
        # derive it from the label the same way they derive it for sources.
        candidates.setdefault(move_key_of_label(state.file), []).append(state)

    taken: set[str] = set()
    for item in work:
        if item.mode != NEW:
            continue
        for old in candidates.get(item.source.move_key, ()):
            if old.file in taken or item.size < old.done_bytes:
                continue
            if file_check_hash(item.source.path, old.done_bytes) != old.check_hash:
                continue
            taken.add(old.file)
            relabel(old.file, item.source.label)
            delete_state(conn, old.file)
            moved = FileState(**{**old.__dict__, "file": item.source.label})
            save_state(conn, moved)
            item.state = moved
            item.mode = UNCHANGED if (item.size, item.mtime_ns) == (old.size, old.mtime_ns) else APPENDED
            break
    for item in work:
        if item.mode == REWRITTEN and item.state.file in taken:
            item.mode = NEW  # its old content moved away with its rows
        if item.mode in (NEW, REWRITTEN):
            item.state = FileState(item.source.label, kind)
    vanished = [s for s in vanished if s.file not in taken]
    return work, vanished


def move_key_of_label(label: str) -> str:
    """The move key of a file label: its unit folder and base name.

    superseded/<stamp>/ parts are dropped, so that
    co2unit-X/superseded/20200101T000000Z/data/readings/readings-0000.tsv and
    co2unit-X/data/readings/readings-0000.tsv share a key.
    """
    parts = label.split("/")
    if len(parts) >= 3 and parts[1] == "superseded":
        parts = parts[:1] + parts[3:]
    return "/".join(parts)


class Progress:
    """Progress on stderr for long runs: at most one line every few seconds."""

    def __init__(self, kind: str, total_bytes: int, every_s: float = 2.0):
        self.kind = kind
        self.total = total_bytes
        self.every_s = every_s
        self.start = self.last = time.monotonic()
        self.done = 0

    def advance(self, nbytes: int, files_done: int, files_total: int) -> None:
        """Count nbytes more as read; print a line when it is time."""
        self.done += nbytes
        now = time.monotonic()
        if now - self.last >= self.every_s and self.total:
            self.last = now
            pct = 100.0 * self.done / self.total
            print(
                f"{self.kind}: {pct:5.1f}% ({files_done}/{files_total} files,"
                f" {self.done / 1e6:.0f}/{self.total / 1e6:.0f} MB, {now - self.start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing millions of small objects.

    They hold no reference cycles; the collector would only rescan them again
    and again (measured: a full readings import parses three times faster).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def format_skips(skips: dict[str, int]) -> str:
    """'skipped: a=1 b=2' in a fixed order, or 'skipped: none'."""
    parts = [f"{reason}={count}" for reason, count in skips.items() if count]
    return "skipped: " + (" ".join(parts) if parts else "none")


def touch_marker(marker: str | Path | None, changed: bool) -> None:
    """Touch the make marker when rows changed (or when it does not exist yet)."""
    if marker is None:
        return
    marker = Path(marker)
    if changed or not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


DEFAULT_UNIT_PATTERN = r"co2unit-[0-9a-f]{12}"


def _sorted_names(folder: Path, name_re) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if name_re.fullmatch(e.name) and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _sorted_dirs(folder: Path, name_re=None) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.is_dir() and (name_re is None or name_re.fullmatch(e.name)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def find_unit_files(
    data_dir: Path, unit_pattern: str, subdir: str, file_pattern: str
) -> list[tuple[str, list[SourceFile]]]:
    """The sequential files of every unit, in the order their lines were written.

    Returns [(unit folder, files)], units sorted by name; per unit first each
    superseded/<stamp>/<subdir>/ (stamps sorted), then the current <subdir>/,
    files sorted by name within each folder.
    """
    import re

    unit_re = re.compile(unit_pattern)
    file_re = re.compile(file_pattern)
    result = []
    for unit in _sorted_dirs(data_dir, unit_re):
        folders = [f"{unit}/superseded/{stamp}/{subdir}" for stamp in _sorted_dirs(data_dir / unit / "superseded")]
        folders.append(f"{unit}/{subdir}")
        files = []
        for folder in folders:
            for name in _sorted_names(data_dir / folder, file_re):
                label = f"{folder}/{name}"
                files.append(SourceFile(label, data_dir / label, move_key_of_label(label)))
        if files:
            result.append((unit, files))
    return result
