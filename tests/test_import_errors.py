"""Error-log import: entries, tracebacks, 1970 inference, etype (real make)."""

from __future__ import annotations

import pytest

from datagen import SUPERSEDED_STAMP, U1, U2, build_tree, copy_tree, dump, new_tree, query, run_make, summary

E1 = f"{U1}/errors"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tree = build_tree(tmp_path_factory.mktemp("errors"))
    return tree, run_make(tree, "import")


def entries(tree, source):
    return query(
        tree.db_file,
        "SELECT line_no, idate, itime, etype, odate, otime, level FROM error_logs"
        " WHERE source_file = ? ORDER BY line_no",
        source,
    )


def test_counts_are_exact(imported):
    tree, proc = imported
    assert tree.expected.error_entries == 15
    assert query(tree.db_file, "SELECT count(*) FROM error_logs") == [(15,)]
    assert summary(proc, "errors") == (
        "errors: 4 files (4 changed), 25 lines imported (15 entries written), skipped:"
        " incomplete_last_line=1 non_printing=3 bad_entry_header=1 orphan_line=3"
    )
    rejected = query(
        tree.db_file,
        "SELECT reason, count(*) FROM rejected_lines WHERE file LIKE '%/errors-%' GROUP BY reason",
    )
    assert dict(rejected) == {"non_printing": 3, "bad_entry_header": 1, "orphan_line": 3}


def test_iso_dates_1970_inference_and_etype(imported):
    tree, _ = imported
    assert entries(tree, f"{E1}/errors-0000.txt") == [
        (1, None, None, None, "1970-01-01", "00:00:12", "INFO"),  # nothing good before it
        (2, "2019-09-16", "10:55:57", "signal", "2019-09-16", "10:55:57", "INFO"),
        (3, "2019-09-16", "11:02:57", "backoff", "2019-09-16", "11:02:57", "WARN"),
        (4, "2019-09-16", "11:09:57", "uncaught", "2019-09-16", "11:09:57", "EXC"),
        (9, "2019-09-16", "11:09:57", "watchdog", "1970-01-01", "00:07:12", "ERROR"),
        (10, "2019-09-16", "11:16:57", "transmit", "2019-09-16", "11:16:57", "INFO"),
        (11, "2019-09-16", "11:23:57", "backoff", "2019-09-16", "11:23:57", "WARN"),
        (12, "2019-09-16", "11:30:57", None, "2019-09-16", "11:30:57", "INFO"),
    ]
    # 1970 at the start of the next file: the last good date of errors-0000.
    assert entries(tree, f"{E1}/errors-0001.txt") == [
        (2, "2019-09-16", "11:30:57", "backoff", "1970-01-01", "00:14:12", "WARN"),
        (3, "2019-09-16", "11:37:57", "uncaught", "2019-09-16", "11:37:57", "EXC"),
        (7, "2019-09-16", "11:44:57", None, "2019-09-16", "11:44:57", "INFO"),
    ]


def test_tuple_dates_are_normalised_and_inference_crosses_sd_card_replacement(imported):
    tree, _ = imported
    assert entries(tree, f"{U2}/superseded/{SUPERSEDED_STAMP}/errors/errors-0000.txt") == [
        (1, "2019-09-05", "03:01:04", "signal", "2019-09-05", "03:01:04", "INFO"),
        (2, "2019-09-05", "03:08:04", "uncaught", "2019-09-05", "03:08:04", "ERROR"),
    ]
    assert entries(tree, f"{U2}/errors/errors-0000.txt") == [
        (1, "2019-09-05", "03:08:04", None, "1970-01-01", "00:00:12", "INFO"),
        (2, "2019-10-02", "09:08:07", "backoff", "2019-10-02", "09:08:07", "WARN"),
    ]


def test_traceback_lines_belong_to_their_entry(imported):
    tree, _ = imported
    [(message,)] = query(
        tree.db_file,
        "SELECT message FROM error_logs WHERE source_file = ? AND line_no = 4",
        f"{E1}/errors-0000.txt",
    )
    assert message == (
        "Uncaught exception\nTraceback (most recent call last):\n"
        '  File "main.py", line 61, in <module>\n'
        '  File "co2unit/comm.py", line 112, in sync_data\n'
        "OSError: [Errno 113] EHOSTUNREACH"
    )
    # the corrupted traceback line (6) was rejected, the entry kept the rest
    [(message,)] = query(
        tree.db_file,
        "SELECT message FROM error_logs WHERE source_file = ? AND line_no = 3",
        f"{E1}/errors-0001.txt",
    )
    assert message == "Uncaught exception\nTraceback (most recent call last):\n  Fil"


def test_appended_traceback_and_new_dates_equal_from_scratch(tmp_path):
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    log = tree.data_dir / E1 / "errors-0001.txt"
    with open(log, "ab") as fh:  # completes the cut entry, then a traceback for it
        fh.write(b"tial upload\nTraceback (most recent call last):\n")
    run_make(tree, "import")
    with open(log, "ab") as fh:
        fh.write(b'  File "watchdog.py", line 3\n----- 1970-01-01 00:00:01 INFO  Boot\n')
    # A new good date in an earlier file changes the inference in later files:
    # the superseded log grows (it would not in the field, but the rule holds).
    old = tree.data_dir / U2 / "superseded" / SUPERSEDED_STAMP / "errors" / "errors-0000.txt"
    with open(old, "ab") as fh:
        fh.write(b"----- (2019, 9, 30, 23, 59, 1, 0, 273) INFO  Last words\n")
    proc = run_make(tree, "import")
    # U2's current log is read again whole: the date carried into it changed.
    assert summary(proc, "errors") == (
        "errors: 4 files (3 changed), 5 lines imported (4 entries written), skipped: non_printing=2 orphan_line=1"
    )
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)
    assert query(
        tree.db_file,
        "SELECT etype, idate, message FROM error_logs WHERE source_file = ? AND line_no = 8",
        f"{E1}/errors-0001.txt",
    ) == [
        (
            "watchdog",
            "2019-09-16",
            'partial upload\nTraceback (most recent call last):\n  File "watchdog.py", line 3',
        )
    ]
    assert query(
        tree.db_file,
        "SELECT idate, itime FROM error_logs WHERE source_file = ? AND line_no = 1",
        f"{U2}/errors/errors-0000.txt",
    ) == [("2019-09-30", "23:59:01")]


def test_1970_entries_on_any_day_of_1970_take_the_last_good_date(tmp_path):
    """A unit that ran a day or more with a lost clock writes 1970-01-02 and later, in both date styles."""
    tree = new_tree(tmp_path)
    log = tree.data_dir / U1 / "errors" / "errors-0000.txt"
    log.parent.mkdir(parents=True)
    log.write_bytes(
        b"----- 1970-01-02 03:04:05 INFO  Boot, clock lost, nothing good before\n"  # 1
        b"----- 2019-09-16 10:55:57 INFO  Self-test\n"  # 2
        b"----- 1970-01-01 00:00:12 INFO  Boot\n"  # 3
        b"----- 1970-01-02 00:00:01 WARN  A day later\n"  # 4
        b"----- (1970, 3, 15, 6, 7, 8, 6, 74) ERROR Months later\n"  # 5
        b"----- 1970-12-31 23:59:59 INFO  Last second of 1970\n"  # 6
        b"----- (2019, 9, 17, 1, 2, 3, 1, 260) INFO  Clock back\n"  # 7
        b"----- (1970, 1, 2, 0, 0, 0, 4, 2) INFO  Lost again\n"  # 8
        b"----- 1971-01-01 00:00:00 INFO  Not 1970: kept as written\n"  # 9
        b"----- 1970-06-01 12:00:00 INFO  After a 1971 entry\n"  # 10
    )
    run_make(tree, "import")
    assert query(
        tree.db_file,
        "SELECT line_no, odate, otime, idate, itime FROM error_logs ORDER BY line_no",
    ) == [
        (1, "1970-01-02", "03:04:05", None, None),
        (2, "2019-09-16", "10:55:57", "2019-09-16", "10:55:57"),
        (3, "1970-01-01", "00:00:12", "2019-09-16", "10:55:57"),
        (4, "1970-01-02", "00:00:01", "2019-09-16", "10:55:57"),
        (5, "1970-03-15", "06:07:08", "2019-09-16", "10:55:57"),
        (6, "1970-12-31", "23:59:59", "2019-09-16", "10:55:57"),
        (7, "2019-09-17", "01:02:03", "2019-09-17", "01:02:03"),
        (8, "1970-01-02", "00:00:00", "2019-09-17", "01:02:03"),
        (9, "1971-01-01", "00:00:00", "1971-01-01", "00:00:00"),
        (10, "1970-06-01", "12:00:00", "1971-01-01", "00:00:00"),
    ]


def test_impossible_dates_are_bad_entry_headers(tmp_path):
    tree = new_tree(tmp_path)
    log = tree.data_dir / U1 / "errors" / "errors-0000.txt"
    log.parent.mkdir(parents=True)
    lines = [
        b"----- 2019-02-31 10:00:00 INFO  no 31 February",  # 1
        b"----- (2019, 2, 30, 10, 0, 0, 0, 61) INFO  no 30 February",  # 2
        b"----- 2019-04-31 10:00:00 INFO  no 31 April",  # 3
        b"----- 2019-02-29 10:00:00 INFO  2019 is not a leap year",  # 4
        b"----- 2019-13-01 10:00:00 INFO  no month 13",  # 5
        b"----- (2019, 0, 1, 10, 0, 0, 0, 1) INFO  no month 0",  # 6
        b"----- 2019-09-00 10:00:00 INFO  no day 0",  # 7
        b"----- 2019-09-16 24:00:00 INFO  no hour 24",  # 8
        b"----- (2019, 9, 16, 10, 60, 0, 0, 259) INFO  no minute 60",  # 9
        b"----- (99999999999999999999, 1, 1, 0, 0, 0, 0, 1) INFO  a year beyond any clock",  # 10
        b"----- 2020-02-29 10:00:00 INFO  2020 is a leap year",  # 11: good
        b"----- (2020, 2, 29, 23, 59, 59, 5, 60) INFO  so this is good too",  # 12: good
        b"----- 2019-12-31 23:59:59 INFO  the last second of 2019",  # 13: good
    ]
    log.write_bytes(b"\n".join(lines) + b"\n")
    proc = run_make(tree, "import")
    assert summary(proc, "errors") == (
        "errors: 1 files (1 changed), 3 lines imported (3 entries written), skipped: bad_entry_header=10"
    )
    assert query(tree.db_file, "SELECT line_no, reason, raw FROM rejected_lines ORDER BY line_no") == [
        (n, "bad_entry_header", lines[n - 1]) for n in range(1, 11)
    ]
    assert query(tree.db_file, "SELECT line_no, odate, otime FROM error_logs ORDER BY line_no") == [
        (11, "2020-02-29", "10:00:00"), (12, "2020-02-29", "23:59:59"), (13, "2019-12-31", "23:59:59"),
    ]
