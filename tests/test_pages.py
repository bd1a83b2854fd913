"""co2db.pages, run for real on the sample database of test_plots.py.

Expected figures, by hand from PINGS and DEPLOYMENTS (now = 2026-03-15T12:00):

    unit  current period (start)          last ping (rssi)   days deployed  days heard  min/mean/max  pings
    A     deployed vj_re_sn_3 (02-01T12)  03-15 11:00 (-95)  42             3           -95/-91.2/-88  4
    D     deployed vj_re_sn_4 (03-02)     03-10 05:00 (-79)  13             2           -79/-78.0/-77  2  silent
    E     en_route vj_ka_sn_1 (03-14)     never              1              0           —              0  silent
    B     lab_check lab (03-01)           03-15 10:00 (NULL) 14             2           -61/-60.5/-60  3
    C     none (counts from first ping)   03-15 06:00 (-82)  —              2           -82/-81.0/-80  2

A's lab ping of 01-15 and B's ping of 02-20 are before their current periods
and so not counted. Rows come in tier order: A (23), D (22), E (21), B (1), C.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_plots import NOW, A, B, C, D, E, make_db, make_sample_db, run_many, run_module

PUB_LINKS = {"/status/alive/summary", "/data/co2/summary", "/status/units", "/status/alive/recent"}
# Pages the server makes itself that a rendered page may link to (tests/test_export_serving.py serves it).
SERVER_LINKS = {"/data/export/"}


class PageParser(HTMLParser):
    """Collects links, images, the generated-at time and the table cells by data-col."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []
        self.times: list[str] = []
        self.rows: dict[str, dict] = {}
        self.order: list[str] = []
        self.meta: dict[str, str] = {}
        self._row = None
        self._col = None
        self._depth = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "time":
            self.times.append(attrs.get("datetime", ""))
        elif tag == "meta" and "name" in attrs:
            self.meta[attrs["name"]] = attrs.get("content", "")
        elif tag == "tr" and "data-unit" in attrs:
            self._row = {"class": attrs.get("class", "")}
            self.rows[attrs["data-unit"]] = self._row
            self.order.append(attrs["data-unit"])
        elif tag == "td" and self._row is not None and "data-col" in attrs:
            self._col = attrs["data-col"]
            self._row[self._col] = ""
            self._depth = 0
        elif self._col is not None:
            self._depth += 1
            self._row[self._col] += " "  # a nested element reads as a separate word

    def handle_endtag(self, tag):
        if tag == "td" and self._col is not None and self._depth == 0:
            self._row[self._col] = " ".join(self._row[self._col].split())
            self._col = None
        elif tag == "tr":
            self._row = None
        elif self._col is not None:
            self._depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._col is not None:
            self._row[self._col] += data


def parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def pub(tmp_path_factory) -> Path:
    """Plots, then pages, into one pub folder, as the Makefile does."""
    db = make_sample_db(tmp_path_factory.mktemp("db") / "db.sqlite3")
    pub = tmp_path_factory.mktemp("pub")
    common = ["--db", db, "--now", NOW]
    run_many(
        [
            ("plot_pings", *common, "--out", pub / "pings_all_tiered.svg"),
            ("plot_co2", *common, "--out", pub / "co2_tiered_all_hires.svg"),
            ("plot_co2", *common, "--out", pub / "co2_tiered_recent_hires.svg", "--recent-days", "14"),
        ]
    )
    proc = run_module("pages", "--db", db, "--pub-dir", pub, "--now", NOW)
    assert proc.stderr == ""
    assert proc.stdout.startswith("co2db.pages: wrote pings_summary.html (5 units), co2_summary.html in ")
    return pub


@pytest.mark.parametrize("name", ["pings_summary.html", "co2_summary.html"])
def test_page_is_self_contained_and_links_resolve(pub, name):
    page = parse(pub / name)
    html = (pub / name).read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert 'name="viewport"' in html
    assert "<style>" in html and "@media" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert page.times == ["2026-03-15T12:00:00Z"]
    assert "2026-03-15 12:00:00 UTC" in "".join(page.text)
    assert page.images, "the page shows its plots"
    for src in page.images:
        assert "/" not in src and (pub / src).is_file(), src
    for href in page.links:
        assert href in PUB_LINKS | SERVER_LINKS or ("/" not in href and (pub / href).is_file()), href
    assert set(PUB_LINKS) <= set(page.links)


def test_pings_page_shows_its_plot(pub):
    assert parse(pub / "pings_summary.html").images == ["pings_all_tiered.svg"]


def test_co2_page_links_the_research_dataset(pub):
    assert "/data/export/" in parse(pub / "co2_summary.html").links
    assert "/data/export/" not in parse(pub / "pings_summary.html").links


def test_co2_page_shows_both_plots(pub):
    assert parse(pub / "co2_summary.html").images == [
        "co2_tiered_recent_hires.svg",
        "co2_tiered_all_hires.svg",
    ]


EXPECTED = {
    A: {
        "nickname": f"varanger-01 {A}",
        "site": "vj_re_sn_3 deployed · tier 23",
        "last-ping": "2026-03-15 11:00:00 (60 min ago)",
        "last-rssi": "-95 dBm",
        "days-deployed": "42",
        "days-heard": "3 since 2026-02-01",
        "rssi": "-95 / -91.2 / -88 dBm",
        "pings": "4",
    },
    D: {
        "nickname": f"varanger-04 {D}",
        "site": "vj_re_sn_4 deployed · tier 22",
        "last-ping": "2026-03-10 05:00:00 (5.3 d ago)",
        "last-rssi": "-79 dBm",
        "days-deployed": "13",
        "days-heard": "2 since 2026-03-02",
        "rssi": "-79 / -78.0 / -77 dBm",
        "pings": "2",
    },
    E: {
        "nickname": f"varanger-05 {E}",
        "site": "vj_ka_sn_1 en route · tier 21",
        "last-ping": "never",
        "last-rssi": "—",
        "days-deployed": "1",
        "days-heard": "0 since 2026-03-14",
        "rssi": "—",
        "pings": "0",
    },
    B: {
        "nickname": f"varanger-02 {B}",
        "site": "lab lab check · tier 1",
        "last-ping": "2026-03-15 10:00:00 (2.0 h ago)",
        "last-rssi": "—",  # its last ping had no signal reading
        "days-deployed": "14",
        "days-heard": "2 since 2026-03-01",
        "rssi": "-61 / -60.5 / -60 dBm",
        "pings": "3",
    },
    C: {
        "nickname": f"(no nickname) {C}",
        "site": "—",
        "last-ping": "2026-03-15 06:00:00 (6.0 h ago)",
        "last-rssi": "-82 dBm",
        "days-deployed": "—",
        "days-heard": "2 since 2026-03-14",
        "rssi": "-82 / -81.0 / -80 dBm",
        "pings": "2",
    },
}


def test_pings_page_lists_every_unit_with_its_figures(pub):
    page = parse(pub / "pings_summary.html")
    assert page.order == [A, D, E, B, C]
    for unit, expected in EXPECTED.items():
        row = {k: v for k, v in page.rows[unit].items() if k != "class"}
        assert row == expected, unit


def test_silent_units_are_highlighted(pub):
    page = parse(pub / "pings_summary.html")
    silent = {unit for unit, row in page.rows.items() if "silent" in row["class"].split()}
    assert silent == {D, E}
    assert "2 silent" in " ".join("".join(page.text).split())
    css = (pub / "pings_summary.html").read_text()
    assert "tr.silent" in css


def test_silent_hours_option(tmp_path):
    db = make_sample_db(tmp_path / "db.sqlite3")
    run_module("pages", "--db", db, "--pub-dir", tmp_path, "--now", NOW, "--silent-hours", "1.5")
    page = parse(tmp_path / "pings_summary.html")
    silent = {unit for unit, row in page.rows.items() if "silent" in row["class"].split()}
    assert silent == {D, E, B, C}  # A pinged 1 h ago; B 2 h, C 6 h
    # Plots not drawn yet are named, not linked: no broken images.
    assert page.images == []
    assert "has not been drawn yet" in "".join(page.text)


def test_co2_page_lists_latest_readings(pub):
    page = parse(pub / "co2_summary.html")
    assert set(page.rows) == {A, B, C, D}
    assert page.rows[C] == {
        "class": "",
        "nickname": f"(no nickname) {C}",
        "when": "2026-03-14 12:00:00",
        "co2": "700",
        "temp": "—",
    }


@pytest.mark.parametrize("data", [None, {}], ids=["fresh file", "empty tables"])
def test_pages_from_an_empty_database(tmp_path, data):
    db = tmp_path / "db.sqlite3"
    if data is None:
        import sqlite3

        sqlite3.connect(db).close()
    else:
        make_db(db, **data)
    proc = run_module("pages", "--db", db, "--pub-dir", tmp_path / "pub", "--now", NOW)
    assert "(0 units)" in proc.stdout
    for name in ("pings_summary.html", "co2_summary.html"):
        page = parse(tmp_path / "pub" / name)
        assert page.rows == {}
        assert page.times == ["2026-03-15T12:00:00Z"]


def test_pages_errors(tmp_path):
    proc = run_module("pages", "--db", tmp_path / "nope.sqlite3", "--pub-dir", tmp_path, check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    db = make_db(tmp_path / "db.sqlite3")
    proc = run_module("pages", "--db", db, "--pub-dir", tmp_path, "--templates", tmp_path / "none", check=False)
    assert proc.returncode == 1 and "templates folder" in proc.stderr
    assert not (tmp_path / "pings_summary.html").exists()
    proc = run_module("pages", "--help")
    assert "--silent-hours" in proc.stdout
