"""make export after new readings: only the added rows are read, only the
files they fall in are rewritten, older rows whose flags they change are
re-flagged, and the result is byte for byte a fresh export of the same
inputs; anything but added rows (a re-imported or hand-edited file, new
deployments) rebuilds from scratch (real files, the real importers, make)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timedelta

from test_export import by_line, csv_rows, exported_tree, line
from test_export_files import check_package, files_of

from datagen import U3, copy_tree, run_make

DEPLOYED = [f"{U3}\tlab-3\tfjell\t2\tdeployed\t2020-12-01\t\tfrom December\n"]
START = datetime(2020, 11, 20)
SITE_CSV = "csv/site-fjell.csv"


def every_six_hours(days: int) -> list[str]:
    """U3's lines, one every 6 hours from START (Nov 2020 outside any period)."""
    times = [START + timedelta(hours=6 * i) for i in range(days * 4)]
    return [line(U3, t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")) for t in times]


def add_readings(tree, name: str, lines: list[str]) -> None:
    (tree.data_dir / U3 / "data/readings" / name).write_text("".join(lines))


def assert_equals_a_fresh_export(tree, tmp_path) -> None:
    """The export equals, file for file, one made from scratch of the same inputs."""
    fresh = copy_tree(tree, tmp_path / "fresh")
    shutil.copy(tree.deploy_tsv, fresh.deploy_tsv)
    run_make(fresh, "export")
    ours, theirs = files_of(tree.pub_dir / "export"), files_of(fresh.pub_dir / "export")
    assert sorted(ours) == sorted(theirs)
    for path in ours:
        if path != "datapackage.json":
            assert ours[path][0] == theirs[path][0], path
    strip = ("created", "co2db:fingerprint", "co2db:readings")  # the database's generation differs
    packages = [
        {k: v for k, v in json.loads(files["datapackage.json"][0]).items() if k not in strip}
        for files in (ours, theirs)
    ]
    assert packages[0] == packages[1]
    shutil.rmtree(fresh.root)


def test_added_rows_reflag_older_ones_rewrite_only_their_files_and_equal_a_fresh_export(tmp_path):
    tree, _ = exported_tree(tmp_path, {U3: every_six_hours(120)}, DEPLOYED)
    export = tree.pub_dir / "export"
    before = files_of(export)
    old = by_line(csv_rows(tree))
    # 2021-02-10 12:00:00 and 18:00:00 are older rows (lines 331 and 332).
    assert (old[331]["ts"], old[331]["qc_flags"]) == ("2021-02-10T12:00:00Z", "")
    assert (old[332]["ts"], old[332]["qc_flags"]) == ("2021-02-10T18:00:00Z", "")
    add_readings(
        tree,
        "readings-0001.tsv",
        [
            line(U3, "2021-02-10", "12:00:00", "11.0"),  # the same ts as line 331: both repeat_time
            line(U3, "2021-02-10", "17:58:01", "11.5"),  # 119 s before line 332: that one becomes close_pair
            line(U3, "2021-03-20", "00:00:00"),  # after the last older row
            line(U3, "2021-03-20", "25:00:00"),  # bad_time
        ],
    )
    proc = run_make(tree, "export")
    assert "4 rows appended" in proc.stdout, proc.stdout
    assert "2 older rows re-flagged" in proc.stderr, proc.stderr
    after = files_of(export)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {
        SITE_CSV,
        "csv/bad_time.csv",  # new
        "parquet/site=fjell/year=2021/part-0.parquet",
        "parquet/site=__HIVE_DEFAULT_PARTITION__/year=__HIVE_DEFAULT_PARTITION__/part-0.parquet",  # new
        "daily/daily.csv",
        "daily/daily.parquet",
        "datapackage.json",
    }
    # Kept: the unit's November file and the 2020 partition, bytes and mtime.
    for kept in (f"csv/unit-{U3}.csv", "parquet/site=fjell/year=2020/part-0.parquet"):
        assert after[kept] == before[kept]
    # Where the site file was rewritten from: the bytes before February are the old ones.
    package = check_package(export)
    res = next(r for r in package["resources"] if r["path"] == SITE_CSV)
    february = next(offset for month, offset, _ in res["co2db:months"] if month == "2021-02")
    assert after[SITE_CSV][0][:february] == before[SITE_CSV][0][:february]
    rows = csv_rows(tree)
    got = {(r["_file"], r["source_file"].rsplit("/", 1)[-1], int(r["source_line"])): r for r in rows}
    assert got[("site-fjell.csv", "readings-0000.tsv", 331)]["qc_flags"] == "repeat_time"
    assert got[("site-fjell.csv", "readings-0001.tsv", 1)]["qc_flags"] == "repeat_time"
    assert got[("site-fjell.csv", "readings-0000.tsv", 332)]["qc_flags"] == "close_pair"
    assert got[("site-fjell.csv", "readings-0001.tsv", 2)]["qc_flags"] == ""
    assert got[("bad_time.csv", "readings-0001.tsv", 4)]["qc_flags"] == "bad_time;not_deployed"
    assert len(rows) == 480 + 4
    assert_equals_a_fresh_export(tree, tmp_path)
    # Nothing new after that: nothing touched.
    proc = run_make(tree, "export")
    assert "nothing new" in proc.stdout
    assert files_of(export) == after


def test_a_field_that_now_needs_quotes_rewrites_its_file_quoted(tmp_path):
    tree, _ = exported_tree(tmp_path, {U3: every_six_hours(30)}, DEPLOYED)
    assert b'"' not in (tree.pub_dir / "export" / SITE_CSV).read_bytes()
    unit_csv = tree.pub_dir / f"export/csv/unit-{U3}.csv"
    november = unit_csv.read_bytes()
    add_readings(
        tree,
        "readings-0001.tsv",
        [
            line(U3, "2020-12-25", "12:00:00").replace("\tnick\t", '\tla "b",3\t'),
            line(U3, "2020-11-25", "03:00:00"),  # in no period: into the unit's file, amid its rows
        ],
    )
    proc = run_make(tree, "export")
    assert "2 rows appended" in proc.stdout
    assert unit_csv.read_bytes() != november and b"2020-11-25T03:00:00Z" in unit_csv.read_bytes()
    text = (tree.pub_dir / "export" / SITE_CSV).read_text()
    assert '"la ""b"",3"' in text and text.count('"nick"') == 30 * 4 - 11 * 4
    assert_equals_a_fresh_export(tree, tmp_path)


def test_rows_changed_or_deleted_and_new_deployments_export_from_scratch(tmp_path):
    tree, _ = exported_tree(tmp_path, {U3: every_six_hours(30)}, DEPLOYED)
    # A readings file rewritten in place (the importer deletes its rows and imports it again).
    first = tree.data_dir / U3 / "data/readings/readings-0000.tsv"
    first.write_text(first.read_text().replace("\t10.0\t", "\t12.5\t", 1))
    proc = run_make(tree, "export")
    assert "120 rows, " in proc.stdout and "appended" not in proc.stdout, proc.stdout
    assert_equals_a_fresh_export(tree, tmp_path)
    # New deployments: every row may be attributed differently.
    tree.deploy_tsv.write_text(tree.deploy_tsv.read_text().replace("2020-12-01", "2020-12-05"))
    add_readings(tree, "readings-0001.tsv", [line(U3, "2020-12-30", "00:00:00")])
    proc = run_make(tree, "export")
    assert "121 rows, " in proc.stdout and "appended" not in proc.stdout, proc.stdout
    assert_equals_a_fresh_export(tree, tmp_path)


def test_a_hand_edit_with_a_value_that_is_not_a_number_rebuilds_and_exports_it_empty(tmp_path):
    tree, _ = exported_tree(tmp_path, {U3: every_six_hours(30)}, DEPLOYED)
    with sqlite3.connect(tree.db_file) as conn:  # by hand: counted by the trigger, whoever edits
        conn.execute("UPDATE co2_readings SET temp = 'warm', co2_01 = 400.5 WHERE line_no = 50")
    proc = run_make(tree, "export")
    assert "120 rows, " in proc.stdout, proc.stdout
    assert "values that are not numbers, exported empty: co2_01 1, temp 1" in proc.stderr
    row = by_line(csv_rows(tree))[50]
    assert (row["temp_c"], row["co2_01_ppm"], row["qc_flags"]) == ("", "", "missing")
    assert by_line(csv_rows(tree))[51]["temp_c"] == "10.0"


def test_a_site_name_too_long_for_a_file_name_is_cut_in_names_only(tmp_path):
    site = ("Østre fjellmyr " * 20).strip()  # 319 bytes of UTF-8, about 800 characters spelled ~XX
    tree, proc = exported_tree(tmp_path, {U3: every_six_hours(20)}, [DEPLOYED[0].replace("fjell", site)])
    assert "1 site names too long for a file name" in proc.stderr
    export = tree.pub_dir / "export"
    names = [p.name for p in export.rglob("*")]
    assert max(len(n.encode()) for n in names) <= 255
    (site_csv,) = [p for p in (export / "csv").iterdir() if p.name.startswith("site-")]
    assert len(site_csv.name) == len("site-") + 200 + len(".csv") and "~~" in site_csv.name
    rows = csv_rows(tree)
    assert {r["site"] for r in rows if r["_file"] == site_csv.name} == {site}
    package = check_package(export)
    assert package["co2db:sites"] == [site]
    # Parquet readers take the site from the folder name: the cut spelling.
    import pyarrow.dataset as ds

    table = ds.dataset(export / "parquet", partitioning="hive").to_table()
    assert table.num_rows == len(rows)
    add_readings(tree, "readings-0001.tsv", [line(U3, "2020-12-07", "12:00:00")])
    assert "1 row appended" in run_make(tree, "export").stdout
    assert {r["site"] for r in csv_rows(tree) if r["_file"] == site_csv.name} == {site}
    assert_equals_a_fresh_export(tree, tmp_path)
