"""Error-log import: entries, tracebacks, 1970 inference, etype (real make)."""

from __future__ import annotations

import pytest

from datagen import SUPERSEDED_STAMP, U1, U2, build_tree, copy_tree, dump, query, run_make, summary

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
