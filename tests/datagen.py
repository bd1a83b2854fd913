"""Build realistic CO2-unit data trees for the pipeline's tests (and bench).

build_tree(root) writes, under root:

- remote_data/<hw_id>/data/readings/readings-NNNN.tsv for three units, both
  firmware generations (16 and 21 columns), several files each, and every
  fault of DATA-FORMATS.md at known lines;
- remote_data/<hw_id>/errors/errors-NNNN.txt in both date styles, with
  tracebacks, 1970 entries (within a file, across files, across an SD-card
  replacement) and malformed lines;
- remote_data/co2unit-30aea42a5268/superseded/<stamp>/... (an old SD card);
- remote_data/manual/deploy_durations_tiered.tsv with comments, blank,
  short and malformed lines;
- remote_data/server-oldhost/var/pings/pings-0000.tsv (another server's log,
  overlapping ours) and var/pings/pings-NNNN.tsv (5- and 6-column lines);
- folders that are not units (manual/, junk/, CO2UNIT-...) holding readings
  that must be ignored.

Every line written is tallied in Tree.expected, so tests can assert exact
row counts and skip counts per reason; the tests also pin the totals.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

U1 = "co2unit-30aea42a50bc"  # new firmware (21 fields), ISO error dates
U2 = "co2unit-30aea42a5268"  # old firmware (16 fields), tuple dates, replaced SD card
U3 = "co2unit-0123456789ab"  # misconfigured: nickname ends in NICK
SUPERSEDED_STAMP = "20191001T120000Z"


@dataclass
class Expected:
    """What a correct import of the tree gives."""

    readings: int = 0
    readings_skips: Counter = field(default_factory=Counter)
    readings_files: int = 0
    error_entries: int = 0
    errors_skips: Counter = field(default_factory=Counter)
    errors_files: int = 0
    ping_lines: int = 0  # good lines read (duplicates included)
    pings: int = 0  # distinct (ping_ts, unit_id)
    pings_skips: Counter = field(default_factory=Counter)
    pings_files: int = 0
    deployments: int = 0
    deployments_skips: Counter = field(default_factory=Counter)

    def rejected_rows(self) -> int:
        """Rows in rejected_lines (incomplete last lines are not recorded)."""
        total = 0
        for skips in (
            self.readings_skips,
            self.errors_skips,
            self.pings_skips,
            self.deployments_skips,
        ):
            total += sum(n for reason, n in skips.items() if reason != "incomplete_last_line")
        return total


@dataclass
class Tree:
    """Paths of a generated tree and what importing it gives."""

    root: Path
    data_dir: Path
    pings_dir: Path
    deploy_tsv: Path
    db_file: Path
    pub_dir: Path
    expected: Expected

    def make_vars(self) -> list[str]:
        """make variable assignments pointing every folder into the tree."""
        return [
            f"DATA_DIR={self.data_dir}",
            f"DB_DIR={self.db_file.parent}",
            f"DB_FILE={self.db_file}",
            f"WEB_PUB_DIR={self.pub_dir}",
            f"PINGS_DIR={self.pings_dir}",
            f"DEPLOY_DURATIONS_TIERED_TSV={self.deploy_tsv}",
        ]


# --- Lines -------------------------------------------------------------------


def reading_fields(unit: str, nick: str, when: datetime, ncols: int, rng: random.Random) -> list[str]:
    """The fields of one well-formed reading."""
    fields = [
        unit,
        nick,
        when.strftime("%Y-%m-%d"),
        when.strftime("%H:%M:%S"),
        f"{rng.uniform(-5, 25):.4f}",
        str(rng.randint(0, 3)),
    ]
    base = rng.randint(400, 700)
    fields += [str(base + rng.randint(-8, 8)) for _ in range(10)]
    if ncols == 21:
        fields += [
            str(base),
            f"{rng.uniform(0.5, 1.5):.5f}",
            f"{rng.uniform(1000, 3000):.2f}",
            f"{rng.uniform(0.9, 1.1):.4f}",
            f"{rng.uniform(-5, 25):.3f}",
        ]
    return fields


def reading_line(unit: str, nick: str, when: datetime, ncols: int, rng: random.Random, **replace: str) -> bytes:
    """One reading line with newline; replace={'temp': 'None', ...} by column name."""
    fields = reading_fields(unit, nick, when, ncols, rng)
    for name, value in replace.items():
        fields[READING_COLUMNS.index(name)] = value
    return ("\t".join(fields) + "\n").encode()


READING_COLUMNS = [
    "unit_id",
    "nickname",
    "date",
    "time",
    "temp",
    "flash_count",
    *(f"co2_{i:02d}" for i in range(1, 11)),
    "co2_output_filtered",
    "led_normalized_filtered",
    "led_signal_filtered",
    "zero_point",
    "sensor_temp_filtered",
]


def ping_line(when: datetime, unit: str, nick: str, rssi_raw, rssi_dbm, ber_raw=...) -> bytes:
    """One pings TSV line (5 columns when ber_raw is omitted)."""
    fields = [when.isoformat(timespec="microseconds"), unit, nick, str(rssi_raw), str(rssi_dbm)]
    if ber_raw is not ...:
        fields.append(str(ber_raw))
    return ("\t".join(fields) + "\n").encode()


def iso_entry(when: datetime, level: str, message: str) -> bytes:
    """An error-log entry line in the ISO date style."""
    return f"----- {when:%Y-%m-%d %H:%M:%S} {level:<5} {message}\n".encode()


def tuple_entry(when: datetime, level: str, message: str) -> bytes:
    """An error-log entry line in the MicroPython tuple date style (not zero-padded)."""
    stamp = (
        f"({when.year}, {when.month}, {when.day}, {when.hour}, {when.minute},"
        f" {when.second}, {when.weekday()}, {when.timetuple().tm_yday})"
    )
    return f"----- {stamp} {level:<5} {message}\n".encode()


TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "main.py", line 61, in <module>\n'
    b'  File "co2unit/comm.py", line 112, in sync_data\n'
    b"OSError: [Errno 113] EHOSTUNREACH\n"
)


# --- The tree ----------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_readings(tree: Tree, rng: random.Random) -> None:
    """Readings of three units with every known fault at a known line."""
    exp = tree.expected
    d = tree.data_dir
    start = datetime(2019, 8, 1, 0, 0, 10)
    step = timedelta(minutes=30)

    def good(unit, nick, i, ncols, **replace):
        exp.readings += 1
        return reading_line(unit, nick, start + i * step, ncols, rng, **replace)

    def bad(reason, line):
        exp.readings_skips[reason] += 1
        return line

    # U1: new firmware, three files.
    u1 = d / U1 / "data/readings"
    # 120 clean lines: more than one block of the importer's multi-row inserts
    _write(u1 / "readings-0000.tsv", b"".join(good(U1, "varanger-03", i, 21) for i in range(-80, 40)))
    lines = [good(U1, "varanger-03", i, 21) for i in range(40, 50)]
    when = start + 50 * step
    lines += [
        # line 11: sensor-limit values are kept as they are
        good(U1, "varanger-03", 50, 21, temp="85.0", co2_01="0", co2_02="200010"),
        # 12: None in temp, a CO2 and a raw field; an empty flash count
        good(U1, "varanger-03", 51, 21, temp="None", co2_05="None", zero_point="None", flash_count=""),
        # 13: nickname None
        good(U1, "None", 52, 21),
        # 14: NUL from SD corruption
        bad("non_printing", reading_line(U1, "varanger-03", when, 21, rng)[:30] + b"\x00\x00" + b"\t1\n"),
        # 15: a high byte
        bad("non_printing", reading_line(U1, "varanger-\xe9", when, 21, rng)),
        # 16: CRLF line end (CR is not printable)
        bad("non_printing", reading_line(U1, "varanger-03", when, 21, rng)[:-1] + b"\r\n"),
        # 17: 1970 date AND a NUL: non_printing comes first
        bad("non_printing", reading_line(U1, "varanger-03", when, 21, rng, date="1970-01-01")[:-1] + b"\x00\n"),
        # 18: clock lost
        bad("date_1970", reading_line(U1, "varanger-03", when, 21, rng, date="1970-01-01", time="00:02:11")),
        # 19: clock lost and a bad field count: date_1970 comes first
        bad("date_1970", f"{U1}\tvaranger-03\t1970-01-01\t00:00:05\t21.0\n".encode()),
        # 20: bad field count (18)
        bad("bad_field_count", b"\t".join(reading_line(U1, "varanger-03", when, 21, rng).split(b"\t")[:18]) + b"\n"),
        # 21: an empty line
        bad("not_unit_line", b"\n"),
        # 22: a very old test line without hardware ID
        bad("not_unit_line", b"2019-07-01\t12:00:00\t23.5\t1\t680\n"),
        # 23: 22 fields
        bad("bad_field_count", reading_line(U1, "varanger-03", when, 21, rng)[:-1] + b"\t1\n"),
    ]
    lines += [good(U1, "varanger-03", i, 21) for i in range(53, 60)]
    _write(u1 / "readings-0001.tsv", b"".join(lines))
    lines = [good(U1, "varanger-03", i, 21) for i in range(60, 70)]
    # Upload in progress: the last line has no newline yet.
    exp.readings_skips["incomplete_last_line"] += 1
    lines.append(reading_line(U1, "varanger-03", start + 70 * step, 21, rng)[:40])
    _write(u1 / "readings-0002.tsv", b"".join(lines))

    # U2: old firmware; an old SD card under superseded/, the new one current.
    old = d / U2 / "superseded" / SUPERSEDED_STAMP / "data/readings"
    _write(old / "readings-0000.tsv", b"".join(good(U2, "varanger-01", i, 16) for i in range(30)))
    _write(old / "readings-0001.tsv", b"".join(good(U2, "varanger-01", i, 16) for i in range(30, 35)))
    cur = d / U2 / "data/readings"
    _write(cur / "readings-0000.tsv", b"".join(good(U2, "varanger-01", i, 16) for i in range(100, 125)))
    _write(
        cur / "readings-0001.tsv",
        b"".join(
            [good(U2, "varanger-01", i, 16) for i in range(125, 130)]
            + [good(U2, "varanger-01", 130, 16, co2_10="None", nickname="")]
            + [bad("date_1970", reading_line(U2, "varanger-01", start, 16, rng, date="1970-01-01"))]
        ),
    )

    # U3: misconfigured nickname; firmware updated half way (16, then 21 fields).
    u3 = d / U3 / "data/readings"
    _write(
        u3 / "readings-0000.tsv",
        b"".join(
            [good(U3, "co2unit-0123NICK", i, 16) for i in range(10)]
            + [good(U3, "co2unit-0123NICK", i, 21) for i in range(10, 20)]
        ),
    )
    # An empty file (just created by the unit).
    _write(u3 / "readings-0001.tsv", b"")
    exp.readings_files = 3 + 2 + 2 + 2

    # Not units: these readings must never be imported.
    for folder in ("manual", "junk", "CO2UNIT-30AEA42A50BC", "co2unit-30aea42a50"):
        _write(d / folder / "data/readings/readings-0000.tsv", reading_line(U1, "varanger-03", start, 21, rng))
    # Files with other names in a unit's readings folder are not read either.
    _write(u1 / "readings-0003.tsv.tmp", reading_line(U1, "varanger-03", start, 21, rng))
    _write(u1 / "notes.txt", b"hello\n")


def write_errors(tree: Tree) -> None:
    """Error logs in both date styles, with every kind of 1970 inference."""
    exp = tree.expected
    d = tree.data_dir
    t = datetime(2019, 9, 16, 10, 55, 57)
    m = timedelta(minutes=7)

    def entry(style, when, level, message, extra=b""):
        exp.error_entries += 1
        return style(when, level, message) + extra

    def bad(reason, line):
        exp.errors_skips[reason] += 1
        return line

    epoch = datetime(1970, 1, 1, 0, 0, 12)
    # U1, ISO dates.
    _write(
        d / U1 / "errors/errors-0000.txt",
        b"".join(
            [
                # 1970 before any good entry of the unit: idate NULL
                entry(iso_entry, epoch, "INFO", "Boot, clock not set"),
                entry(
                    iso_entry,
                    t,
                    "INFO",
                    "Self-test. LTE attached: True. Signal quality {'rssi_dbm': -97, 'rssi_raw': 8, 'ber_raw': 99}",
                ),
                entry(iso_entry, t + m, "WARN", "Skipping comm due to backoff: 4/5"),
                entry(iso_entry, t + 2 * m, "EXC", "Uncaught exception", TRACEBACK),
                # 1970 within the file: takes the previous entry's date
                entry(iso_entry, epoch + m, "ERROR", "Watchdog timeout"),
                entry(iso_entry, t + 3 * m, "INFO", "transmitting 4 files"),
                # several types match: the last in the list wins
                entry(iso_entry, t + 4 * m, "WARN", "watch dog fed late; Signal quality low; backoff"),
                entry(iso_entry, t + 5 * m, "INFO", "Nothing special"),
                bad("bad_entry_header", b"----- garbage INFO not a date\n"),
                bad("orphan_line", b"  a line of the rejected entry\n"),
            ]
        ),
    )
    _write(
        d / U1 / "errors/errors-0001.txt",
        b"".join(
            [
                # orphan continuation at the start of a file
                bad("orphan_line", b"continued from nowhere\n"),
                # 1970 at the start of the next file: takes the last good of errors-0000
                entry(iso_entry, epoch + 2 * m, "WARN", "Skipping comm due to backoff: 1/5"),
                entry(iso_entry, t + 6 * m, "EXC", "Uncaught exception", TRACEBACK[:40] + b"\n"),
                # a corrupted traceback line: rejected, the entry stays
                bad("non_printing", b'  File "x\x00.py"\n'),
                entry(iso_entry, t + 7 * m, "INFO", "Finished"),
            ]
        ),
    )
    # The last line is being uploaded.
    with open(d / U1 / "errors/errors-0001.txt", "ab") as fh:
        fh.write(b"----- 2019-09-16 12:00:00 INFO  par")
    exp.errors_skips["incomplete_last_line"] += 1

    # U2, tuple dates; old SD card first, then the current one.
    t2 = datetime(2019, 9, 5, 3, 1, 4)
    old = d / U2 / "superseded" / SUPERSEDED_STAMP / "errors"
    _write(
        old / "errors-0000.txt",
        b"".join(
            [
                entry(tuple_entry, t2, "INFO", "Self-test. Signal quality ok"),
                entry(tuple_entry, t2 + m, "ERROR", "Uncaught exception", TRACEBACK),
            ]
        ),
    )
    _write(
        d / U2 / "errors/errors-0000.txt",
        b"".join(
            [
                # new card, clock lost: takes the last good date of the old card's log
                entry(tuple_entry, epoch, "INFO", "Boot"),
                entry(tuple_entry, datetime(2019, 10, 2, 9, 8, 7), "WARN", "backoff 2/5"),
                bad("non_printing", tuple_entry(t2, "INFO", "bad\x7f")),
                # a non-printing entry line: its traceback has no entry
                bad("non_printing", b"----- (2019, 10, 2, 9, 9, 0, 2, 275) EXC \x00\x00\n"),
                bad("orphan_line", b"Traceback (most recent call last):\n"),
            ]
        ),
    )
    exp.errors_files = 2 + 2


def write_pings(tree: Tree) -> None:
    """Our ping logs (5- and 6-column lines) and another server's overlapping copy."""
    exp = tree.expected
    t = datetime(2019, 10, 7, 3, 23, 39, 980794)
    h = timedelta(hours=1)
    ours0 = [ping_line(t + i * h, U1, "varanger-03", 8, -97, 99) for i in range(20)]
    ours1 = [ping_line(t + i * h, U2, "varanger-01", 10, -93) for i in range(20, 30)]  # 5 cols
    ours1 += [
        ping_line(t + 30 * h, U2, "None", "None", "None", "None"),
        ping_line(t + 31 * h, U3, "co2unit-0123NICK", 12, -89, 99),
    ]
    bad = [
        (b"2019-10-08T00:00:00.000000\t" + U1.encode() + b"\tvaranger-03\t8\n", "bad_field_count"),
        (b"2019-10-08 00:00:00\t" + U1.encode() + b"\tvaranger-03\t8\t-97\t99\n", "bad_timestamp"),
        (b"2019-10-08T00:00:01.000000\tbogus\tvaranger-03\t8\t-97\t99\n", "bad_unit_id"),
        (b"2019-10-08T00:00:02.000000\t" + U1.encode() + b"\tvar\x00\t8\t-97\t99\n", "non_printing"),
    ]
    for _line, reason in bad:
        exp.pings_skips[reason] += 1
    _write(tree.pings_dir / "pings-0000.tsv", b"".join(ours0))
    _write(
        tree.pings_dir / "pings-0001.tsv",
        b"".join(ours1[:5] + [b for b, _ in bad] + ours1[5:])
        + ping_line(t + 40 * h, U1, "varanger-03", 8, -97, 99)[:25],
    )
    exp.pings_skips["incomplete_last_line"] += 1
    # The other server heard 5 of the same pings (same arrival time) and 3 others.
    theirs = ours0[:5] + [ping_line(t + i * h + timedelta(seconds=1), U1, "varanger-03", 9, -95, 99) for i in range(3)]
    _write(tree.data_dir / "server-oldhost/var/pings/pings-0000.tsv", b"".join(theirs))
    exp.ping_lines = len(ours0) + len(ours1) + len(theirs)
    exp.pings = len(ours0) + len(ours1) + 3
    exp.pings_files = 3


DEPLOYMENTS = (
    "unit_id\tnickname\tsite\ttier\tstatus\tstart_ts\tend_ts\tnote\n"
    "# comment line\n"
    f"{U1}\tvaranger-03\tvj_re_sn_3\t23\tdeployed\t2019-08-13T12:00:00\t2019-09-26T08:00:00\t\n"
    "\n"
    "   \t  \n"
    f"{U2}\tvaranger-01\tvj_re_sn_4\t22\tdeployed\t2019-08-13\t\tstill out\n"
    "   # indented comment\n"
    f"{U3}\tlab-unit\tlab\t1\tlab_check\t2019-07-01\n"  # short line: end_ts, note NULL
    f"{U2}\tvaranger-01\t\t5\ten_route\t2019-08-01T08:00\t2019-08-13T12:00:00\tby boat\r\n"
    f"{U1}\tvaranger-03\tvj_re_sn_3\ttwenty\tdeployed\t2019-08-13\t\t\n"  # bad_tier
    f"{U1}\tvaranger-03\tvj_re_sn_3\t23\tdeploy\t2019-08-13\t\t\n"  # bad_status
    f"{U1}\tvaranger-03\tvj_re_sn_3\t23\tdeployed\t13.08.2019\t\t\n"  # bad_timestamp
    f"{U1}\tvaranger-03\tvj\t23\tdeployed\t2019-08-13\t\tnote\twith tab\n"  # bad_field_count
    "\tnobody\tvj\t3\tdeployed\n"  # no_unit_id
    f"{U3}\tlast line without newline\tlab"
)


def write_deployments(tree: Tree) -> None:
    """A hand-kept deployments file with comments, blanks, short and bad lines."""
    exp = tree.expected
    _write(tree.deploy_tsv, DEPLOYMENTS.encode())
    exp.deployments = 5
    for reason in ("bad_tier", "bad_status", "bad_timestamp", "bad_field_count", "no_unit_id"):
        exp.deployments_skips[reason] += 1


def new_tree(root: Path) -> Tree:
    """An empty tree: paths only."""
    return Tree(
        root=root,
        data_dir=root / "remote_data",
        pings_dir=root / "var/pings",
        deploy_tsv=root / "remote_data/manual/deploy_durations_tiered.tsv",
        db_file=root / "var/db.sqlite3",
        pub_dir=root / "var/pub",
        expected=Expected(),
    )


def build_tree(root: Path, seed: int = 1) -> Tree:
    """Write the whole realistic tree under root; return its paths and expectations."""
    tree = new_tree(root)
    rng = random.Random(seed)
    write_readings(tree, rng)
    write_errors(tree)
    write_pings(tree)
    write_deployments(tree)
    return tree


# --- Running the real pipeline ------------------------------------------------

DATABASE_DIR = Path(__file__).resolve().parent.parent / "database"
DATA_TABLES = ("co2_readings", "error_logs", "pings", "deploy_durations_tiered", "rejected_lines")
# Derived by the readings importer: must match a from-scratch import too.
DERIVED_TABLES = ("co2_daily",)


def run_make(tree: Tree, *targets: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real make in database/ on the tree, with this interpreter."""
    cmd = ["make", "-C", str(DATABASE_DIR), *tree.make_vars(), f"PYTHON={sys.executable}"]
    proc = subprocess.run([*cmd, *targets], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"make failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def summary(proc: subprocess.CompletedProcess, kind: str) -> str:
    """The one summary line an importer printed."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith(f"{kind}: ")]
    assert len(lines) == 1, proc.stdout
    return lines[0]


def dump(db_file: Path) -> dict[str, list[tuple]]:
    """Every data table's rows, sorted (bookkeeping excluded)."""
    conn = sqlite3.connect(db_file)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in (*DATA_TABLES, *DERIVED_TABLES)
        }
    finally:
        conn.close()


def query(db_file: Path, sql: str, *params) -> list[tuple]:
    """Rows of one query."""
    conn = sqlite3.connect(db_file)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def copy_tree(tree: Tree, root: Path) -> Tree:
    """The same inputs under another root (no database)."""
    other = new_tree(root)
    shutil.copytree(tree.data_dir, other.data_dir, symlinks=True)
    if tree.pings_dir.exists():
        shutil.copytree(tree.pings_dir, other.pings_dir)
    other.expected = tree.expected
    return other
