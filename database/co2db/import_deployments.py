"""Import deploy_durations_tiered.tsv (kept by researchers) into its table.

The file is edited by hand, not appended to, so whenever its size or mtime
changed the table is emptied and the file imported whole; a missing file
leaves the table empty. Rules (DATA-FORMATS.md plus our own for malformed
lines, each recorded in rejected_lines):

- the first line is the header; blank lines (spaces/TABs only) and lines
  whose first non-blank character is `#` are skipped without being counted;
- a CR before the newline (a file saved on Windows) is dropped; the last line
  is imported even without a final newline;
- fields are stripped of surrounding spaces; empty fields and fields missing
  at the end of a short line are NULL;
- non_printing: control bytes other than TAB, or bytes that are not UTF-8;
- bad_field_count: more than 8 fields (a TAB inside the note?);
- no_unit_id: the unit_id field is empty;
- bad_tier: tier is not an integer;
- bad_status: status is none of deployed, en_route, lab_check (empty is NULL);
- bad_timestamp: start_ts or end_ts is neither an ISO date nor date-time.
"""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import date, datetime
from pathlib import Path

from . import db
from .incremental import FileState, format_skips, load_states, save_state, touch_marker

KIND = "deployments"
REASONS = (
    "non_printing",
    "bad_field_count",
    "no_unit_id",
    "bad_tier",
    "bad_status",
    "bad_timestamp",
)
COLUMNS = ("unit_id", "nickname", "site", "tier", "status", "start_ts", "end_ts", "note")
STATUSES = ("deployed", "en_route", "lab_check")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INSERT = "INSERT INTO deploy_durations_tiered VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_REJECT = "INSERT INTO rejected_lines (file, line_no, reason, raw) VALUES (?, ?, ?, ?)"


def file_label(tsv: Path, data_dir: Path | None) -> str:
    """The file's name in rejected_lines: relative to DATA_DIR if inside it."""
    resolved = Path(os.path.abspath(tsv))
    if data_dir is not None:
        try:
            return resolved.relative_to(os.path.abspath(data_dir)).as_posix()
        except ValueError:
            pass
    return resolved.as_posix()


def is_iso_time(value: str) -> bool:
    """True for an ISO date (YYYY-MM-DD) or date-time."""
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value)
    except ValueError:
        return False
    return value[4:5] == "-"


def parse_row(text: str) -> tuple[str | None, tuple]:
    """(reject reason or None, the row) of one data line."""
    if _CONTROL.search(text):
        return "non_printing", ()
    fields = [f.strip(" ") or None for f in text.split("\t")]
    if len(fields) > len(COLUMNS):
        return "bad_field_count", ()
    fields += [None] * (len(COLUMNS) - len(fields))
    unit_id, _nick, _site, tier, status, start_ts, end_ts, _note = fields
    if unit_id is None:
        return "no_unit_id", ()
    if tier is not None:
        try:
            fields[3] = int(tier)
        except ValueError:
            return "bad_tier", ()
    if status is not None and status not in STATUSES:
        return "bad_status", ()
    for value in (start_ts, end_ts):
        if value is not None and not is_iso_time(value):
            return "bad_timestamp", ()
    return None, tuple(fields)


def import_deployments(
    conn: sqlite3.Connection,
    tsv: Path | None,
    data_dir: Path | None = None,
    marker: Path | None = None,
) -> str:
    """Re-import the deployments file if it changed; return the summary line."""
    skips = dict.fromkeys(REASONS, 0)
    old_states = load_states(conn, KIND)
    label = file_label(Path(tsv), data_dir) if tsv else None
    try:
        st = os.stat(tsv) if tsv else None
    except FileNotFoundError:
        st = None
    if st is None:
        changed = bool(old_states) or not db.table_is_empty(conn, "deploy_durations_tiered")
        if changed:
            with db.transaction(conn):
                _forget_all(conn, old_states)
        touch_marker(marker, changed)
        return f"{KIND}: no file {tsv} ({'table emptied' if changed else 'table empty'})"
    old = old_states.get(label)
    if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
        touch_marker(marker, False)
        return f"{KIND}: {label} unchanged, 0 rows imported, {format_skips(skips)}"

    data = Path(tsv).read_bytes()
    rows, rejects = [], []
    lines = data.split(b"\n")
    for no, raw in enumerate(lines[1:], 2):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            reason, row = "non_printing", ()
        else:
            stripped = text.strip(" \t")
            if not stripped or stripped.startswith("#"):
                continue
            reason, row = parse_row(text)
        if reason:
            skips[reason] += 1
            rejects.append((label, no, reason, raw))
        else:
            rows.append(row)
    with db.transaction(conn):
        _forget_all(conn, old_states)
        conn.executemany(_INSERT, rows)
        conn.executemany(_REJECT, rejects)
        save_state(
            conn,
            FileState(label, KIND, st.st_size, st.st_mtime_ns, len(data), len(lines), ""),
        )
    touch_marker(marker, True)
    return f"{KIND}: {label} read, {len(rows)} rows imported, {format_skips(skips)}"


def _forget_all(conn: sqlite3.Connection, old_states: dict[str, FileState]) -> None:
    conn.execute("DELETE FROM deploy_durations_tiered")
    for old_label in old_states:
        conn.execute("DELETE FROM rejected_lines WHERE file = ?", (old_label,))
        conn.execute("DELETE FROM import_state WHERE file = ?", (old_label,))
