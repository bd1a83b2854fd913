"""Import the units' readings-NNNN.tsv files into co2_readings.

Rules (DATA-FORMATS.md, "Import rules"): each line gets the first reason that
applies and is then kept out of co2_readings:
incomplete_last_line (not recorded: imported once complete), non_printing,
not_unit_line, other_unit (the line names another unit than the folder it is
in), date_1970, bad_field_count. Rejected complete lines go to
rejected_lines with their exact bytes. In rows, `None` and empty fields are
NULL, the five raw fields are NULL for 16-field lines, a nickname ending in
NICK (or `None`) is NULL. Numbers are stored as numbers by the columns'
affinity (a value that is not a number stays text, as written).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from itertools import count, repeat
from pathlib import Path

from . import daily, db
from .incremental import (
    DEFAULT_UNIT_PATTERN,
    NEW,
    REWRITTEN,
    UNCHANGED,
    FileState,
    Progress,
    SourceFile,
    Work,
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

TABLE = "co2_readings"
KIND = "readings"
SUBDIR = "data/readings"
FILE_PATTERN = r"readings-\d+\.tsv"
REASONS = (
    "incomplete_last_line",
    "non_printing",
    "not_unit_line",
    "other_unit",
    "date_1970",
    "bad_field_count",
)

# Bytes allowed in a line: TAB and printable ASCII (and the newline ending it).
_PRINTABLE = b"\t\n" + bytes(range(0x20, 0x7F))
_NOT_TAB_OR_NEWLINE = bytes(b for b in range(256) if b not in b"\t\n")
_SKELETONS = {n: b"\t" * (n - 1) + b"\n" for n in (16, 21)}
# Substrings that send a chunk to the line-by-line path: values to turn into
# NULL, and dates that may be 1970 (a conservative test on the whole chunk).
_SLOW_MARKERS = (b"None", b"\t\t", b"\t\n", b"NICK\t", b"\t1970-")
_RAW_FIELDS_NULL = (None,) * 5
_INSERT = "INSERT INTO co2_readings VALUES (" + ", ".join("?" * 23) + ")"
_REJECT = "INSERT INTO rejected_lines (file, line_no, reason, raw) VALUES (?, ?, ?, ?)"

BATCH_ROWS = 50_000  # rows parsed before they are inserted
# Clean chunks are inserted ROWS_PER_INSERT rows per statement, straight from
# the list of fields (label and line numbers added in SQL): this saves a tuple
# per row and most of the per-row cost of executemany.
ROWS_PER_INSERT = 50


def _multi_row_insert(nfields: int, nrows: int) -> str:
    """INSERT of nrows rows of nfields fields each, then ?label and ?first_line_no."""
    label, first = nrows * nfields + 1, nrows * nfields + 2
    pad = ", NULL" * (21 - nfields)
    values = []
    for k in range(nrows):
        params = ", ".join(f"?{k * nfields + j + 1}" for j in range(nfields))
        values.append(f"({params}{pad}, ?{label}, ?{first} + {k})")
    return "INSERT INTO co2_readings VALUES " + ", ".join(values)


_BLOCK_INSERT = {n: _multi_row_insert(n, ROWS_PER_INSERT) for n in (16, 21)}


class Batch:
    """Parsed lines waiting to be inserted: rows, blocks of rows, rejected lines."""

    def __init__(self) -> None:
        self.rows: list = []  # one parameter sequence per row
        self.blocks: list = []  # (nfields, ROWS_PER_INSERT rows' fields + label + line_no)
        self.rejects: list = []
        self.pending = 0  # rows in rows and blocks

    def flush(self, conn: sqlite3.Connection) -> int:
        """Insert everything; return the number of co2_readings rows inserted."""
        if self.rows:
            conn.executemany(_INSERT, self.rows)
        for nfields, params in self.blocks:
            conn.execute(_BLOCK_INSERT[nfields], params)
        if self.rejects:
            conn.executemany(_REJECT, self.rejects)
        inserted = self.pending
        self.rows.clear()
        self.blocks.clear()
        self.rejects.clear()
        self.pending = 0
        return inserted


COMMIT_BYTES = 64 << 20  # commit at the next file boundary after this much input
# Into an empty table, at least this much input is a bulk load: indexes are
# built at the end, without WAL (environment CO2DB_BULK_LOAD_BYTES overrides).
BULK_LOAD_BYTES = 32 << 20


def unit_of_label(label: str) -> str:
    """The hardware ID of the unit whose folder holds the file (its label's first part)."""
    return label.split("/", 1)[0]


def reject_reason(line: bytes, unit: bytes) -> str | None:
    """The first reason of the import rules that applies to a complete line of `unit`'s folder, or None."""
    if line.translate(None, _PRINTABLE):
        return "non_printing"
    if not line.startswith(b"co2unit-"):
        return "not_unit_line"
    fields = line.split(b"\t")
    if fields[0] != unit:
        return "other_unit"
    if len(fields) >= 3 and fields[2].startswith(b"1970-"):
        return "date_1970"
    if len(fields) not in (16, 21):
        return "bad_field_count"
    return None


def _clean_fields(fields: list) -> list:
    """Turn `None` and empty fields into NULL and a bad nickname into NULL."""
    fields = [None if v == "None" or v == "" else v for v in fields]
    nick = fields[1]
    if nick is not None and nick.endswith("NICK"):
        fields[1] = None
    return fields


def uniform_field_count(data: bytes, nlines: int) -> int:
    """16 or 21 if every line of data has that many fields, else 0 (C-speed checks)."""
    skeleton = data.translate(None, _NOT_TAB_OR_NEWLINE)
    for nfields in (21, 16):
        if len(skeleton) == nlines * nfields and skeleton == _SKELETONS[nfields] * nlines:
            return nfields
    return 0


def parse_lines(data: bytes, label: str, first_line_no: int, batch: Batch, skips: dict[str, int]) -> int:
    """Parse complete lines (data ends with a newline) into the batch.

    Returns the number of lines seen. This is the hot loop of a full import.
    The usual chunk (all lines clean unit lines with the same field count, no
    `None`, empty field, NICK or 1970) is recognised by whole-chunk byte tests
    and turned into rows without any Python code per line; any other chunk is
    parsed line by line.
    """
    nlines = data.count(b"\n")
    rows, rejects = batch.rows, batch.rejects
    unit = unit_of_label(label)
    unit_bytes = unit.encode("ascii", "replace")
    unit_tab = unit_bytes + b"\t"
    rows_before = len(rows)
    if data.translate(None, _PRINTABLE):
        # Some line holds a non-printing byte: decide line by line on bytes.
        lines = data.split(b"\n")
        lines.pop()
        for no, raw in enumerate(lines, first_line_no):
            reason = reject_reason(raw, unit_bytes)
            if reason:
                skips[reason] += 1
                rejects.append((label, no, reason, raw))
            else:
                _append_row(raw.decode("ascii"), label, no, rows)
        batch.pending += len(rows) - rows_before
        return nlines
    if (
        data.startswith(unit_tab)
        and data.count(b"\n" + unit_tab) == nlines - 1
        and not any(marker in data for marker in _SLOW_MARKERS)
    ):
        nfields = uniform_field_count(data, nlines)
        if nfields:
            fields = data.decode("ascii").replace("\n", "\t").split("\t")
            fields.pop()
            per_block = ROWS_PER_INSERT * nfields
            in_blocks = nlines // ROWS_PER_INSERT * per_block
            line_no = first_line_no
            for start in range(0, in_blocks, per_block):
                params = fields[start : start + per_block]
                params.append(label)
                params.append(line_no)
                batch.blocks.append((nfields, params))
                line_no += ROWS_PER_INSERT
            it = iter(fields[in_blocks:])
            padding = (repeat(None),) * (21 - nfields)
            rows.extend(zip(*(it,) * nfields, *padding, repeat(label), count(line_no)))
            batch.pending += nlines
            return nlines

    lines = data.decode("ascii").split("\n")
    lines.pop()
    append = rows.append
    no = first_line_no
    unit_field = unit + "\t"
    for line in lines:
        fields = line.split("\t")
        n = len(fields)
        if (n == 21 or n == 16) and line.startswith(unit_field) and not fields[2].startswith("1970-"):
            if "None" in line or "\t\t" in line or line[-1] == "\t" or fields[1].endswith("NICK"):
                fields = _clean_fields(fields)
            if n == 16:
                fields.extend(_RAW_FIELDS_NULL)
            fields.append(label)
            fields.append(no)
            append(fields)
        else:
            raw = line.encode("ascii")
            reason = reject_reason(raw, unit_bytes)
            skips[reason] += 1
            rejects.append((label, no, reason, raw))
        no += 1
    batch.pending += len(rows) - rows_before
    return nlines


def _append_row(line: str, label: str, no: int, rows: list) -> None:
    fields = _clean_fields(line.split("\t"))
    if len(fields) == 16:
        fields.extend(_RAW_FIELDS_NULL)
    fields.append(label)
    fields.append(no)
    rows.append(fields)


@gc_paused()
def load_files(
    conn: sqlite3.Connection,
    todo: list[Work],
    skips: dict[str, int],
    progress: Progress,
    keep_daily: bool = False,
) -> tuple[int, int]:
    """Import the new lines of the planned files; return (rows imported, files changed).

    Commits every COMMIT_BYTES of input, at a file boundary: a file's rows
    and its import_state row are always committed together. With keep_daily,
    the co2_daily rows of every (unit_id, date) whose rows were added or
    deleted are recomputed in the same transaction (a bulk load builds
    co2_daily once at the end instead).
    """
    batch = Batch()
    imported = changed_files = pending_bytes = 0
    touched: set[tuple[str, str]] = set()

    def flush() -> None:
        nonlocal imported
        imported += batch.flush(conn)
        if keep_daily and touched:
            daily.refresh(conn, touched)
            touched.clear()

    conn.execute("BEGIN IMMEDIATE")
    try:
        for i, item in enumerate(todo, 1):
            state = item.state
            if item.mode == REWRITTEN:
                if keep_daily:
                    touched.update(daily.pairs_of_file(conn, item.source.label))
                forget_file(conn, TABLE, item.source.label)
            try:
                chunk = read_new_lines(item.source.path, state.done_bytes)
            except FileNotFoundError:
                continue  # vanished since the plan: its state and rows stay
            if chunk.data:
                changed_files += 1
                if keep_daily:
                    touched.update(daily.pairs_in_lines(chunk.data))
            parse_lines(chunk.data, state.file, state.done_lines + 1, batch, skips)
            state.done_lines += chunk.data.count(b"\n")
            state.done_bytes = chunk.end
            state.check_hash = chunk.check_hash
            state.size = item.size if chunk.size == item.size else chunk.size
            state.mtime_ns = item.mtime_ns if chunk.size == item.size else 0
            save_state(conn, state)
            if batch.pending >= BATCH_ROWS:
                flush()
            pending_bytes += len(chunk.data)
            progress.advance(len(chunk.data), i, len(todo))
            if pending_bytes >= COMMIT_BYTES:
                flush()
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                pending_bytes = 0
        flush()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return imported, changed_files


def split_for_worker(todo: list[Work]) -> tuple[list[Work], list[Work]]:
    """Cut the file list in two contiguous parts of about equal bytes."""
    total = sum(w.size for w in todo)
    done = 0
    for i, item in enumerate(todo):
        if done >= total / 2:
            return todo[:i], todo[i:]
        done += item.size
    return todo, []


def start_worker(part_db: Path, todo: list[Work]) -> subprocess.Popen:
    """Start a second process that loads todo into the side database part_db."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{part_db}{suffix}").unlink(missing_ok=True)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "co2db.import_readings", str(part_db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    files = [[str(w.source.path), w.size, w.mtime_ns, w.mode, w.state.__dict__] for w in todo]
    proc.stdin.write(json.dumps(files))
    proc.stdin.close()
    return proc


def worker_main(part_db: str) -> None:
    """The second process of a bulk load: files (JSON on stdin) into part_db."""
    files = json.load(sys.stdin)
    conn = sqlite3.connect(part_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to protect
    conn.execute("PRAGMA synchronous = OFF")
    conn.executescript(db.schema_sql())
    for name in db.READINGS_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    todo = [
        Work(SourceFile(state["file"], Path(path)), mode, FileState(**state), size, mtime_ns)
        for path, size, mtime_ns, mode, state in files
    ]
    skips = dict.fromkeys(REASONS, 0)
    total = sum(w.size - w.state.done_bytes for w in todo)
    imported, changed = load_files(conn, todo, skips, Progress(f"{KIND} (2nd process)", total))
    conn.close()
    json.dump({"imported": imported, "changed": changed, "skips": skips}, sys.stdout)


def merge_worker(
    conn: sqlite3.Connection, proc: subprocess.Popen, part_db: Path, skips: dict[str, int]
) -> tuple[int, int]:
    """Wait for the worker and append its side database to ours; return its counts."""
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise WorkerFailed(f"the second import process failed (exit status {proc.returncode})")
    result = json.loads(out)
    conn.execute("ATTACH DATABASE ? AS part", (str(part_db),))
    try:
        with db.transaction(conn):
            # Same table definitions: SQLite copies the records without decoding them.
            conn.execute("INSERT INTO main.co2_readings SELECT * FROM part.co2_readings")
            conn.execute("INSERT INTO main.rejected_lines SELECT * FROM part.rejected_lines")
            conn.execute("INSERT OR REPLACE INTO main.import_state SELECT * FROM part.import_state")
    finally:
        conn.execute("DETACH DATABASE part")
    for reason, n in result["skips"].items():
        skips[reason] += n
    return result["imported"], result["changed"]


class WorkerFailed(Exception):
    """The second process of a bulk load did not finish."""


def import_readings(
    conn: sqlite3.Connection,
    data_dir: Path,
    unit_pattern: str = DEFAULT_UNIT_PATTERN,
    marker: Path | None = None,
) -> str:
    """Import what is new in every readings file; return the summary line."""
    data_dir = Path(data_dir)
    sources = [src for _unit, files in find_unit_files(data_dir, unit_pattern, SUBDIR, FILE_PATTERN) for src in files]
    skips = dict.fromkeys(REASONS, 0)
    # A database from before co2_daily (or whose build was interrupted).
    daily_built = daily.ensure_built(conn)
    with db.transaction(conn):
        work, vanished = plan(conn, KIND, sources, lambda o, n: relabel_file(conn, TABLE, o, n))
    todo = [w for w in work if w.mode != UNCHANGED]
    total_bytes = sum(max(0, w.size - w.state.done_bytes) for w in todo)
    bulk_bytes = int(os.environ.get("CO2DB_BULK_LOAD_BYTES", BULK_LOAD_BYTES))
    bulk = total_bytes >= bulk_bytes and db.table_is_empty(conn, "co2_readings")
    mine, theirs, proc = todo, [], None
    loaded = False
    daily_builds: list[daily.Rebuild] = []
    if bulk:
        db.begin_bulk_load(conn)
        with db.transaction(conn):
            # co2_daily is built in one pass at the end; until then it is
            # marked incomplete, so an interrupted load is rebuilt next run.
            daily.mark_incomplete(conn)
            for item in todo:
                if item.mode == REWRITTEN:  # rejected lines may be left of it
                    forget_file(conn, TABLE, item.source.label)
                    item.mode = NEW
        if (os.cpu_count() or 1) > 1 and len(todo) > 1:
            # Parse and insert on two cores: the second half of the files goes
            # into a side database, appended to ours at the end.
            mine, theirs = split_for_worker(todo)
            part_db = Path(f"{db.database_file(conn)}.bulk-part")
            proc = start_worker(part_db, theirs)
    try:
        progress = Progress(KIND, sum(w.size - w.state.done_bytes for w in mine))
        imported, changed_files = load_files(conn, mine, skips, progress, keep_daily=not bulk)
        if proc is not None:
            try:
                more, changed = merge_worker(conn, proc, part_db, skips)
            except WorkerFailed as exc:
                print(f"{KIND}: {exc}; importing its files here", file=sys.stderr)
                more, changed = load_files(conn, theirs, skips, Progress(KIND, 0))
            imported += more
            changed_files += changed
        loaded = True
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for suffix in ("", "-journal"):
                Path(f"{part_db}{suffix}").unlink(missing_ok=True)
        if bulk:
            # co2_daily in one pass, by helper processes reading through the
            # (unit_id, date, time) index while the other index is built.
            try:
                db.end_bulk_load(conn, (lambda: daily_builds.append(daily.start_rebuild(conn))) if loaded else None)
            except BaseException:
                for build in daily_builds:
                    build.cancel()
                raise
    if daily_builds:
        daily_builds[0].finish(conn)
        daily_built = True

    rejected = sum(skips.values())
    rewritten = sum(1 for w in work if w.mode == REWRITTEN)
    skips["incomplete_last_line"] = conn.execute(
        "SELECT count(*) FROM import_state WHERE kind = ? AND size > done_bytes", (KIND,)
    ).fetchone()[0]
    touch_marker(marker, imported or rejected or rewritten or daily_built)
    extra = f", {len(vanished)} missing" if vanished else ""
    return (
        f"{KIND}: {len(work)} files ({changed_files} changed{extra}), {imported} lines imported, {format_skips(skips)}"
    )


if __name__ == "__main__":
    worker_main(sys.argv[1])
