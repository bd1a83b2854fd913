"""Field text is data: nicknames, hardware IDs and site names are drawn as
plain text (never matplotlib math text), and plots and pages stay bounded
when the pings table holds thousands of units that were never deployed.

Run for real (subprocesses, warnings as errors) on small databases built
with the sample data of test_plots.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from test_pages import parse
from test_plots import (
    DEPLOYMENTS,
    NOW,
    PINGS,
    READINGS,
    A,
    B,
    C,
    D,
    make_db,
    panel_ids,
    run_many,
    run_module,
    svg_texts,
    svg_tree,
)

# Text matplotlib would parse as math ($...$) or choke on.
PING_NICK = "$\\foo$"
READING_NICKS = {
    A: "a$b\\c_d^e$",
    B: "$x_1^2$",
    D: "50$ \\ or ^_^",
    C: "odd\x01name",  # a control byte cannot stand in XML: replaced, not fatal
}
SITE = "vj_$re$_sn_3"


def _weird_db(path):
    deployments = [(*row[:2], SITE if row[2] == "vj_re_sn_3" else row[2], *row[3:]) for row in DEPLOYMENTS]
    pings = [(ts, unit, PING_NICK if unit in (A, C) else nick, dbm) for ts, unit, nick, dbm in PINGS]
    readings = [(row[0], READING_NICKS.get(row[0], row[1]), *row[2:]) for row in READINGS]
    return make_db(path, deployments=deployments, pings=pings, readings=readings)


@pytest.fixture(scope="module")
def weird(tmp_path_factory):
    db = _weird_db(tmp_path_factory.mktemp("db") / "db.sqlite3")
    pub = tmp_path_factory.mktemp("pub")
    common = ["--db", db, "--now", NOW]
    results = run_many(
        [
            ("plot_pings", *common, "--out", pub / "pings_all_tiered.svg"),
            ("plot_co2", *common, "--out", pub / "co2_tiered_all_hires.svg"),
            ("plot_co2", *common, "--out", pub / "co2_tiered_recent_hires.svg", "--recent-days", "14"),
        ]
    )
    run_module("pages", "--db", db, "--pub-dir", pub, "--now", NOW)
    return pub, results


def test_pings_nickname_with_dollars_is_drawn_literally(weird):
    pub, results = weird
    assert results[0][2] == ""
    texts = svg_texts(svg_tree(pub / "pings_all_tiered.svg"))
    assert PING_NICK in texts  # C's row: its nickname from the pings
    assert SITE in texts


@pytest.mark.parametrize("plot", ["co2_tiered_all_hires.svg", "co2_tiered_recent_hires.svg"])
def test_readings_nicknames_with_markup_are_drawn_literally(weird, plot):
    pub, _results = weird
    texts = svg_texts(svg_tree(pub / plot))
    assert SITE in texts
    joined = " ".join(texts)
    for unit in (A, B, D):
        assert READING_NICKS[unit] in joined, unit
    assert "odd\ufffdname" in texts  # C: the control byte replaced


def test_pages_show_field_text_escaped(weird):
    pub, _results = weird
    page = parse(pub / "pings_summary.html")
    assert page.rows[C]["nickname"] == f"{PING_NICK} {C}"
    assert SITE in page.rows[A]["site"]
    co2 = parse(pub / "co2_summary.html")
    assert co2.rows[B]["nickname"] == f"$x_1^2$ {B}"


# --- Many units that were never deployed --------------------------------------

N_INVENTED = 2000


def _many_units_db(path):
    """The sample data plus 2,000 invented units, each heard once, a minute apart."""
    now = datetime.fromisoformat(NOW)
    invented = [
        ((now - timedelta(minutes=i + 1)).isoformat(timespec="microseconds"), f"co2unit-{i:012x}", f"fake-{i}", -90)
        for i in range(N_INVENTED)
    ]
    readings = list(READINGS) + [
        (f"co2unit-{i:012x}", f"fake-{i}", "2026-03-14", f"{i // 60 % 24:02d}:{i % 60:02d}:00", 1.0, *[500] * 10)
        for i in range(300)
    ]
    return make_db(path, deployments=DEPLOYMENTS, pings=[*PINGS, *invented], readings=readings)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    db = _many_units_db(tmp_path_factory.mktemp("db") / "db.sqlite3")
    pub = tmp_path_factory.mktemp("pub")
    common = ["--db", db, "--now", NOW]
    results = run_many(
        [
            ("plot_pings", *common, "--out", pub / "pings_all_tiered.svg", "--max-undeployed", "20"),
            ("plot_co2", *common, "--out", pub / "co2_tiered_recent_hires.svg", "--recent-days", "14"),
            ("pages", "--db", db, "--pub-dir", pub, "--now", NOW),
        ]
    )
    return pub, results


def test_pings_plot_shows_at_most_the_cap_of_undeployed_units(many):
    pub, results = many
    root = svg_tree(pub / "pings_all_tiered.svg")
    ids = panel_ids(root)
    deployed = ["panel-site-vj_re_sn_3", "panel-site-vj_re_sn_4", "panel-site-vj_ka_sn_1", "panel-site-lab"]
    assert ids[:4] == deployed
    # Invented unit i was heard i + 1 minutes before now, C six hours before:
    # the 20 heard most recently are invented 0..19, drawn most recent first.
    assert ids[4:] == [f"panel-unit-co2unit-{i:012x}" for i in range(20)]
    texts = " ".join(svg_texts(root))
    assert f"{N_INVENTED + 1 - 20:,} more units never deployed not shown" in texts
    assert (pub / "pings_all_tiered.svg").stat().st_size < 200_000
    assert "20 of 2,001 never deployed" in results[0][1]


def test_co2_plot_caps_undeployed_units_at_the_default(many):
    pub, _results = many
    root = svg_tree(pub / "co2_tiered_recent_hires.svg")
    undeployed = [i for i in panel_ids(root) if i.startswith("panel-unit-")]
    # C (read at 12:00) and invented 299..251 (read 299..251 minutes after midnight)
    assert undeployed == [f"panel-unit-{C}"] + [f"panel-unit-co2unit-{i:012x}" for i in range(299, 250, -1)]
    assert "251 more units never deployed not shown" in " ".join(svg_texts(root))


def test_pings_page_lists_at_most_the_cap_of_undeployed_units(many):
    pub, results = many
    page = parse(pub / "pings_summary.html")
    deployed = {A, B, D, "co2unit-eeeeeeeeeee5"}
    assert deployed <= set(page.rows)
    undeployed = [u for u in page.order if u not in deployed]
    assert sorted(undeployed) == sorted(f"co2unit-{i:012x}" for i in range(50))
    text = " ".join("".join(page.text).split())
    assert f"{N_INVENTED + 1 - 50:,} more units never deployed are not shown" in text
    assert (pub / "pings_summary.html").stat().st_size < 200_000
    assert "(54 units, 1,951 never deployed not shown)" in results[2][1]


def test_co2_page_lists_at_most_the_cap_of_undeployed_units(many):
    pub, _results = many
    page = parse(pub / "co2_summary.html")
    assert {A, B, D} <= set(page.rows)
    assert len(page.rows) == 3 + 50
    assert C in page.rows and "co2unit-00000000012b" in page.rows  # the latest: 12:00 and 04:59
    assert "251 more units never deployed are not shown" in " ".join("".join(page.text).split())


def test_max_undeployed_zero_shows_only_deployed(tmp_path):
    db = _many_units_db(tmp_path / "db.sqlite3")
    run_module("plot_pings", "--db", db, "--now", NOW, "--out", tmp_path / "p.svg", "--max-undeployed", "0")
    root = svg_tree(tmp_path / "p.svg")
    assert panel_ids(root) == [
        "panel-site-vj_re_sn_3",
        "panel-site-vj_re_sn_4",
        "panel-site-vj_ka_sn_1",
        "panel-site-lab",
    ]
    assert "2,001 units never deployed not shown" in svg_texts(root)


def test_tier_options_leave_undeployed_out_without_a_note(tmp_path):
    """--min-tier already leaves out units without a tier: nothing is 'left out' by the cap."""
    db = _many_units_db(tmp_path / "db.sqlite3")
    proc = run_module("plot_pings", "--db", db, "--now", NOW, "--out", tmp_path / "p.svg", "--min-tier", "1")
    assert "never deployed" not in proc.stdout
    assert not any("never deployed" in t for t in svg_texts(svg_tree(tmp_path / "p.svg")))
