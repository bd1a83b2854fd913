"""Import the server's pings-NNNN.tsv logs into pings.

Sources: PINGS_DIR/pings-NNNN.tsv (labelled var/pings/<name>) and copies of
other servers' logs, DATA_DIR/server-<host>/var/pings/pings-NNNN.tsv
(labelled by their path under DATA_DIR). One row per line: ping_ts as
written, split at `T` into ping_date/ping_time; `None` and empty fields are
NULL; nicknames otherwise kept as written; ber_raw is NULL for 5-column lines.
Rows are inserted with INSERT OR IGNORE on the unique (ping_ts, unit_id), so
the server's live inserts and the import of the same lines give one row.

Malformed lines (recorded in rejected_lines): non_printing (a control byte
other than TAB, or bytes that are not UTF-8: the server writes nicknames as
UTF-8 text), bad_field_count (neither 5 nor 6 fields),
bad_timestamp (ping_ts not YYYY-MM-DDTHH:MM:SS[.ffffff]), bad_unit_id (the
hardware ID does not start with `co2unit-`). A last line without newline
waits for the next run. A rewritten file is read again whole; rows already
in the table stay (pings carry no source file, and are never deleted).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

from . import db
from .incremental import (
    UNCHANGED,
    Progress,
    SourceFile,
    format_skips,
    gc_paused,
    plan,
    read_new_lines,
    save_state,
    touch_marker,
)

KIND = "pings"
REASONS = (
    "incomplete_last_line",
    "non_printing",
    "bad_field_count",
    "bad_timestamp",
    "bad_unit_id",
)
PINGS_LABEL_DIR = "var/pings"
_FILE_RE = re.compile(r"pings-\d+\.tsv")
_SERVER_RE = re.compile(r"server-.+")
_TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?")
_PRINTABLE = b"\t\n" + bytes(range(0x20, 0x7F))
_NOT_ASCII = bytes(range(0x80, 0x100))
# Control bytes other than TAB (and the newline): a line holding one is non_printing.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
COMMIT_BYTES = 4 << 20  # commit at the next file boundary after this much input
_INSERT = "INSERT OR IGNORE INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_NOT_TAB_OR_NEWLINE = bytes(b for b in range(256) if b not in b"\t\n")
# The same row from the six fields of a well-formed line (a 5-field line's
# ber_raw bound as NULL): the split at T and None/empty to NULL done in SQL.
_INSERT_FIELDS = (
    "INSERT OR IGNORE INTO pings VALUES (?1, substr(?1, 1, 10), substr(?1, 12), ?2,"
    " NULLIF(NULLIF(?3, 'None'), ''), NULLIF(NULLIF(?4, 'None'), ''),"
    " NULLIF(NULLIF(?5, 'None'), ''), NULLIF(NULLIF(?6, 'None'), ''))"
)
_REJECT = "INSERT INTO rejected_lines (file, line_no, reason, raw) VALUES (?, ?, ?, ?)"


def _pings_files(folder: Path, label_dir: str) -> list[SourceFile]:
    try:
        names = sorted(p.name for p in folder.iterdir() if _FILE_RE.fullmatch(p.name))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [SourceFile(f"{label_dir}/{name}", folder / name) for name in names]


def find_pings_files(pings_dir: Path | None, data_dir: Path | None) -> list[SourceFile]:
    """The server's own ping logs, then copies of other servers' logs."""
    sources = _pings_files(Path(pings_dir), PINGS_LABEL_DIR) if pings_dir else []
    if data_dir:
        try:
            servers = sorted(p.name for p in Path(data_dir).iterdir() if _SERVER_RE.fullmatch(p.name))
        except (FileNotFoundError, NotADirectoryError):
            servers = []
        for server in servers:
            folder = f"{server}/var/pings"
            sources += _pings_files(Path(data_dir) / folder, folder)
    return sources


def reject_reason(raw: bytes) -> str | None:
    """The reason a complete ping line is not imported, or None."""
    if raw.translate(None, _PRINTABLE):
        if _CONTROL_BYTES.search(raw):
            return "non_printing"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return "non_printing"
    fields = raw.split(b"\t")
    if len(fields) not in (5, 6):
        return "bad_field_count"
    if not _TS_RE.fullmatch(fields[0].decode("utf-8")):
        return "bad_timestamp"
    if not fields[1].startswith(b"co2unit-"):
        return "bad_unit_id"
    return None


def fast_rows(data: bytes, nlines: int) -> Iterator[tuple] | None:
    """The field tuples of a chunk of well-formed lines (for _INSERT_FIELDS), or None.

    Whole-chunk tests instead of per-line work: printable ASCII or UTF-8
    without control bytes, every line 5 or every line 6 fields, each line's
    hardware ID starts with `co2unit-` and each timestamp has the full form.
    """
    if not nlines or data.count(b"\tco2unit-") != nlines:
        return None
    if data.translate(None, _PRINTABLE):
        if data.translate(None, _NOT_ASCII).translate(None, _PRINTABLE):
            return None  # a control byte somewhere
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = data.decode("ascii")
    skeleton = data.translate(None, _NOT_TAB_OR_NEWLINE)
    for nfields in (6, 5):
        if skeleton == (b"\t" * (nfields - 1) + b"\n") * nlines:
            break
    else:
        return None
    fields = text.replace("\n", "\t").split("\t")
    fields.pop()
    stamps = fields[::nfields]
    if not all(map(_TS_RE.fullmatch, stamps)) or not all(u.startswith("co2unit-") for u in fields[1::nfields]):
        return None
    it = iter(fields)
    return zip(*(it,) * nfields, *((repeat(None),) if nfields == 5 else ()), strict=False)


def ping_row(line: str) -> tuple:
    """The pings row of a good line."""
    fields = [None if v in ("None", "") else v for v in line.split("\t")]
    if len(fields) == 5:
        fields.append(None)
    ts = fields[0]
    date, _, time = ts.partition("T")
    return (ts, date, time, *fields[1:])


def import_pings(
    conn: sqlite3.Connection,
    pings_dir: Path | None,
    data_dir: Path | None,
    marker: Path | None = None,
) -> str:
    """Import what is new in every pings log; return the summary line."""
    skips = dict.fromkeys(REASONS, 0)
    lines_read = new_rows = changed_files = rejected = 0
    with db.transaction(conn), gc_paused():
        work, vanished = plan(
            conn,
            KIND,
            find_pings_files(pings_dir, data_dir),
            lambda old, new: conn.execute("UPDATE rejected_lines SET file = ? WHERE file = ?", (new, old)),
        )
        todo = [w for w in work if w.mode != UNCHANGED]
        uncommitted = 0
        progress = Progress(KIND, sum(max(0, w.size - w.state.done_bytes) for w in todo))
        for i, item in enumerate(todo, 1):
            state = item.state
            if state.done_bytes == 0:
                conn.execute("DELETE FROM rejected_lines WHERE file = ?", (state.file,))
            try:
                chunk = read_new_lines(item.source.path, state.done_bytes)
            except FileNotFoundError:
                continue
            nlines = chunk.data.count(b"\n")
            before = conn.total_changes
            fast = fast_rows(chunk.data, nlines)
            if fast is not None:
                conn.executemany(_INSERT_FIELDS, fast)
            else:
                rows, rejects = [], []
                lines = chunk.data.split(b"\n")
                lines.pop()
                for no, raw in enumerate(lines, state.done_lines + 1):
                    reason = reject_reason(raw)
                    if reason:
                        skips[reason] += 1
                        rejects.append((state.file, no, reason, raw))
                    else:
                        rows.append(ping_row(raw.decode("utf-8")))
                conn.executemany(_INSERT, rows)
            new_rows += conn.total_changes - before
            if fast is None:
                conn.executemany(_REJECT, rejects)
                rejected += len(rejects)
            lines_read += nlines
            if nlines:
                changed_files += 1
            state.done_lines += nlines
            state.done_bytes = chunk.end
            state.check_hash = chunk.check_hash
            state.size = item.size if chunk.size == item.size else chunk.size
            state.mtime_ns = item.mtime_ns if chunk.size == item.size else 0
            save_state(conn, state)
            progress.advance(len(chunk.data), i, len(todo))
            uncommitted += len(chunk.data)
            if uncommitted >= COMMIT_BYTES:  # let the server's live inserts in
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                uncommitted = 0
    skips["incomplete_last_line"] = conn.execute(
        "SELECT count(*) FROM import_state WHERE kind = ? AND size > done_bytes", (KIND,)
    ).fetchone()[0]
    # Lines already inserted live by the server still mean new pings to show.
    touch_marker(marker, bool(lines_read or new_rows))
    extra = f", {len(vanished)} missing" if vanished else ""
    return (
        f"{KIND}: {len(work)} files ({changed_files} changed{extra}),"
        f" {lines_read - rejected} lines imported ({new_rows} new rows), {format_skips(skips)}"
    )
