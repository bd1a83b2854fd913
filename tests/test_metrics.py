"""GET /metrics against the real uWSGI: exact values for a small crafted tree, parsed with prometheus_client's parser."""

from __future__ import annotations

import os
import re
import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT
from firmware import UnitSim, wait_until

A, B = "co2unit-30aea42a50bc", "co2unit-30aea42a5268"
KEY = "k3y-s3cret-never-shown"
NICK_A = 'vår"dø\\01'  # sent raw (UTF-8, unencoded), as the firmware does; a quote and a backslash
SITE_A = "fjord\nnord \"ø\""  # from the deployments table: a newline, quotes, UTF-8
READINGS = (
    f"{A}\tvaranger\t2026-01-02\t03:15:10\t23.4\t1" + "\t680" * 10 + "\n"
    f"{A}\tvaranger\t2026-01-02\t03:45:10\t23.5\t0" + "\t681" * 10 + "\n"
).encode()
ERRORS = b"----- 2026-01-02 03:15:00 INFO  Self-test. LTE attached: True.\n"


def samples(body: bytes) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of an exposition; fails on anything the parser refuses."""
    out = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def unit_labels(hw_id: str, nickname: str, site: str, **extra) -> frozenset:
    return frozenset({"hw_id": hw_id, "nickname": nickname, "site": site, **extra}.items())


def logged_ping_time(server, hw_id: str) -> float:
    line = [ln for ln in (server.var_dir / "pings").glob("pings-*.tsv").__next__().read_text().splitlines()
            if f"\t{hw_id}\t" in ln][-1]
    return datetime.fromisoformat(line.split("\t")[0]).replace(tzinfo=UTC).timestamp()


def write_error_logs(db_path, now: datetime) -> None:
    """Rows as the pipeline's import writes them: two in the last 24 h, one older, uncaught on 3 days running."""
    def row(when: datetime, level: str, etype: str | None):
        d, t = when.strftime("%Y-%m-%d"), when.strftime("%H:%M:%S")
        return (A, d, t, etype, d, t, level, "Uncaught exception" if etype else "note", f"{A}/errors/e.txt", 1)

    rows = [row(now - timedelta(hours=1), "EXC", "uncaught"), row(now - timedelta(hours=2), "WARN", None),
            row(now - timedelta(hours=30), "ERROR", None),
            row(now - timedelta(days=1, hours=1), "EXC", "uncaught"),
            row(now - timedelta(days=2, hours=1), "EXC", "uncaught"),
            row(now - timedelta(days=5), "EXC", "uncaught"),  # a gap: not part of the run
            row((now - timedelta(days=3)).replace(hour=23, minute=59, second=59), "INFO", None)]  # late in an old day
    with sqlite3.connect(db_path) as conn:
        conn.executemany("INSERT INTO error_logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO deploy_durations_tiered (unit_id, nickname, site, tier, status, start_ts, end_ts)"
                     " VALUES (?, ?, ?, 1, 'deployed', '2020-01-01', NULL)", (A, "varanger", SITE_A))


def test_metrics_exact_values_for_a_crafted_tree(make_server, tmp_path):
    server = make_server(CO2_KEY_MODE="shared", CO2_URL_KEY=KEY)
    # B's SD card was replaced twice: two superseded folders beside its files.
    for stamp in ("20250101T000000.000000Z", "20250601T120000.000000Z"):
        (server.data_dir / B / "superseded" / stamp).mkdir(parents=True)
    unit = UnitSim(A, tmp_path / "sd", server.port, nickname=NICK_A, prefix=f"/{KEY}")
    unit.write_sd("data/readings", "readings-0001.tsv", READINGS)
    unit.write_sd("errors", "errors-0001.txt", ERRORS)
    assert unit.cycle() == "ok"
    assert unit.ping(rssi_dbm=-71).status == 200
    # Refusals: a wrong key (404 of a missing path) and a bad offset.
    assert server.request("POST", f"/wrong-key/ou/{A}/alive").status == 404
    assert server.request("PUT", f"/{KEY}/ou/{A}/push-sequential/errors/errors-0001.txt?offset=x", b"x").status == 400
    assert server.request("GET", f"/{KEY}/metrics").status == 404  # never under a unit's key
    now = datetime.now(UTC).replace(tzinfo=None)
    write_error_logs(server.db_path, now)
    ok_time = 1_700_000_000
    (server.var_dir / "pipeline-last-ok").touch()
    os.utime(server.var_dir / "pipeline-last-ok", (ok_time, ok_time))
    # The pings table catches up with the log (the server inserts from a background thread).
    wait_until(lambda: sqlite3.connect(server.db_path).execute("SELECT count(*) FROM pings").fetchone()[0] == 2)

    reply = server.request("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert KEY.encode() not in reply.body and b"wrong-key" not in reply.body
    got = samples(reply.body)
    a = unit_labels(A, NICK_A, SITE_A)
    b = unit_labels(B, "", "")

    assert got[("co2unit_last_ping_timestamp_seconds", a)] == logged_ping_time(server, A)
    assert got[("co2unit_rssi_dbm", a)] == -71
    assert got[("co2unit_pings_24h", a)] == 2
    assert got[("co2unit_newest_reading_timestamp_seconds", a)] == datetime(2026, 1, 2, 3, 45, 10, tzinfo=UTC).timestamp()
    assert got[("co2unit_uploaded_bytes", unit_labels(A, NICK_A, SITE_A, folder="data/readings"))] == len(READINGS)
    assert got[("co2unit_uploaded_bytes", unit_labels(A, NICK_A, SITE_A, folder="errors"))] == len(ERRORS)
    assert got[("co2unit_error_log_entries_24h", unit_labels(A, NICK_A, SITE_A, level="EXC"))] == 1
    assert got[("co2unit_error_log_entries_24h", unit_labels(A, NICK_A, SITE_A, level="WARN"))] == 1
    assert ("co2unit_error_log_entries_24h", unit_labels(A, NICK_A, SITE_A, level="ERROR")) not in got  # 30 h ago
    assert ("co2unit_error_log_entries_24h", unit_labels(A, NICK_A, SITE_A, level="INFO")) not in got  # 3 days ago
    assert got[("co2unit_uncaught_exceptions_24h", a)] == 1
    assert got[("co2unit_uncaught_exception_days_running", a)] == 3
    assert got[("co2unit_uncaught_exceptions_24h", b)] == 0
    assert got[("co2unit_sd_card_replaced", a)] == 0
    assert got[("co2unit_sd_card_replaced", b)] == 2
    assert got[("co2unit_over_quota", a)] == 0
    assert ("co2unit_last_ping_timestamp_seconds", b) not in got  # never pinged: no series, not a zero

    def server_value(name, **labels):
        return got[(name, frozenset(labels.items()))]

    assert server_value("co2server_units") == 2
    assert server_value("co2server_database_up") == 1
    assert server_value("co2server_pings_table_lag_seconds") == 0
    assert server_value("co2server_pipeline_last_success_timestamp_seconds") == ok_time
    st = os.statvfs(server.data_dir)
    assert abs(server_value("co2server_disk_free_bytes", disk="data") - st.f_bavail * st.f_frsize) < 64 * 2**20
    assert server_value("co2server_disk_size_bytes", disk="var") == st.f_blocks * st.f_frsize
    assert 0 < server_value("co2server_disk_free_ratio", disk="data") <= 1
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert server_value("co2server_build_info", version=version, python=re.search(
        r'python="([^"]+)"', reply.body.decode()).group(1), key_mode="shared") == 1

    # Requests by endpoint and status, refusals by code: exactly what was asked, never a path or a key.
    requests = {dict(k[1])["endpoint"] + " " + dict(k[1])["status"]: v
                for k, v in got.items() if k[0] == "co2server_http_requests_total"}
    chunks = (len(READINGS) + 4095) // 4096 + (len(ERRORS) + 4095) // 4096
    assert requests == {"home 200": 1, "aliveping 200": 2, "aliveping 404": 1, "updatesindex 404": 1,
                        "pushsequential 200": chunks, "pushsequential 400": 1, "unmatched 404": 1}
    refusals = {tuple(sorted(dict(k[1]).items())): v for k, v in got.items() if k[0] == "co2server_http_refusals_total"}
    assert refusals == {
        (("code", "NOT_FOUND"), ("endpoint", "aliveping"), ("status", "404")): 1,
        (("code", "NOT_FOUND"), ("endpoint", "updatesindex"), ("status", "404")): 1,
        (("code", "BAD_QUERY"), ("endpoint", "pushsequential"), ("status", "400")): 1,
        (("code", "NOT_FOUND"), ("endpoint", "unmatched"), ("status", "404")): 1,
    }
    # The scrape itself is counted by the next one, under its endpoint name.
    assert KEY not in server.log()
    again = samples(server.request("GET", "/metrics").body)
    assert again[("co2server_http_requests_total", frozenset({"endpoint": "metrics", "status": "200"}.items()))] == 1


def test_metrics_without_database_or_pings_still_answer(make_server):
    server = make_server()
    server.db_path.write_bytes(b"this is not a database" * 100)  # overwritten under the running server
    reply = server.request("GET", "/metrics")
    assert reply.status == 200
    got = samples(reply.body)
    assert got[("co2server_database_up", frozenset())] == 0
    assert got[("co2server_units", frozenset())] == 0
    assert ("co2server_pipeline_last_success_timestamp_seconds", frozenset()) not in got
    assert server.request("GET", "/nowhere").status == 404
    got = samples(server.request("GET", "/metrics").body)
    assert got[("co2server_http_refusals_total",
                frozenset({"endpoint": "unmatched", "status": "404", "code": "NOT_FOUND"}.items()))] == 1


def test_counters_restart_with_a_new_master_and_old_folders_go(make_server, tmp_path):
    server = make_server()
    assert server.request("GET", "/healthz").status == 200
    folders = list((server.var_dir / "metrics").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith(f"uwsgi-{server.proc.pid}-")
    server.stop()
    server.start()
    got = samples(server.request("GET", "/metrics").body)
    assert ("co2server_http_requests_total", frozenset({"endpoint": "health", "status": "200"}.items())) not in got
    assert [f.name for f in (server.var_dir / "metrics").iterdir()] != [folders[0].name]
    assert not folders[0].exists()


def insert_pings(db_path, hw_id: str, nickname: str, times: list[datetime]) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.executemany("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            (t.strftime("%Y-%m-%dT%H:%M:%S.%f"), t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S.%f"),
             hw_id, nickname, 9, -90, 99) for t in times])


def test_liveness_series_follow_the_dashboards_model(make_server):
    """The enum of states, expected next contact and missed count: the dashboard's own liveness, unit by unit."""
    server = make_server()
    now = datetime.now(UTC).replace(tzinfo=None)
    last_call = (now - timedelta(days=4)).replace(hour=3, minute=15, second=0, microsecond=0)
    insert_pings(server.db_path, A, "daily-1", [last_call - timedelta(days=d) for d in range(12)])  # then silence
    insert_pings(server.db_path, B, "lab-1", [now - timedelta(minutes=30 * k) for k in range(1, 40)])
    (server.data_dir / "co2unit-30aea4ab12cd" / "errors").mkdir(parents=True)  # a folder, never a ping
    got = samples(server.request("GET", "/metrics").body)
    board = {u["hw_id"]: u for u in server.request("GET", "/status/units.json").json()["units"]}
    states = {dict(k[1])["state"] for k in got if k[0] == "co2unit_liveness_state"}
    assert states == {"on_schedule", "late", "missed", "silent", "never_seen"}
    assert board[A]["liveness_state"] == "missed" and board[A]["missed_contacts"] >= 2
    assert board["co2unit-30aea4ab12cd"]["liveness_state"] == "never_seen"
    for hw_id, unit in board.items():
        labels = dict(hw_id=hw_id, nickname=unit["nickname"] or "", site=unit["site"] or "")
        ones = {s for s in states if got[("co2unit_liveness_state", unit_labels(**labels, state=s))] == 1}
        assert ones == {unit["liveness_state"]}, hw_id
        if unit["expected_next_contact"]:
            expected = datetime.fromisoformat(unit["expected_next_contact"].replace("Z", "+00:00")).timestamp()
            assert abs(got[("co2unit_expected_next_contact_timestamp_seconds", unit_labels(**labels))] - expected) < 1
        else:
            assert ("co2unit_expected_next_contact_timestamp_seconds", unit_labels(**labels)) not in got
        assert got[("co2unit_missed_contacts", unit_labels(**labels))] == unit["missed_contacts"]


def test_counts_of_a_worker_uwsgi_replaced_are_kept(make_server):
    """A worker killed (harakiri, max-requests, a crash) is respawned by the master: its counts stay in the total."""
    server = make_server()
    for _ in range(30):
        assert server.request("GET", "/healthz").status == 200
    assert wait_until(lambda: server.log().count('"GET /healthz HTTP/1.0" 200') == 30)
    answered = re.findall(r'"GET /healthz HTTP/1.0" 200 .* pid=(\d+) ', server.log())
    busiest = max(set(answered), key=answered.count)  # the worker that answered most of them goes
    before = server.worker_pids()
    os.kill(int(busiest), 9)
    assert wait_until(lambda: len(set(server.worker_pids()) - set(before)) == 1
                      and server.log().count("WSGI app 0 (mountpoint='') ready") >= 3, timeout=20)
    got = samples(server.request("GET", "/metrics").body)
    assert got[("co2server_http_requests_total", frozenset({"endpoint": "health", "status": "200"}.items()))] == 30
