"""The operators' pages in a real browser: headless Chromium (Debian's) against real uWSGI (and through nginx).

Skipped, with the reason, when Chromium is missing (scripts/run-tests.sh
installs it where it can and sets CO2_BROWSER_SKIP otherwise); in CI
(CI=true) a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT
from firmware import UnitSim

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "tests" / "artifacts"
A, B, C = "co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    reason = os.environ.get("CO2_BROWSER_SKIP")
    if reason:
        _unavailable(reason)
    executable = os.environ.get("CO2_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        _unavailable("Chromium is not installed; as root run: apt-get install chromium (scripts/run-tests.sh does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is missing; run scripts/setup-venv.sh requirements-dev.txt")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield browser
        browser.close()


class PageLog:
    """A page plus every response status it saw (the browser's network log)."""

    def __init__(self, browser, viewport, **context_args):
        self.context = browser.new_context(viewport=viewport, **context_args)
        self.context.set_default_timeout(60_000)  # a 2-core machine busy with other suites
        self.page = self.context.new_page()
        self.responses: list[tuple[int, str]] = []
        self.page.on("response", lambda r: self.responses.append((r.status, r.url)))
        self.page.on("pageerror", lambda exc: self.responses.append((999, f"JS error: {exc}")))

    def failures(self) -> list[tuple[int, str]]:
        return [(s, u) for s, u in self.responses if s >= 400 or s == 0]

    def close(self):
        self.context.close()


@pytest.fixture
def open_page(browser):
    logs = []

    def make(viewport=DESKTOP, **context_args) -> PageLog:
        log = PageLog(browser, viewport, **context_args)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()


def insert_old_ping(db_path: Path, unit: str, hours_ago: float) -> None:
    ts = (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (ts, ts[:10], ts[11:], unit, "quiet-one", 5, -109, 99))


def populate(server, tmp_path) -> None:
    """A pings 3 times and uploads (and had its SD card replaced), B once (an update waits), C was last heard 40 h ago."""
    a = UnitSim(A, tmp_path / "a", server.port, nickname="varanger-03")
    a.write_sd("data/readings", "readings-0000.tsv",
               f"{A}\tvaranger-03\t2026-01-01\t12:00:00\t1.5\t0{chr(9) + '600' * 10}\n".encode())
    a.write_sd("errors", "errors-0000.txt", b"----- 2026-01-01 12:00:00 WARN  Skipping comm due to backoff: 4/5\n")
    assert a.cycle() == "ok"
    a.ping(rssi_dbm=-80)
    a.ping(rssi_dbm=-81)
    UnitSim(B, tmp_path / "b", server.port, nickname="varanger-01").ping(rssi_dbm=-101)
    insert_old_ping(server.db_path, C, 40)
    update = server.data_dir / B / "updates" / "update-20260105-interval" / "conf-patch"
    update.mkdir(parents=True)
    (update / "interval.json").write_text('{"sync_interval_s": 3600}')
    (server.data_dir / A / "superseded" / "20260103T040506.123456Z" / "data").mkdir(parents=True)


def row_ids(page, selector="tr.unit") -> list[str]:
    return page.eval_on_selector_all(selector, "rows => rows.map(r => r.dataset.hwId)")


def test_dashboard_lists_pinged_units_marks_silent_and_reads_on_a_phone(server, tmp_path, open_page):
    populate(server, tmp_path)
    phone = open_page(PHONE)
    phone.page.goto(server.base_url + "/status/units")
    assert sorted(row_ids(phone.page)) == [A, B, C]
    assert row_ids(phone.page, "tr.unit.silent") == [C]
    assert row_ids(phone.page)[0] == C  # silent first by default
    silent_border = phone.page.eval_on_selector(f'tr[data-hw-id="{C}"]', "r => getComputedStyle(r).borderTopColor")
    normal_border = phone.page.eval_on_selector(f'tr[data-hw-id="{A}"]', "r => getComputedStyle(r).borderTopColor")
    assert silent_border != normal_border
    assert "SILENT" in phone.page.inner_text(f'tr[data-hw-id="{C}"]')
    # Cards, not a table wider than the phone.
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    assert phone.failures() == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    phone.page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

    desktop = open_page(DESKTOP)
    desktop.page.goto(server.base_url + "/status/units")
    desktop.page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)
    assert desktop.failures() == []


def test_operator_logs_in_through_the_front_and_sees_the_dashboard(front, tmp_path, open_page):
    """nginx's people's door: TLS (the test's self-signed certificate) and a login added by scripts/operators.sh."""
    populate(front, tmp_path)  # the units talk to the units' door
    front.add_operator("alice", "s3cure-enough")
    stranger = open_page(ignore_https_errors=True)
    with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):  # Chromium: 401 and no login to give
        stranger.page.goto(front.people_url + "/status/units")
    assert stranger.context.request.get(front.people_url + "/status/units").status == 401
    operator = open_page(ignore_https_errors=True, http_credentials={"username": "alice", "password": "s3cure-enough"})
    reply = operator.page.goto(front.people_url + "/status/units")
    assert reply.status == 200 and reply.url.startswith("https://127.0.0.1:")
    assert sorted(row_ids(operator.page)) == [A, B, C]
    assert operator.failures() == []  # every script, style and image came through the front
    operator.page.screenshot(path=str(ARTIFACTS / "dashboard-through-nginx.png"), full_page=True)


def test_sorting_by_clicking_a_header_and_with_the_menu(server, tmp_path, open_page):
    populate(server, tmp_path)
    log = open_page(DESKTOP)
    page = log.page
    page.goto(server.base_url + "/status/units")
    page.click('th[data-key="pings"]')
    assert row_ids(page) == [C, B, A]  # 0, 1, 3 pings in 24 h
    assert page.get_attribute('th[data-key="pings"]', "aria-sort") == "ascending"
    page.click('th[data-key="pings"]')
    assert row_ids(page) == [A, B, C]
    assert page.get_attribute('th[data-key="pings"]', "aria-sort") == "descending"
    page.click('th[data-key="rssi"]')
    assert row_ids(page) == [C, B, A]  # -109, -101, -81 dBm
    page.click('th[data-key="unit"]')
    assert row_ids(page) == [C, B, A]  # quiet-one, varanger-01, varanger-03
    # The menu (the only way on a phone, where there are no headers).
    page.select_option("#sort-select", "last_ping:desc")
    assert row_ids(page) == [B, A, C]
    page.select_option("#sort-select", "silent:desc")
    assert row_ids(page)[0] == C
    assert log.failures() == []


def _hand_made_pages(pub: Path) -> None:
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="120">'
           '<rect width="{w}" height="120" fill="#cde"/><text x="10" y="60">{t}</text></svg>\n')
    pub.mkdir(parents=True, exist_ok=True)
    (pub / "pings_all_tiered.svg").write_text(svg.format(w=600, t="pings"))
    (pub / "co2_tiered_recent_hires.svg").write_text(svg.format(w=800, t="co2 recent"))
    (pub / "co2_tiered_all_hires.svg").write_text(svg.format(w=900, t="co2 all"))
    nav = ('<a href="/status/alive/recent">recent</a> <a href="/status/units">units</a> '
           '<a href="/status/alive/summary">pings</a> <a href="/data/co2/summary">co2</a>')
    (pub / "pings_summary.html").write_text(
        f'<!doctype html><title>pings</title>{nav}<a href="pings_all_tiered.svg">'
        '<img src="pings_all_tiered.svg" alt="pings"></a>\n')
    (pub / "co2_summary.html").write_text(
        f'<!doctype html><title>co2</title>{nav}<img src="co2_tiered_recent_hires.svg" alt="recent">'
        '<a href="co2_tiered_all_hires.svg"><img src="co2_tiered_all_hires.svg" alt="all"></a>\n')


def _pipeline_pages(server) -> None:
    result = subprocess.run(
        ["make", "-C", str(ROOT / "database"), f"DATA_DIR={server.data_dir}",
         f"PINGS_DIR={server.var_dir / 'pings'}", f"DB_DIR={server.var_dir}",
         f"WEB_PUB_DIR={server.var_dir / 'pub'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("render", ["hand-made", "pipeline"])
def test_summary_pages_load_with_every_image_and_link(server, tmp_path, open_page, render):
    populate(server, tmp_path)
    log = open_page(DESKTOP)
    page = log.page
    # Before rendering: the friendly page, not an error.
    page.goto(server.base_url + "/data/co2/summary")
    assert "has not been rendered yet" in page.inner_text("body")

    if render == "pipeline":
        _pipeline_pages(server)
    else:
        _hand_made_pages(server.var_dir / "pub")

    for url in ("/status/alive/summary", "/data/co2/summary"):
        log.responses.clear()
        page.goto(server.base_url + url)
        page.wait_for_load_state("load")
        assert "has not been rendered yet" not in page.inner_text("body")
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.src, i.complete, i.naturalWidth])")
        assert images, f"{url} shows no image"
        for src, complete, natural_width in images:
            assert complete and natural_width > 0, (url, src)
        links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        assert links
        # Follow every link as a click would (a fresh navigation; the
        # API-request client reuses connections that uWSGI closes after each answer).
        follower = log.context.new_page()
        for link in sorted(set(links)):
            reply = follower.goto(link)
            log.responses.append((reply.status if reply else 0, link))
        follower.close()
        assert log.failures() == [], url
