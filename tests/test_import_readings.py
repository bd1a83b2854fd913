"""Readings import: exact counts, rules, NULLs, and incremental runs (real make)."""

from __future__ import annotations

import os
import random
import shutil
from datetime import datetime, timedelta

import pytest

from datagen import (
    SUPERSEDED_STAMP,
    U1,
    U2,
    U3,
    build_tree,
    copy_tree,
    dump,
    new_tree,
    query,
    reading_line,
    run_make,
    summary,
)

R1 = f"{U1}/data/readings"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A realistic tree imported once (read-only for the tests that use it)."""
    tree = build_tree(tmp_path_factory.mktemp("readings"))
    proc = run_make(tree, "import")
    return tree, proc


def test_row_and_skip_counts_are_exact(imported):
    tree, proc = imported
    exp = tree.expected
    assert exp.readings == 236  # pinned: the generator's tally must not drift either
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(236,)]
    assert summary(proc, "readings") == (
        "readings: 9 files (8 changed), 236 lines imported, skipped: incomplete_last_line=1"
        " non_printing=4 not_unit_line=2 date_1970=3 bad_field_count=2"
    )
    rejected = query(
        tree.db_file,
        "SELECT reason, count(*) FROM rejected_lines WHERE file LIKE '%/readings-%' GROUP BY reason",
    )
    expected = {r: n for r, n in exp.readings_skips.items() if r != "incomplete_last_line"}
    assert dict(rejected) == expected


def test_rejected_lines_keep_exact_bytes_and_line_numbers(imported):
    tree, _ = imported
    rows = query(
        tree.db_file,
        "SELECT line_no, reason, raw FROM rejected_lines WHERE file = ? ORDER BY line_no",
        f"{R1}/readings-0001.tsv",
    )
    assert [(n, r) for n, r, _ in rows] == [
        (14, "non_printing"),
        (15, "non_printing"),
        (16, "non_printing"),
        (17, "non_printing"),
        (18, "date_1970"),
        (19, "date_1970"),
        (20, "bad_field_count"),
        (21, "not_unit_line"),
        (22, "not_unit_line"),
        (23, "bad_field_count"),
    ]
    lines = (tree.data_dir / R1 / "readings-0001.tsv").read_bytes().split(b"\n")
    for line_no, _reason, raw in rows:
        assert isinstance(raw, bytes)
        assert raw == lines[line_no - 1]
    assert b"\x00" in rows[0][2] and rows[2][2].endswith(b"\r")


def test_none_empty_and_nick_become_null_limits_are_kept(imported):
    tree, _ = imported
    src = f"{R1}/readings-0001.tsv"

    def row(line_no):
        return query(
            tree.db_file,
            "SELECT * FROM co2_readings WHERE source_file = ? AND line_no = ?",
            src,
            line_no,
        )[0]

    limits = row(11)
    assert limits[4] == 85.0 and limits[6] == 0 and limits[7] == 200010
    nulls = row(12)
    assert nulls[4] is None and nulls[5] is None and nulls[10] is None and nulls[19] is None
    assert nulls[16] is not None  # co2_output_filtered stays
    assert row(13)[1] is None  # nickname None
    assert query(tree.db_file, "SELECT DISTINCT nickname FROM co2_readings WHERE unit_id = ?", U3) == [(None,)]
    # the U2 line with an empty nickname and a None CO2
    last = query(
        tree.db_file,
        "SELECT nickname, co2_10 FROM co2_readings WHERE source_file = ? AND line_no = 6",
        f"{U2}/data/readings/readings-0001.tsv",
    )
    assert last == [(None, None)]


def test_numbers_are_numbers_and_old_firmware_has_null_raw_fields(imported):
    tree, _ = imported
    types = query(
        tree.db_file,
        "SELECT DISTINCT typeof(temp), typeof(flash_count), typeof(co2_01),"
        " typeof(co2_output_filtered), typeof(sensor_temp_filtered)"
        " FROM co2_readings WHERE unit_id = ? AND line_no < 11",
        U1,
    )
    assert types == [("real", "integer", "integer", "real", "real")]
    old = query(
        tree.db_file,
        "SELECT count(*), count(co2_output_filtered), count(led_normalized_filtered),"
        " count(led_signal_filtered), count(zero_point), count(sensor_temp_filtered),"
        " count(co2_10) FROM co2_readings WHERE unit_id = ?",
        U2,
    )
    assert old == [(66, 0, 0, 0, 0, 0, 65)]
    # U3 switched firmware half way: 10 old lines, 10 new.
    assert query(
        tree.db_file,
        "SELECT count(*), count(zero_point) FROM co2_readings WHERE unit_id = ?",
        U3,
    ) == [(20, 10)]


def test_only_unit_folders_and_readings_files_are_read(imported):
    tree, _ = imported
    sources = {s for (s,) in query(tree.db_file, "SELECT DISTINCT source_file FROM co2_readings")}
    assert sources == {
        f"{R1}/readings-0000.tsv",
        f"{R1}/readings-0001.tsv",
        f"{R1}/readings-0002.tsv",
        f"{U2}/superseded/{SUPERSEDED_STAMP}/data/readings/readings-0000.tsv",
        f"{U2}/superseded/{SUPERSEDED_STAMP}/data/readings/readings-0001.tsv",
        f"{U2}/data/readings/readings-0000.tsv",
        f"{U2}/data/readings/readings-0001.tsv",
        f"{U3}/data/readings/readings-0000.tsv",
    }


def test_rerun_with_nothing_new_changes_nothing(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    before = dump(tree.db_file)
    marker = tree.db_file.parent / "db.sqlite3.markers" / "readings"
    os.utime(marker, ns=(1, 1))
    proc = run_make(tree, "import")
    assert summary(proc, "readings") == (
        "readings: 9 files (0 changed), 0 lines imported, skipped: incomplete_last_line=1"
    )
    assert dump(tree.db_file) == before
    assert marker.stat().st_mtime_ns == 1  # plots are not redrawn


def _append(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(data)


def grow(tree) -> None:
    """Append to the tree as uploads would: complete lines, new files, a new unit."""
    rng = random.Random(7)
    t = datetime(2019, 8, 3, 0, 0, 10)
    step = timedelta(minutes=30)
    last = tree.data_dir / R1 / "readings-0002.tsv"
    full = reading_line(U1, "varanger-03", datetime(2019, 8, 2, 11, 0, 10), 21, rng)
    data = last.read_bytes()
    cut = data.rfind(b"\n") + 1
    last.write_bytes(data[:cut] + full)  # the incomplete line is now complete
    _append(last, reading_line(U1, "varanger-03", t, 21, rng) + b"co2unit-partial\t")
    _append(
        tree.data_dir / R1 / "readings-0003.tsv",
        b"".join(reading_line(U1, "varanger-03", t + i * step, 21, rng) for i in range(5)),
    )
    _append(
        tree.data_dir / U3 / "data/readings/readings-0001.tsv",
        reading_line(U3, "x", t, 21, rng, date="1970-01-01") + reading_line(U3, "x", t, 21, rng),
    )
    new_unit = "co2unit-fedcba987654"
    _append(
        tree.data_dir / new_unit / "data/readings/readings-0000.tsv",
        b"".join(reading_line(new_unit, "new-01", t + i * step, 16, rng) for i in range(4)),
    )


def test_incremental_import_equals_from_scratch(tmp_path):
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    grow(tree)
    proc = run_make(tree, "import")
    assert summary(proc, "readings") == (
        "readings: 11 files (4 changed), 12 lines imported, skipped: incomplete_last_line=1 date_1970=1"
    )
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(236 + 12,)]


def test_file_rewritten_in_its_imported_part_is_reimported_whole(tmp_path):
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    path = tree.data_dir / U2 / "data/readings/readings-0000.tsv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"varanger-01", b"varanger-1x")  # same size
    lines[5] = b"junk"
    path.write_bytes(b"\n".join(lines) + b"more\n")
    proc = run_make(tree, "import")
    assert "1 changed" in summary(proc, "readings")
    assert query(
        tree.db_file,
        "SELECT count(*), count(DISTINCT nickname) FROM co2_readings WHERE source_file = ?",
        f"{U2}/data/readings/readings-0000.tsv",
    ) == [(24, 2)]
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)


def test_sd_card_replacement_moves_rows_instead_of_duplicating(tmp_path):
    """The server moves the old card's folders under superseded/; the new card starts over."""
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    unit = tree.data_dir / U1
    stamp = unit / "superseded" / "20191101T000000Z"
    (stamp / "data").mkdir(parents=True)
    shutil.move(unit / "data" / "readings", stamp / "data" / "readings")
    shutil.move(unit / "errors", stamp / "errors")
    proc = run_make(tree, "import")
    assert summary(proc, "readings").startswith("readings: 9 files (0 changed), 0 lines imported")
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(236,)]
    # The new card's first file, then its growth.
    rng = random.Random(3)
    t = datetime(2019, 11, 1, 0, 0, 10)
    _append(
        unit / "data/readings/readings-0000.tsv",
        b"".join(reading_line(U1, "varanger-03", t + timedelta(hours=i), 21, rng) for i in range(3)),
    )
    run_make(tree, "import")
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(239,)]


def test_vanished_file_keeps_its_rows(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    (tree.data_dir / R1 / "readings-0000.tsv").unlink()
    proc = run_make(tree, "import")
    assert "(0 changed, 1 missing)" in summary(proc, "readings")
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(236,)]


def test_bulk_load_gives_the_same_database(tmp_path, monkeypatch):
    """A from-scratch load big enough for bulk mode (forced here) gives the same rows."""
    normal = build_tree(tmp_path / "normal")
    run_make(normal, "import")
    bulk = copy_tree(normal, tmp_path / "bulk")
    monkeypatch.setenv("CO2DB_BULK_LOAD_BYTES", "0")
    run_make(bulk, "import")
    assert dump(bulk.db_file) == dump(normal.db_file)
    assert query(bulk.db_file, "PRAGMA journal_mode") == [("wal",)]
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'co2_readings'"
    assert sorted(query(bulk.db_file, indexes)) == sorted(query(normal.db_file, indexes))


def test_bulk_load_continues_files_whose_lines_were_all_rejected(tmp_path, monkeypatch):
    """co2_readings is still empty, but files were read before: no line twice, none lost."""
    monkeypatch.setenv("CO2DB_BULK_LOAD_BYTES", "0")
    tree = new_tree(tmp_path / "inc")
    rng = random.Random(5)
    t = datetime(2019, 8, 1)
    folder = tree.data_dir / U1 / "data/readings"
    _append(folder / "readings-0000.tsv", reading_line(U1, "v", t, 21, rng, date="1970-01-01") * 3)
    _append(folder / "readings-0001.tsv", b"old card\n")
    run_make(tree, "import")
    assert query(tree.db_file, "SELECT count(*) FROM rejected_lines") == [(4,)]
    _append(folder / "readings-0000.tsv", reading_line(U1, "v", t, 21, rng) * 2)
    (folder / "readings-0001.tsv").write_bytes(b"new card!\n" + reading_line(U1, "v", t, 16, rng))
    proc = run_make(tree, "import")
    assert "3 lines imported" in summary(proc, "readings")
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)


def test_line_numbers_match_the_file(imported):
    tree, _ = imported
    for name in ("readings-0000.tsv", "readings-0001.tsv"):
        lines = (tree.data_dir / R1 / name).read_text(errors="replace").split("\n")
        rows = query(
            tree.db_file,
            "SELECT line_no, date, time, co2_10 FROM co2_readings WHERE source_file = ? ORDER BY line_no",
            f"{R1}/{name}",
        )
        assert rows
        for line_no, date, time, co2_10 in rows:
            fields = lines[line_no - 1].split("\t")
            assert (fields[2], fields[3], fields[15]) == (date, time, str(co2_10) if co2_10 is not None else "None")


def test_sd_card_replacement_seen_in_one_run(tmp_path):
    """Moved folder and the new card's first lines (same names) appear between two runs."""
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    unit = tree.data_dir / U1
    stamp = unit / "superseded" / "20191101T000000Z"
    (stamp / "data").mkdir(parents=True)
    shutil.move(unit / "data" / "readings", stamp / "data" / "readings")
    shutil.move(unit / "errors", stamp / "errors")
    rng = random.Random(4)
    t = datetime(2019, 11, 1, 0, 0, 10)
    for name in ("readings-0000.tsv", "readings-0001.tsv"):
        _append(
            unit / "data/readings" / name,
            b"".join(reading_line(U1, "varanger-03", t + timedelta(hours=i), 21, rng) for i in range(200)),
        )
    _append(unit / "errors/errors-0000.txt", b"----- 1970-01-01 00:00:09 INFO  Boot\n")
    proc = run_make(tree, "import")
    assert "400 lines imported" in summary(proc, "readings")
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert dump(tree.db_file) == dump(scratch.db_file)
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(636,)]
    # the new card's 1970 entry takes the last good date of the old card's log
    assert query(
        tree.db_file,
        "SELECT idate, itime FROM error_logs WHERE source_file = ?",
        f"{U1}/errors/errors-0000.txt",
    ) == [("2019-09-16", "11:44:57")]


# --- co2_daily: derived from co2_readings by the importer ----------------------


def daily_rows(db_file) -> list[tuple]:
    return query(db_file, "SELECT * FROM co2_daily ORDER BY unit_id, date")


def plain_daily(db_file) -> list[tuple]:
    """co2_daily's rows computed again in plain Python from co2_readings (not by the code under test).

    DATA-FORMATS.md: CO2 values 1..199999 are valid (0 and 200010 are the
    sensor's limit codes), a temperature of 85.0 is its limit code; a reading's
    CO2 is the mean of its valid values; rows without unit_id or date are left out.
    """
    co2_cols = ", ".join(f"co2_{i:02d}" for i in range(1, 11))
    rows = query(db_file, f"SELECT unit_id, date, temp, {co2_cols} FROM co2_readings"
                          " WHERE unit_id IS NOT NULL AND date IS NOT NULL")  # fmt: skip
    days: dict[tuple[str, str], list] = {}
    for unit, date, temp, *co2 in rows:
        day = days.setdefault((unit, date), [0, 0.0, 0, 0.0, 0])
        day[0] += 1
        valid = [v for v in co2 if type(v) is int and 1 <= v <= 199_999]
        if valid:
            day[1] += sum(valid) / len(valid)
            day[2] += 1
        if type(temp) in (int, float) and temp != 85.0:
            day[3] += temp
            day[4] += 1
    return [
        (unit, date, n, co2_sum if co2_n else None, co2_n, temp_sum if temp_n else None, temp_n)
        for (unit, date), (n, co2_sum, co2_n, temp_sum, temp_n) in sorted(days.items())
    ]


def assert_daily_matches_readings(db_file) -> None:
    """co2_daily equals a plain recomputation over co2_readings, and is marked complete."""
    expected = plain_daily(db_file)
    assert expected  # the test data has readings
    got = daily_rows(db_file)
    assert [(u, d, n, cn, tn) for u, d, n, _, cn, _, tn in got] == [(u, d, n, cn, tn) for u, d, n, _, cn, _, tn in expected]
    for row, want in zip(got, expected, strict=True):
        for value, plain in ((row[3], want[3]), (row[5], want[5])):  # the sums: floating point, any order
            assert (value is None) == (plain is None) and (plain is None or value == pytest.approx(plain)), (row, want)
    assert query(db_file, "SELECT count(*) FROM derived_state WHERE name = 'co2_daily'") == [(1,)]


def test_daily_sums_follow_the_plot_rules(imported):
    tree, _ = imported
    assert_daily_matches_readings(tree.db_file)
    n, co2_n, temp_n, days = query(tree.db_file, "SELECT sum(n), sum(co2_n), sum(temp_n), count(*) FROM co2_daily")[0]
    assert n == query(tree.db_file, "SELECT count(*) FROM co2_readings WHERE date IS NOT NULL")[0][0]
    assert co2_n <= n and temp_n <= n and days > 1
    # One day by hand: a reading's CO2 is the mean of its valid values (1..199999).
    unit, date = query(tree.db_file, "SELECT unit_id, date FROM co2_daily ORDER BY n DESC LIMIT 1")[0]
    rows = query(
        tree.db_file,
        "SELECT temp, co2_01, co2_02, co2_03, co2_04, co2_05, co2_06, co2_07, co2_08, co2_09, co2_10"
        " FROM co2_readings WHERE unit_id = ? AND date = ?",
        unit,
        date,
    )
    means = []
    for _temp, *co2 in rows:
        valid = [v for v in co2 if isinstance(v, int) and 1 <= v <= 199_999]
        if valid:
            means.append(sum(valid) / len(valid))
    temps = [t for t, *_ in rows if isinstance(t, float | int) and t != 85.0]
    got = query(tree.db_file, "SELECT n, co2_sum, co2_n, temp_sum, temp_n FROM co2_daily WHERE unit_id = ? AND date = ?",
                unit, date)[0]  # fmt: skip
    assert got[0] == len(rows) and got[2] == len(means) and got[4] == len(temps)
    assert got[1] == pytest.approx(sum(means)) and got[3] == pytest.approx(sum(temps))


def test_daily_after_appends_rewrite_and_superseding(tmp_path):
    tree = build_tree(tmp_path / "inc")
    run_make(tree, "import")
    assert_daily_matches_readings(tree.db_file)
    grow(tree)  # appends to existing days, new days, a new unit
    run_make(tree, "import")
    assert_daily_matches_readings(tree.db_file)
    # A file rewritten (shorter): its old rows' days are recomputed too.
    path = tree.data_dir / U2 / "data/readings/readings-0000.tsv"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:4]) + b"\n")
    before = daily_rows(tree.db_file)
    run_make(tree, "import")
    assert daily_rows(tree.db_file) != before
    assert_daily_matches_readings(tree.db_file)
    # The SD card replaced: rows relabelled, nothing recomputed; then new lines.
    unit = tree.data_dir / U1
    stamp = unit / "superseded" / "20191101T000000Z"
    (stamp / "data").mkdir(parents=True)
    shutil.move(unit / "data" / "readings", stamp / "data" / "readings")
    before = daily_rows(tree.db_file)
    run_make(tree, "import")
    assert daily_rows(tree.db_file) == before
    rng = random.Random(9)
    _append(
        unit / "data/readings/readings-0000.tsv",
        b"".join(reading_line(U1, "varanger-03", datetime(2019, 8, 3, 1) + timedelta(hours=i), 21, rng)
                 for i in range(30)),
    )  # fmt: skip
    run_make(tree, "import")
    assert_daily_matches_readings(tree.db_file)
    scratch = copy_tree(tree, tmp_path / "scratch")
    run_make(scratch, "import")
    assert daily_rows(tree.db_file) == daily_rows(scratch.db_file)


def test_daily_is_built_for_a_database_from_before_it(tmp_path):
    tree = build_tree(tmp_path)
    run_make(tree, "import")
    expected = daily_rows(tree.db_file)
    conn = __import__("sqlite3").connect(tree.db_file)
    conn.executescript("DROP TABLE co2_daily; DROP TABLE derived_state;")
    conn.close()
    marker = tree.db_file.parent / "db.sqlite3.markers" / "readings"
    os.utime(marker, ns=(1, 1))
    proc = run_make(tree, "import")
    assert "0 lines imported" in summary(proc, "readings")
    assert daily_rows(tree.db_file) == expected
    assert_daily_matches_readings(tree.db_file)
    assert marker.stat().st_mtime_ns != 1  # the CO2 plots are redrawn from it


def test_daily_after_bulk_load_and_reimport(tmp_path, monkeypatch):
    normal = build_tree(tmp_path / "normal")
    run_make(normal, "import")
    bulk = copy_tree(normal, tmp_path / "bulk")
    monkeypatch.setenv("CO2DB_BULK_LOAD_BYTES", "0")
    run_make(bulk, "import")
    assert_daily_matches_readings(bulk.db_file)
    assert daily_rows(bulk.db_file) == daily_rows(normal.db_file)
    run_make(bulk, "reimport")
    assert daily_rows(bulk.db_file) == daily_rows(normal.db_file)


def _hand_line(date: str, time: str, temp: str, co2: list[str]) -> bytes:
    """An old-firmware (16-field) reading written out by hand."""
    return "\t".join([U1, "varanger-03", date, time, temp, "1", *co2]).encode() + b"\n"


def test_daily_means_leave_out_the_sensor_limit_codes(tmp_path):
    """co2_daily for readings written by hand, expected rows worked out by hand.

    The sensor writes 0 and 200010 for CO2 and 85.0 for temperature when it is
    at its limits (DATA-FORMATS.md): those readings stay in co2_readings, but
    must not enter the means the all-time plot draws. 1 and 199999 are valid.
    """
    tree = new_tree(tmp_path)
    _append(tree.data_dir / R1 / "readings-0000.tsv", b"".join([
        _hand_line("2019-08-01", "00:00:10", "20.5", ["500"] * 10),  # mean 500
        _hand_line("2019-08-01", "00:30:10", "85.0", ["0", "200010"] + ["600"] * 8),  # mean 600; temp a code
        _hand_line("2019-08-01", "01:00:10", "21.5", ["0"] * 10),  # no valid CO2; temp 21.5
        _hand_line("2019-08-01", "01:30:10", "None", ["200010"] * 10),  # nothing valid
        _hand_line("2019-08-01", "02:00:10", "19.0", ["1", "199999"] + ["None"] * 8),  # mean 100000
        _hand_line("2019-08-02", "00:00:10", "10.0", ["400"] * 9 + ["200010"]),  # mean 400
        _hand_line("2019-08-03", "00:00:10", "85.0", ["0"] * 10),  # a day of codes only
    ]))  # fmt: skip
    run_make(tree, "import")
    assert query(tree.db_file, "SELECT count(*) FROM co2_readings") == [(7,)]  # limit codes are kept
    assert daily_rows(tree.db_file) == [
        # unit, date, n, co2_sum, co2_n, temp_sum, temp_n
        (U1, "2019-08-01", 5, 500.0 + 600.0 + 100000.0, 3, 20.5 + 21.5 + 19.0, 3),
        (U1, "2019-08-02", 1, 400.0, 1, 10.0, 1),
        (U1, "2019-08-03", 1, None, 0, None, 0),
    ]
    # Appending to a day recomputes it by the same rules.
    _append(tree.data_dir / R1 / "readings-0000.tsv",
            _hand_line("2019-08-02", "00:30:10", "85.0", ["200010"] * 5 + ["700"] * 5))
    run_make(tree, "import")
    assert daily_rows(tree.db_file)[1] == (U1, "2019-08-02", 2, 400.0 + 700.0, 2, 10.0, 1)


def test_a_line_naming_another_unit_is_rejected_not_imported_as_that_unit(tmp_path):
    """A unit can only add its own readings: lines naming another unit go to rejected_lines as other_unit.

    Rule 4 of DATA-FORMATS.md's readings rules; it comes after not_unit_line
    and before date_1970 and bad_field_count.
    """
    tree = new_tree(tmp_path)
    own = _hand_line("2019-08-01", "00:00:10", "20.5", ["500"] * 10)
    forged = own.replace(U1.encode(), U2.encode(), 1)
    forged_1970 = _hand_line("1970-01-01", "00:00:10", "20.5", ["9999"] * 10).replace(U1.encode(), U2.encode(), 1)
    longer_id = own.replace(U1.encode(), U1.encode() + b"0", 1)  # not the folder's ID either
    _append(tree.data_dir / R1 / "readings-0000.tsv", own + forged + forged_1970 + longer_id)
    proc = run_make(tree, "import")
    assert summary(proc, "readings") == "readings: 1 files (1 changed), 1 lines imported, skipped: other_unit=3"
    assert query(tree.db_file, "SELECT unit_id, date, co2_01 FROM co2_readings") == [(U1, "2019-08-01", 500)]
    assert query(tree.db_file, "SELECT file, line_no, reason, raw FROM rejected_lines ORDER BY line_no") == [
        (f"{R1}/readings-0000.tsv", 2, "other_unit", forged[:-1]),  # the line without its newline
        (f"{R1}/readings-0000.tsv", 3, "other_unit", forged_1970[:-1]),
        (f"{R1}/readings-0000.tsv", 4, "other_unit", longer_id[:-1]),
    ]
