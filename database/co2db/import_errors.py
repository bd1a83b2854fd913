"""Import the units' errors-NNNN.txt logs into error_logs.

An entry starts with a line `----- <date> <LEVEL> <message>`; the lines after
it, up to the next entry of the same file, belong to it (a traceback) and are
appended to `message` after a newline. Rules (DATA-FORMATS.md, "Import
rules", plus our own for malformed lines, each recorded in rejected_lines):

- incomplete_last_line: a last line without newline waits for the next run
  (not recorded);
- non_printing: a line holding a control byte other than TAB, or bytes that
  are not UTF-8; if it looked like an entry line, the lines after it are
  orphan_line;
- bad_entry_header: a `----- ` line whose date/time or level cannot be read;
- orphan_line: a line that belongs to no imported entry (before the first
  entry of a file, or after a rejected entry line).

Dates: odate/otime are the written date and time, normalised; an entry dated
1970 takes as idate/itime the written date/time of the last non-1970 entry
before it in the same unit's log (superseded folders by stamp, then the
current one; files by name), or NULL if there is none. etype is the last of
uncaught, watchdog, signal, backoff, transmit whose pattern matches the
message (summary and the lines after it); otherwise NULL.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

from . import db
from .incremental import (
    APPENDED,
    DEFAULT_UNIT_PATTERN,
    UNCHANGED,
    FileState,
    Progress,
    find_unit_files,
    forget_file,
    format_skips,
    gc_paused,
    plan,
    read_new_lines,
    relabel_file,
    save_state,
    touch_marker,
)

TABLE = "error_logs"
KIND = "errors"
SUBDIR = "errors"
FILE_PATTERN = r"errors-\d+\.txt"
REASONS = ("incomplete_last_line", "non_printing", "bad_entry_header", "orphan_line")
ENTRY_PREFIX = "----- "

_TUPLE_HEADER = re.compile(r"\((\d+), *(\d+), *(\d+), *(\d+), *(\d+), *(\d+)(?:, *-?\d+)*\) +(\S+)(?: +(.*))?")
_ISO_HEADER = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) +(\S+)(?: +(.*))?")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_WATCHDOG = re.compile(r"[Ww]atch ?dog")
# Bytes that make a line non_printing: control bytes other than TAB (and the newline).
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_INSERT = "INSERT INTO error_logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_REJECT = "INSERT INTO rejected_lines (file, line_no, reason, raw) VALUES (?, ?, ?, ?)"


def etype_of(message: str) -> str | None:
    """The last entry type whose pattern matches message, or None."""
    # Checked from the end of the list: the first hit is the last match.
    if "transmitting" in message:
        return "transmit"
    if "backoff" in message:
        return "backoff"
    if "Signal quality" in message:
        return "signal"
    if "atch" in message and _WATCHDOG.search(message):
        return "watchdog"
    if "Uncaught exception" in message:
        return "uncaught"
    return None


def _checked(year: int, month: int, day: int, hour: int, minute: int, second: int) -> tuple[str, str] | None:
    """(odate, otime) normalised, or None if no such moment exists (31 February, hour 24...)."""
    try:
        when = datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):  # OverflowError: digits beyond a C int
        return None
    return f"{when.year:04d}-{when.month:02d}-{when.day:02d}", f"{when:%H:%M:%S}"


def parse_header(rest: str) -> tuple[str, str, str, str] | None:
    """(odate, otime, level, message) of the text after `----- `, or None."""
    match = _ISO_HEADER.fullmatch(rest)
    if match:
        odate, otime, level, message = match.groups()
        moment = _checked(int(odate[:4]), int(odate[5:7]), int(odate[8:10]),
                          int(otime[:2]), int(otime[3:5]), int(otime[6:8]))  # fmt: skip
        if moment is None:
            return None
        return odate, otime, level, message or ""
    match = _TUPLE_HEADER.fullmatch(rest)
    if not match:
        return None
    moment = _checked(*(int(v) for v in match.groups()[:6]))
    if moment is None:
        return None
    return *moment, match.group(7), match.group(8) or ""


def _decode_clean(data: bytes) -> list[str] | None:
    """The lines of data as text if none holds non-printing bytes, else None."""
    if _CONTROL_BYTES.search(data):
        return None
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None


def decode_line(raw: bytes) -> str | None:
    """The line as text, or None if it holds non-printing bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _CONTROL.search(text):
        return None
    return text


class FileParse:
    """Parses one error log from where its last import stopped."""

    def __init__(self, unit: str, label: str, carry: dict):
        self.unit = unit
        self.label = label
        self.good = carry.get("out")  # [date, time] of the last non-1970 entry, or None
        self.open_line = carry.get("open")  # line_no of the entry still open
        self.continued_line = self.open_line  # the entry an earlier run left open
        self.entries: list[list] = []  # rows being built, message as a list of parts
        self.continued: list[str] = []  # lines continuing an entry of an earlier run
        self.rejects: list[tuple] = []

    def feed(self, data: bytes, first_line_no: int, skips: dict[str, int]) -> int:
        """Parse complete lines; return how many."""
        texts = _decode_clean(data)
        raws = None
        if texts is None:  # some line holds non-printing bytes: decode line by line
            raws = data.split(b"\n")
            texts = [decode_line(raw) for raw in raws]
        texts.pop()
        current = None  # the entry row the next continuation line belongs to
        for no, text in enumerate(texts, first_line_no):
            if text is None:
                raw = raws[no - first_line_no]
                self._reject(no, "non_printing", raw, skips)
                if raw.startswith(b"----- "):
                    current, self.open_line = None, None
                continue
            if text.startswith(ENTRY_PREFIX):
                header = parse_header(text[len(ENTRY_PREFIX) :])
                if header is None:
                    self._reject(no, "bad_entry_header", text.encode(), skips)
                    current, self.open_line = None, None
                    continue
                odate, otime, level, message = header
                if odate.startswith("1970-"):
                    idate, itime = self.good if self.good else (None, None)
                else:
                    self.good = [odate, otime]
                    idate, itime = odate, otime
                current = [self.unit, idate, itime, None, odate, otime, level, [message]]
                current += [self.label, no]
                self.entries.append(current)
                self.open_line = no
            elif current is not None:
                current[7].append(text)
            elif self.open_line is not None:
                self.continued.append(text)
            else:
                self._reject(no, "orphan_line", text.encode(), skips)
        return len(texts)

    def _reject(self, no: int, reason: str, raw: bytes, skips: dict[str, int]) -> None:
        skips[reason] += 1
        self.rejects.append((self.label, no, reason, raw))

    def carry_out(self, carry_in) -> str:
        """The JSON carry stored with the file's state."""
        return json.dumps({"in": carry_in, "out": self.good, "open": self.open_line})

    def write(self, conn: sqlite3.Connection) -> int:
        """Insert the parsed entries and rejects; extend a continued entry."""
        if self.continued:
            row = conn.execute(
                "SELECT rowid, message FROM error_logs WHERE source_file = ? AND line_no = ?",
                (self.label, self.continued_line),
            ).fetchone()
            if row is not None:
                message = "\n".join([row[1], *self.continued])
                conn.execute(
                    "UPDATE error_logs SET message = ?, etype = ? WHERE rowid = ?",
                    (message, etype_of(message), row[0]),
                )
        for entry in self.entries:
            entry[7] = "\n".join(entry[7])
            entry[3] = etype_of(entry[7])
        conn.executemany(_INSERT, self.entries)
        conn.executemany(_REJECT, self.rejects)
        return len(self.entries)


def import_errors(
    conn: sqlite3.Connection,
    data_dir: Path,
    unit_pattern: str = DEFAULT_UNIT_PATTERN,
    marker: Path | None = None,
) -> str:
    """Import what is new in every error log; return the summary line."""
    data_dir = Path(data_dir)
    units = find_unit_files(data_dir, unit_pattern, SUBDIR, FILE_PATTERN)
    skips = dict.fromkeys(REASONS, 0)
    entries = lines_read = changed_files = files = 0
    reimported = False
    with db.transaction(conn), gc_paused():
        work, vanished = plan(
            conn,
            KIND,
            [src for _unit, srcs in units for src in srcs],
            lambda o, n: relabel_file(conn, TABLE, o, n),
        )
        by_label = {item.source.label: item for item in work}
        total = sum(max(0, w.size - w.state.done_bytes) for w in work if w.mode != UNCHANGED)
        progress = Progress(KIND, total)
        for unit, srcs in units:
            carry_in = None  # [date, time] of the last good entry before this file
            for src in srcs:
                item = by_label.get(src.label)
                if item is None:
                    continue  # vanished between listing and planning
                files += 1
                state = item.state
                stored = state.carry_value() or {}
                if item.mode == UNCHANGED and stored.get("in") == carry_in:
                    carry_in = stored.get("out")
                    continue
                if item.mode != APPENDED or stored.get("in") != carry_in:
                    # New, rewritten, or the dates carried into it changed:
                    # import the whole file again.
                    if state.done_bytes or stored:
                        reimported = True
                    forget_file(conn, TABLE, src.label)
                    state = FileState(src.label, KIND)
                    stored = {"in": carry_in, "out": carry_in, "open": None}
                try:
                    chunk = read_new_lines(src.path, state.done_bytes)
                except FileNotFoundError:
                    carry_in = stored.get("out")
                    continue
                parse = FileParse(unit, src.label, stored)
                lines_read += parse.feed(chunk.data, state.done_lines + 1, skips)
                entries += parse.write(conn)
                if chunk.data:
                    changed_files += 1
                state.done_lines += chunk.data.count(b"\n")
                state.done_bytes = chunk.end
                state.check_hash = chunk.check_hash
                state.size = item.size if chunk.size == item.size else chunk.size
                state.mtime_ns = item.mtime_ns if chunk.size == item.size else 0
                state.carry = parse.carry_out(carry_in)
                save_state(conn, state)
                carry_in = parse.good
                progress.advance(len(chunk.data), files, len(work))
            # Commit unit by unit: the server's live ping inserts then wait
            # for the write lock only briefly.
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
    rejected = sum(skips.values())
    skips["incomplete_last_line"] = conn.execute(
        "SELECT count(*) FROM import_state WHERE kind = ? AND size > done_bytes", (KIND,)
    ).fetchone()[0]
    touch_marker(marker, bool(lines_read or rejected or reimported))
    extra = f", {len(vanished)} missing" if vanished else ""
    return (
        f"{KIND}: {files} files ({changed_files} changed{extra}),"
        f" {lines_read - rejected} lines imported ({entries} entries written), {format_skips(skips)}"
    )
