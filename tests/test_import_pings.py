"""Pings import: both log places, 5/6 columns, NULLs, no duplicates (real make)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from datagen import U1, U2, U3, build_tree, copy_tree, dump, ping_line, query, run_make, summary

SERVER_SCHEMA = __import__("pathlib").Path(__file__).resolve().parent.parent / ("src/co2server/schema.sql")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tree = build_tree(tmp_path_factory.mktemp("pings"))
    return tree, run_make(tree, "import")


def test_counts_are_exact(imported):
    tree, proc = imported
    assert (tree.expected.ping_lines, tree.expected.pings) == (40, 35)
    assert query(tree.db_file, "SELECT count(*) FROM pings") == [(35,)]
    assert summary(proc, "pings") == (
        "pings: 3 files (3 changed), 40 lines imported (35 new rows), skipped:"
        " incomplete_last_line=1 non_printing=1 bad_field_count=1 bad_timestamp=1 bad_unit_id=1"
    )
    assert query(
        tree.db_file,
        "SELECT file, line_no, reason FROM rejected_lines WHERE file LIKE 'var/pings/%' ORDER BY line_no",
    ) == [
        ("var/pings/pings-0001.tsv", 6, "bad_field_count"),
        ("var/pings/pings-0001.tsv", 7, "bad_timestamp"),
        ("var/pings/pings-0001.tsv", 8, "bad_unit_id"),
        ("var/pings/pings-0001.tsv", 9, "non_printing"),
    ]


def test_columns_nulls_and_five_column_lines(imported):
    tree, _ = imported
    assert query(tree.db_file, "SELECT * FROM pings WHERE unit_id = ? LIMIT 1", U1) == [
        (
            "2019-10-07T03:23:39.980794",
            "2019-10-07",
            "03:23:39.980794",
            U1,
            "varanger-03",
            8,
            -97,
            99,
        )
    ]
    # 5-column lines: ber_raw NULL; the `None` line: NULLs
    assert query(
        tree.db_file,
        "SELECT count(*), count(ber_raw), count(nickname), count(rssi_raw) FROM pings WHERE unit_id = ?",
        U2,
    ) == [(11, 0, 10, 10)]
    # nicknames are kept as written
    assert query(tree.db_file, "SELECT nickname FROM pings WHERE unit_id = ?", U3) == [("co2unit-0123NICK",)]


def test_live_inserts_of_the_server_are_not_duplicated(tmp_path):
    tree = build_tree(tmp_path)
    tree.db_file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(tree.db_file)  # the server got there first
    conn.executescript(SERVER_SCHEMA.read_text())
    conn.execute(
        "INSERT INTO pings VALUES ('2019-10-07T03:23:39.980794', '2019-10-07',"
        " '03:23:39.980794', ?, 'varanger-03', 8, -97, 99)",
        (U1,),
    )
    conn.execute(
        "INSERT INTO pings VALUES ('2019-12-01T00:00:00.000001', '2019-12-01',"
        " '00:00:00.000001', ?, 'varanger-03', 8, -97, 99)",
        (U1,),
    )
    conn.commit()
    conn.close()
    proc = run_make(tree, "import")
    assert "40 lines imported (34 new rows)" in summary(proc, "pings")
    assert query(tree.db_file, "SELECT count(*) FROM pings") == [(36,)]


def test_appended_pings_equal_from_scratch_and_rerun_is_a_no_op(tmp_path):
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    log = tree.pings_dir / "pings-0001.tsv"
    data = log.read_bytes()
    log.write_bytes(
        data[: data.rfind(b"\n") + 1] + ping_line(datetime(2019, 10, 9, 1, 2, 3, 4), U1, "varanger-03", 8, -97, 99)
    )
    (tree.pings_dir / "pings-0002.tsv").write_bytes(
        ping_line(datetime(2019, 10, 9, 2, 2, 3, 4), U1, "varanger-03", 8, -97)
    )
    proc = run_make(tree, "import")
    assert summary(proc, "pings") == ("pings: 4 files (2 changed), 2 lines imported (2 new rows), skipped: none")
    assert query(tree.db_file, "SELECT * FROM pings WHERE ping_ts LIKE '2019-10-09T02%'") == [
        ("2019-10-09T02:02:03.000004", "2019-10-09", "02:02:03.000004", U1, "varanger-03", 8, -97, None)
    ]
    proc = run_make(tree, "import")
    assert summary(proc, "pings") == ("pings: 4 files (0 changed), 0 lines imported (0 new rows), skipped: none")
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)
