"""The plot commands, run for real (subprocesses) on a small exact database.

The sample data set (make_sample_db, shared with test_pages.py):

    unit  nickname     periods (deploy_durations_tiered)                      groups
    A     varanger-01  lab_check lab(1) 01-10..01-20, en_route vj_re_sn_3(23)  lab, vj_re_sn_3
                       01-20..02-01T12, deployed vj_re_sn_3(23) 02-01T12..open
    B     varanger-02  deployed vj_re_sn_4(22) 02-10..03-01,                     vj_re_sn_4, lab
                       lab_check lab(1) 03-01..open
    C     NULL         never deployed; two pings, one reading (temp NULL)     unit C
    D     varanger-04  deployed vj_re_sn_4(22) 03-02..open; silent since 03-10 vj_re_sn_4
    E     varanger-05  en_route vj_ka_sn_1(21) 03-14..open; never heard          vj_ka_sn_1

All in 2026; "now" is 2026-03-15T12:00:00 (passed as --now).
Groups: vj_re_sn_3 (23), vj_re_sn_4 (22), vj_ka_sn_1 (21), lab (1), C (no tier).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "co2server" / "schema.sql"
NOW = "2026-03-15T12:00:00"

A, B, C, D, E = (
    "co2unit-aaaaaaaaaaa1",
    "co2unit-bbbbbbbbbbb2",
    "co2unit-ccccccccccc3",
    "co2unit-ddddddddddd4",
    "co2unit-eeeeeeeeeee5",
)

DEPLOYMENTS = [
    # unit_id, nickname, site, tier, status, start_ts, end_ts, note
    (A, "varanger-01", "lab", 1, "lab_check", "2026-01-10", "2026-01-20", None),
    (A, "varanger-01", "vj_re_sn_3", 23, "en_route", "2026-01-20", "2026-02-01T12:00:00", None),
    (A, "varanger-01", "vj_re_sn_3", 23, "deployed", "2026-02-01T12:00:00", None, "snow"),
    (B, "varanger-02", "vj_re_sn_4", 22, "deployed", "2026-02-10", "2026-03-01", None),
    (B, "varanger-02", "lab", 1, "lab_check", "2026-03-01", None, "broken fan"),
    (D, "varanger-04", "vj_re_sn_4", 22, "deployed", "2026-03-02", None, "replaces B"),
    (E, "varanger-05", "vj_ka_sn_1", 21, "en_route", "2026-03-14", None, None),
]
SITES = ["vj_re_sn_3", "vj_re_sn_4", "vj_ka_sn_1", "lab"]
GROUP_IDS = {
    "panel-site-vj_re_sn_3",
    "panel-site-vj_re_sn_4",
    "panel-site-vj_ka_sn_1",
    "panel-site-lab",
    f"panel-unit-{C}",
}

PINGS = [
    # ping_ts, unit_id, nickname, rssi_dbm
    ("2026-01-15T10:00:00.000000", A, "varanger-01", -70),  # in the lab, before deployment
    ("2026-03-13T10:00:00.000001", A, "varanger-01", -90),
    ("2026-03-13T11:00:00.000000", A, "varanger-01", -92),
    ("2026-03-14T10:00:00.000000", A, "varanger-01", -88),
    ("2026-03-15T11:00:00.500000", A, "varanger-01", -95),
    ("2026-02-20T08:00:00.000000", B, "varanger-02", -100),  # before its lab_check period
    ("2026-03-05T09:00:00.000000", B, "varanger-02", -60),
    ("2026-03-15T09:00:00.000000", B, "varanger-02", -61),
    ("2026-03-15T10:00:00.000000", B, "varanger-02", None),
    ("2026-03-14T12:00:00.000000", C, None, -80),
    ("2026-03-15T06:00:00.000000", C, None, -82),
    ("2026-03-03T00:00:00.000000", D, "varanger-04", -77),
    ("2026-03-10T05:00:00.000000", D, "varanger-04", -79),
]


def _readings():
    """Readings of A, B and D every 6 hours; C has exactly one."""
    rows = []

    def add(unit, nick, start, end, base, temp_base, every=timedelta(hours=6)):
        t, i = start, 0
        while t < end:
            temp = None if (unit == D and i % 5 == 0) else temp_base + 8 * ((i % 4) - 1.5) / 1.5
            co2 = [base + 10 * ((i + k) % 7) for k in range(10)]
            if i % 3 == 0:
                co2[2] = None  # NULLs are ignored in the mean
            if i == 1:
                co2[0] = 200010  # a sensor-limit code, left out of the mean
            rows.append((unit, nick, t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S"), temp, *co2))
            t, i = t + every, i + 1

    add(A, "varanger-01", datetime(2026, 1, 12), datetime(2026, 3, 15, 11), 450, -12.0)
    add(B, "varanger-02", datetime(2026, 2, 10), datetime(2026, 3, 6), 520, -4.0)
    add(D, None, datetime(2026, 3, 2), datetime(2026, 3, 10, 6), 600, 2.0)
    rows.append((C, None, "2026-03-14", "12:00:00", None, *[700] * 10))
    return rows


READINGS = _readings()


def make_db(path: Path, *, deployments=(), pings=(), readings=()) -> Path:
    """A database with the shared schema and these rows."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.read_text())
    conn.executemany("INSERT INTO deploy_durations_tiered VALUES (?, ?, ?, ?, ?, ?, ?, ?)", deployments)
    conn.executemany(
        "INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(ts, ts[:10], ts[11:], unit, nick, None if dbm is None else 31, dbm, 99) for ts, unit, nick, dbm in pings],
    )
    conn.executemany(
        "INSERT INTO co2_readings (unit_id, nickname, date, time, temp, co2_01, co2_02, co2_03,"
        " co2_04, co2_05, co2_06, co2_07, co2_08, co2_09, co2_10)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        readings,
    )
    conn.commit()
    conn.close()
    return path


def make_sample_db(path: Path) -> Path:
    return make_db(path, deployments=DEPLOYMENTS, pings=PINGS, readings=READINGS)


def _command(module: str, args) -> list[str]:
    return [sys.executable, "-W", "error", "-m", f"co2db.{module}", *map(str, args)]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT / "database"))


def run_module(module: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m co2db.<module>` from database/ as the Makefile does; warnings are errors."""
    proc = subprocess.run(
        _command(module, args),
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT / "database",
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_many(commands) -> list[tuple[int, str, str]]:
    """Run several (module, *args) commands at once; (returncode, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(
            _command(module, args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT / "database",
        )
        for module, *args in commands
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    for returncode, _out, err in results:
        assert returncode == 0, err
    return results


SVG_NS = "{http://www.w3.org/2000/svg}"


def svg_tree(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def panel_ids(root: ET.Element) -> list[str]:
    return [el.get("id") for el in root.iter() if (el.get("id") or "").startswith("panel-")]


def svg_texts(root: ET.Element) -> set[str]:
    return {"".join(el.itertext()).strip() for el in root.iter(f"{SVG_NS}text")}


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory) -> Path:
    return make_sample_db(tmp_path_factory.mktemp("db") / "db.sqlite3")


@pytest.fixture(scope="module")
def rendered(sample_db, tmp_path_factory):
    """The three plots of the Makefile, rendered once from the sample database."""
    out = tmp_path_factory.mktemp("pub")
    before = sample_db.read_bytes()
    common = ["--db", sample_db, "--now", NOW]
    results = run_many(
        [
            ("plot_pings", *common, "--out", out / "pings_all_tiered.svg"),
            ("plot_co2", *common, "--out", out / "co2_tiered_all_hires.svg"),
            ("plot_co2", *common, "--out", out / "co2_tiered_recent_hires.svg",
             "--recent-days", "14"),
        ]
    )  # fmt: skip
    return {"dir": out, "results": results, "db_before": before, "db": sample_db}


def test_commands_print_one_line_and_no_warnings(rendered):
    for name, (_rc, stdout, stderr) in zip(
        ("pings_all_tiered", "co2_tiered_all_hires", "co2_tiered_recent_hires"),
        rendered["results"],
        strict=True,
    ):
        assert stderr == ""
        assert len(stdout.splitlines()) == 1
        assert f"wrote {rendered['dir'] / name}.svg (svg, " in stdout
        assert stdout.rstrip().endswith(" s")


def test_pings_plot_has_one_row_per_group_in_tier_order(rendered):
    root = svg_tree(rendered["dir"] / "pings_all_tiered.svg")
    assert panel_ids(root) == [
        "panel-site-vj_re_sn_3",
        "panel-site-vj_re_sn_4",
        "panel-site-vj_ka_sn_1",
        "panel-site-lab",
        f"panel-unit-{C}",
    ]
    texts = svg_texts(root)
    for site in SITES:
        assert site in texts
    assert C in texts  # never deployed: its own row, named by hardware ID
    assert "varanger-01" in texts
    assert "varanger-02, varanger-04" in texts  # both units that stood at vj_re_sn_4
    assert "varanger-05" in texts  # deployed, never heard: a row all the same
    for tier in ("tier 23", "tier 22", "tier 21", "tier 1", "no tier"):
        assert tier in texts
    # Range: whole days from the first ping to the last.
    assert any("2026-01-15 00:00 – 2026-03-16 00:00 UTC" in t for t in texts)


@pytest.mark.parametrize("plot", ["co2_tiered_all_hires.svg", "co2_tiered_recent_hires.svg"])
def test_co2_plot_has_one_panel_per_group(rendered, plot):
    root = svg_tree(rendered["dir"] / plot)
    assert sorted(panel_ids(root)) == sorted(GROUP_IDS)
    texts = svg_texts(root)
    for site in SITES:
        assert site in texts
    assert "varanger-02, varanger-04" in texts
    assert "no readings in this period" in texts  # vj_ka_sn_1: E never sent any


def test_co2_recent_range_ends_now(rendered):
    texts = " ".join(svg_texts(svg_tree(rendered["dir"] / "co2_tiered_recent_hires.svg")))
    assert "2026-03-01 12:00 – 2026-03-15 12:00 UTC" in texts
    assert "bins of 30 min" in rendered["results"][2][1]


def test_svg_text_stays_text_and_has_no_date(rendered):
    svg = (rendered["dir"] / "co2_tiered_all_hires.svg").read_text()
    assert "<text" in svg
    assert "<dc:date>" not in svg


def test_the_database_is_not_written(rendered):
    assert rendered["db"].read_bytes() == rendered["db_before"]


def test_svg_output_is_reproducible(rendered, tmp_path):
    again = tmp_path / "again.svg"
    run_module("plot_pings", "--db", rendered["db"], "--now", NOW, "--out", again)
    assert again.read_bytes() == (rendered["dir"] / "pings_all_tiered.svg").read_bytes()


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--min-tier", "2"], ["vj_re_sn_3", "vj_re_sn_4", "vj_ka_sn_1"]),
        (["--min-tier", "2", "--max-tier", "22"], ["vj_re_sn_4", "vj_ka_sn_1"]),
        (["--max-tier", "21"], ["vj_ka_sn_1", "lab"]),
    ],
)
def test_tier_options_filter_groups(sample_db, tmp_path, options, expected):
    outs = [tmp_path / "pings.svg", tmp_path / "co2.svg"]
    common = ["--db", sample_db, "--now", NOW, *options]
    run_many([("plot_pings", *common, "--out", outs[0]), ("plot_co2", *common, "--out", outs[1])])
    for out in outs:
        root = svg_tree(out)
        assert panel_ids(root) == [f"panel-site-{site}" for site in expected]
        texts = svg_texts(root)
        assert C not in texts  # never deployed, no tier: left out by either option
        for site in set(SITES) - set(expected):
            assert site not in texts


def test_co2_recent_without_recent_data_says_so(sample_db, tmp_path):
    out = tmp_path / "recent.svg"
    run_module(
        "plot_co2", "--db", sample_db, "--out", out, "--now", "2027-06-01T00:00:00",
        "--recent-days", "14",
    )  # fmt: skip
    root = svg_tree(out)
    texts = svg_texts(root)
    assert "No CO₂ readings between 2027-05-18 00:00 and 2027-06-01 00:00 UTC" in texts
    # Open-ended deployments still overlap the range: their panels stay, empty.
    assert panel_ids(root) == [
        "panel-site-vj_re_sn_3",
        "panel-site-vj_re_sn_4",
        "panel-site-vj_ka_sn_1",
        "panel-site-lab",
    ]


ONE_READING = [(C, None, "2026-03-14", "12:00:00", None, *[None] * 9, 650)]


@pytest.mark.parametrize(
    "data, pings_ids, co2_ids",
    [
        (None, [], []),  # a fresh file: no tables at all
        ({}, [], []),  # tables, no rows
        ({"deployments": DEPLOYMENTS}, sorted(GROUP_IDS - {f"panel-unit-{C}"}), None),
        ({"pings": PINGS[-4:-2], "readings": ONE_READING}, [f"panel-unit-{C}"], None),
        ({"pings": PINGS[9:10]}, [f"panel-unit-{C}"], []),  # one ping, NULL nickname
    ],
    ids=["fresh", "empty", "deployments only", "never deployed, one reading", "one ping"],
)
def test_sparse_databases_give_valid_files(tmp_path, data, pings_ids, co2_ids):
    db = tmp_path / "db.sqlite3"
    if data is None:
        sqlite3.connect(db).close()
    else:
        make_db(db, **data)
    co2_ids = pings_ids if co2_ids is None else co2_ids
    out = tmp_path / "out"  # created by the commands
    common = ["--db", db, "--now", NOW]
    results = run_many(
        [
            ("plot_pings", *common, "--out", out / "pings.svg"),
            ("plot_co2", *common, "--out", out / "co2.svg"),
            ("plot_co2", *common, "--out", out / "recent.svg", "--recent-days", "14"),
        ]
    )
    assert [err for _rc, _out, err in results] == ["", "", ""]
    for name, expected in (("pings", pings_ids), ("co2", co2_ids), ("recent", co2_ids)):
        root = svg_tree(out / f"{name}.svg")
        assert root.tag == f"{SVG_NS}svg"
        assert sorted(panel_ids(root)) == sorted(expected), name


@pytest.mark.parametrize(
    "module, name, fmt, magic",
    [
        ("plot_pings", "pings.png", None, b"\x89PNG\r\n\x1a\n"),
        ("plot_co2", "co2.pdf", None, b"%PDF-"),
        ("plot_co2", "co2.out", "png", b"\x89PNG\r\n\x1a\n"),
    ],
)
def test_formats(sample_db, tmp_path, module, name, fmt, magic):
    out = tmp_path / name
    args = ["--db", sample_db, "--out", out, "--now", NOW]
    run_module(module, *args, *(["--format", fmt] if fmt else []))
    assert out.read_bytes().startswith(magic)


def test_xmin_xmax_limit_the_range(sample_db, tmp_path):
    common = ["--db", sample_db, "--now", NOW]
    run_many(
        [
            ("plot_pings", *common, "--out", tmp_path / "pings.svg",
             "--xmin", "2026-01-01", "--xmax", "2026-01-31"),
            ("plot_co2", *common, "--out", tmp_path / "co2.svg",
             "--xmin", "2026-01-01", "--xmax", "2026-01-31"),
        ]
    )  # fmt: skip
    # In January only A was around: in the lab, then en route to vj_re_sn_3.
    for name in ("pings.svg", "co2.svg"):
        assert panel_ids(svg_tree(tmp_path / name)) == [
            "panel-site-vj_re_sn_3",
            "panel-site-lab",
        ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--db", "{tmp}/missing.sqlite3", "--out", "{tmp}/x.svg"], "does not exist"),
        (["--db", "{db}", "--out", "{tmp}/x.svg", "--xmin", "yesterday"], "not an ISO date"),
        (
            ["--db", "{db}", "--out", "{tmp}/x.svg", "--xmin", "2026-03-10", "--xmax", "2026-03-01"],
            "is not before",
        ),
        (["--db", "{db}", "--out", "{tmp}/x.svg", "--format", "gif"], "invalid choice"),
        (["--db", "{db}", "--out", "{tmp}/x.svg", "--recent-days", "0"], "at least 1"),
    ],
)
def test_command_line_errors(sample_db, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, db=sample_db) for a in args]
    proc = run_module("plot_co2", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "x.svg").exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


@pytest.mark.parametrize("module", ["plot_pings", "plot_co2"])
def test_help(module):
    proc = run_module(module, "--help")
    assert "--min-tier" in proc.stdout and "--format" in proc.stdout


@pytest.mark.parametrize("xmin", ["2025-01-01", "2023-06-01", "2026-03-01"])  # 1-day, 2-day, hourly bins
def test_co2_plot_from_daily_sums_equals_plot_from_readings(sample_db, tmp_path, xmin):
    """The importer's co2_daily gives the same bins and the same SVG as the readings."""
    sys.path.insert(0, str(ROOT / "database"))
    from co2db import daily, plot_co2
    from co2db.readonly import open_db_readonly
    from co2db.timebins import choose_bins

    with_daily = tmp_path / "with_daily.sqlite3"
    with_daily.write_bytes(sample_db.read_bytes())
    conn = sqlite3.connect(with_daily, isolation_level=None)
    conn.executescript((ROOT / "database/co2db/schema.sql").read_text())
    assert daily.rebuild(conn, workers=1) > 0
    conn.close()

    xmax = datetime(2026, 3, 16)
    bins = choose_bins(datetime.fromisoformat(xmin), xmax, plot_co2.TARGET_BINS)
    results = []
    for db in (sample_db, with_daily):
        conn = open_db_readonly(db)
        assert daily.is_built(conn) == (db == with_daily)
        results.append(sorted(plot_co2.query_bins(conn, bins, datetime.fromisoformat(xmin), xmax)))
        conn.close()
    assert results[0] and results[0] == results[1]

    outs = [tmp_path / "raw.svg", tmp_path / "daily.svg"]
    run_many(
        [
            ("plot_co2", "--db", db, "--now", NOW, "--xmin", xmin, "--xmax", "2026-03-16", "--out", out)
            for db, out in zip((sample_db, with_daily), outs, strict=True)
        ]
    )
    assert outs[0].read_bytes() == outs[1].read_bytes()
