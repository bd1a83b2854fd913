"""make export, the rows: every reading once, the deployment period of each
(boundaries), each quality flag hit and missed by one, the CO2 statistics and
the daily summaries (real files through the real importers and make)."""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from datetime import UTC, datetime

import pyarrow.dataset as ds

from datagen import U1, U2, U3, build_tree, new_tree, run_make

HEADER = "unit_id\tnickname\tsite\ttier\tstatus\tstart_ts\tend_ts\tnote\n"


def line(unit, day, time, temp="10.0", co2=None) -> str:
    """A 16-column readings line with exactly these values."""
    co2 = co2 or ["500"] * 10
    return "\t".join([unit, "nick", day, time, temp, "0", *co2]) + "\n"


def exported_tree(tmp_path, readings: dict[str, list[str]], deployments: list[str]):
    tree = new_tree(tmp_path)
    for unit, lines in readings.items():
        folder = tree.data_dir / unit / "data/readings"
        folder.mkdir(parents=True)
        (folder / "readings-0000.tsv").write_text("".join(lines))
    tree.deploy_tsv.parent.mkdir(parents=True, exist_ok=True)
    tree.deploy_tsv.write_text(HEADER + "".join(deployments))
    proc = run_make(tree, "export")
    return tree, proc


def csv_rows(tree) -> list[dict]:
    rows = []
    for path in sorted((tree.pub_dir / "export/csv").iterdir()):
        with open(path, encoding="utf-8", newline="") as f:
            rows += [dict(r, _file=path.name) for r in csv.DictReader(f)]
    return rows


def by_line(rows) -> dict[int, dict]:
    return {int(r["source_line"]): r for r in rows}


def test_every_reading_of_the_messy_tree_once_in_the_csv_files_and_once_in_parquet(tmp_path):
    tree = build_tree(tmp_path)
    proc = run_make(tree, "export")
    conn = sqlite3.connect(tree.db_file)
    in_db = Counter(conn.execute("SELECT source_file, line_no FROM co2_readings"))
    conn.close()
    assert sum(in_db.values()) == tree.expected.readings
    in_csv = Counter((r["source_file"], int(r["source_line"])) for r in csv_rows(tree))
    assert in_csv == in_db
    table = ds.dataset(tree.pub_dir / "export/parquet", partitioning="hive").to_table()
    in_parquet = Counter(
        zip(table.column("source_file").to_pylist(), table.column("source_line").to_pylist(), strict=True)
    )
    assert in_parquet == in_db
    assert f"export: {tree.expected.readings} rows" in proc.stdout


PERIODS = [
    f"{U1}\tn\tsite_a\t5\tdeployed\t2020-01-01\t2020-01-10T12:00:00\t\n",
    f"{U1}\tn\tsite_b\t7\ten_route\t2020-01-10T12:00:00\t\t\n",  # open end
    f"{U1}\tn\tsite_c\t8\tdeployed\t2020-01-05T00:00:00\t2020-01-06\tinside a\n",
    f"{U1}\tn\tsite_d\t9\tlab_check\t2020-01-05T00:00:00\t2020-01-06\tsame start, later row\n",
    f"{U2}\tn\tsite_e\t2\tdeployed\t\t2020-01-02\topen start\n",
    f"{U3}\tn\tsite_f\t4\t\t2020-01-01\t\tno status: not deployed, as DATA-FORMATS.md says\n",
]


def test_site_status_tier_at_period_boundaries(tmp_path):
    u1 = [
        ("2019-12-31", "23:59:59", ("", "", "")),  # before the date-only start
        ("2020-01-01", "00:00:00", ("site_a", "deployed", "5")),  # date-only start is 00:00, inclusive
        ("2020-01-05", "00:00:00", ("site_d", "lab_check", "9")),  # latest start, then the later row
        ("2020-01-05", "23:50:00", ("site_d", "lab_check", "9")),
        ("2020-01-06", "00:00:00", ("site_a", "deployed", "5")),  # d's end is exclusive
        ("2020-01-10", "11:59:59", ("site_a", "deployed", "5")),
        ("2020-01-10", "12:00:00", ("site_b", "en_route", "7")),  # a's end exclusive, b's start inclusive
        ("2030-06-01", "00:00:00", ("site_b", "en_route", "7")),  # open end
    ]
    u2 = [
        ("2000-01-01", "00:00:00", ("site_e", "deployed", "2")),  # open start
        ("2020-01-01", "23:59:59", ("site_e", "deployed", "2")),
        ("2020-01-02", "00:00:00", ("", "", "")),  # date-only end is exclusive
    ]
    u3 = [("2020-01-03", "00:00:00", ("site_f", "", "4"))]  # an empty status stays empty
    tree, _ = exported_tree(
        tmp_path,
        {U1: [line(U1, d, t) for d, t, _ in u1], U2: [line(U2, d, t) for d, t, _ in u2], U3: [line(U3, d, t) for d, t, _ in u3]},
        PERIODS,
    )
    rows = csv_rows(tree)
    for unit, cases in ((U1, u1), (U2, u2), (U3, u3)):
        got = by_line(r for r in rows if r["unit_id"] == unit)
        for no, (day, time, want) in enumerate(cases, 1):
            row = got[no]
            assert row["ts"] == f"{day}T{time}Z"
            assert (row["site"], row["status"], row["tier"]) == want, (unit, day, time)
            assert ("not_deployed" in row["qc_flags"]) == (want[1] != "deployed")
            site_file = f"site-{want[0]}.csv" if want[0] else f"unit-{unit}.csv"
            assert row["_file"] == site_file
    with open(tree.pub_dir / "export/csv/site-site_a.csv", encoding="utf-8") as f:
        ts = [r["ts"] for r in csv.DictReader(f)]
    assert ts == sorted(ts) and len(ts) == 3


U3_DEPLOYED = [f"{U3}\tn\tsite_s\t3\tdeployed\t2020-01-01\t\t\n"]
CO2 = ["500"] * 10
FLAG_CASES = [  # (date, time, temp, ten CO2 values, expected qc_flags)
    ("2020-02-01", "00:00:00", "85.0", CO2, "sensor_limit"),
    ("2020-02-01", "01:00:00", "84.9375", CO2, ""),
    ("2020-02-01", "05:00:00", "None", CO2, "missing"),
    ("2020-02-01", "06:00:00", "10.0", CO2[:9] + ["None"], "missing"),
    ("2020-02-01", "07:00:00", "10.0", CO2, "repeat_time"),
    ("2020-02-01", "07:00:00", "10.0", CO2, "repeat_time"),
    ("2020-02-01", "07:01:59", "10.0", CO2, "close_pair"),  # 119 s after the previous distinct ts
    ("2020-02-01", "08:00:00", "1.5", ["600"] * 10, ""),
    ("2020-02-01", "08:02:00", "-2.5", ["700"] * 10, ""),  # 120 s: not close
    ("2020-02-03", "00:00:00", "10.0", ["0"] + CO2[1:], "sensor_limit"),
    ("2020-02-03", "01:00:00", "10.0", CO2[:4] + ["200010"] + CO2[5:], "sensor_limit"),
    ("2020-02-03", "02:00:00", "10.0", CO2[:4] + ["200009"] + CO2[5:], ""),
    ("2020-02-03", "03:00:00", "10.0", ["1"] + CO2[1:], ""),
    ("2020-02-03", "04:00:00", "85.0", ["0"] + ["None"] * 9, "sensor_limit;missing"),
    ("2020-02-30", "09:00:00", "10.0", CO2, "bad_time;not_deployed"),
    ("2020-02-01", "25:00:00", "10.0", CO2, "bad_time;not_deployed"),
    ("None", "09:00:00", "10.0", CO2, "bad_time;not_deployed"),
    ("2020-02-04", "9:00:00", "10.0", CO2, "bad_time;not_deployed"),
    ("2019-12-31", "09:00:00", "10.0", CO2, "not_deployed"),  # before the period
]


def test_each_flag_hit_and_missed_by_one(tmp_path):
    tree, proc = exported_tree(tmp_path, {U3: [line(U3, d, t, tp, c) for d, t, tp, c, _ in FLAG_CASES]}, U3_DEPLOYED)
    got = by_line(csv_rows(tree))
    assert len(got) == len(FLAG_CASES)
    for no, (day, time, _, _, flags) in enumerate(FLAG_CASES, 1):
        assert got[no]["qc_flags"] == flags, (no, day, time)
        if "bad_time" in flags:
            assert got[no]["_file"] == "bad_time.csv" and got[no]["ts"] == "" and got[no]["site"] == ""
    assert "flags: bad_time 4, sensor_limit 4, missing 3, repeat_time 2, close_pair 1, not_deployed 5" in proc.stdout


STATS_CASES = [  # ten CO2 values -> mean, median, min, max as written in the CSV
    (["400", "None", "410", "None", "420", "430"] + ["None"] * 4, ("415.0", "415.0", "400", "430")),
    (["401", "None", "None", "403", "408"] + ["None"] * 5, ("404.0", "403.0", "401", "408")),
    (["400", "401", "401"] + ["None"] * 7, ("400.7", "401.0", "400", "401")),
    (["None"] * 10, ("", "", "", "")),
    (["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"], ("5.5", "5.5", "1", "10")),
]


def test_co2_mean_median_min_max_leave_out_nulls(tmp_path):
    lines = [line(U3, "2020-03-01", f"{h:02d}:00:00", co2=co2) for h, (co2, _) in enumerate(STATS_CASES)]
    tree, _ = exported_tree(tmp_path, {U3: lines}, U3_DEPLOYED)
    got = by_line(csv_rows(tree))
    for no, (co2, want) in enumerate(STATS_CASES, 1):
        row = got[no]
        assert (row["co2_mean_ppm"], row["co2_median_ppm"], row["co2_min_ppm"], row["co2_max_ppm"]) == want
        assert [row[f"co2_{i:02d}_ppm"] for i in range(1, 11)] == ["" if v == "None" else v for v in co2]
    table = ds.dataset(tree.pub_dir / "export/parquet", partitioning="hive").to_table().sort_by("source_line")
    assert table.column("co2_median_ppm").to_pylist() == [415.0, 403.0, 401.0, None, 5.5]
    assert table.column("co2_min_ppm").to_pylist() == [400, 401, 400, None, 1]
    assert str(table.schema.field("co2_min_ppm").type) == "int64"
    assert table.schema.field("ts").type.tz == "UTC"  # Parquet stores seconds as milliseconds
    assert table.column("ts").to_pylist()[1] == datetime(2020, 3, 1, 1, 0, tzinfo=UTC)
    assert table.column("site").to_pylist() == ["site_s"] * 5


def test_daily_summary_of_one_unit_day_by_hand(tmp_path):
    tree, _ = exported_tree(tmp_path, {U3: [line(U3, d, t, tp, c) for d, t, tp, c, _ in FLAG_CASES]}, U3_DEPLOYED)
    with open(tree.pub_dir / "export/daily/daily.csv", encoding="utf-8") as f:
        days = {(r["unit_id"], r["date"]): r for r in csv.DictReader(f)}
    day = days[(U3, "2020-02-01")]
    # Nine readings on 2020-02-01 (the 25:00:00 one has no time); six flagged;
    # unflagged: 84.9375 °C / 500 ppm, 1.5 °C / 600 ppm, -2.5 °C / 700 ppm.
    assert (day["site"], day["status"], day["tier"]) == ("site_s", "deployed", "3")
    assert (day["n_readings"], day["n_flagged"]) == ("9", "6")
    assert (day["co2_mean_ppm"], day["co2_min_ppm"], day["co2_max_ppm"]) == ("600.0", "500.0", "700.0")
    assert (day["temp_mean_c"], day["temp_min_c"], day["temp_max_c"]) == ("27.979", "-2.5", "84.9375")
    assert days[(U3, "2019-12-31")]["n_flagged"] == "1"
    assert days[(U3, "2019-12-31")]["co2_mean_ppm"] == ""  # its one reading is flagged not_deployed
