"""GET /status/units and /status/units.json: the live units dashboard."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta

from firmware import UnitSim, assert_plain_answer

A, B, C = "co2unit-30aea42a50bc", "co2unit-30aea42a5268", "co2unit-30aea4ab12cd"

READINGS = (
    f"{A}\tvaranger-03\t2019-07-31\t13:00:10\t23.4\t1" + "\t680" * 10 + "\n"
    f"{A}\tvaranger-03\t2019-07-31\t13:30:10\t23.5\t0" + "\t681" * 10 + "\n"
    f"{A}\tvaranger-03\t2019-07-31\t14:0"  # cut short: still being written
).encode()
ERRORS = (
    b"----- 2019-09-16 10:55:57 INFO  Self-test. LTE attached: True.\n"
    b"----- (2019, 10, 25, 3, 11, 24, 4, 298) EXC   Uncaught exception <script>alert(1)</script>\n"
    b"Traceback (most recent call last):\n"
    b"  File \"main.py\", line 1\n"
)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def get_json(server) -> dict:
    reply = server.request("GET", "/status/units.json")
    assert reply.status == 200, reply.body
    assert_plain_answer(reply)
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.body)  # never chunked
    return reply.json()


def by_id(board: dict) -> dict[str, dict]:
    return {u["hw_id"]: u for u in board["units"]}


def insert_ping(db_path, ts: datetime, unit: str, nick: str, rssi_dbm: int | None) -> None:
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.%f")
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (stamp, stamp[:10], stamp[11:], unit, nick, 9, rssi_dbm, 99))


def test_fresh_server_has_no_units(server):
    board = get_json(server)
    assert board["units"] == [] and board["unit_count"] == 0
    reply = server.request("GET", "/status/units")
    assert reply.status == 200 and b"No unit has been heard of yet" in reply.body
    assert_plain_answer(reply)
    assert "refresh" not in reply.headers
    assert server.request("GET", "/status/units?refresh=300").headers["refresh"] == "300"
    assert server.request("GET", "/status/units?refresh=1").status == 400


def test_units_after_pings_and_uploads(server, tmp_path):
    a = UnitSim(A, tmp_path / "a", server.port, nickname="varanger-03")
    a.write_sd("data/readings", "readings-0000.tsv", READINGS)
    a.write_sd("errors", "errors-0000.txt", ERRORS)
    assert a.cycle() == "ok"
    a.ping(rssi_raw=12, rssi_dbm=-89, ber_raw=0)
    b = UnitSim(B, tmp_path / "b", server.port, nickname="None")
    b.ping(rssi_raw=None)
    # C was heard of only through its (old) pings: silent for 30 hours.
    old = now_utc() - timedelta(hours=30)
    insert_ping(server.db_path, old, C, "lab-unit", -101)
    with sqlite3.connect(server.db_path) as conn:
        conn.execute(
            "INSERT INTO deploy_durations_tiered VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (A, "varanger-03", "vj_re_sn_3", 23, "deployed", "2019-08-13T12:00:00", None, ""))
        conn.execute(
            "INSERT INTO deploy_durations_tiered VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (B, "old-name", "vj_old", 5, "deployed", "2019-01-01", "2019-02-01", ""))

    board = get_json(server)
    assert board["unit_count"] == 3 and board["silent_count"] == 1 and board["silent_hours"] == 26.0
    assert [u["hw_id"] for u in board["units"]] == [C, B, A]  # silent first, then by nickname
    units = by_id(board)

    ua = units[A]
    assert ua["last_ping"][:4] == str(now_utc().year) and ua["last_ping_ago"] in ("just now", "1 min ago")
    del ua["last_ping"], ua["last_ping_age_s"], ua["last_ping_ago"]
    assert ua == {
        "hw_id": A, "nickname": "varanger-03", "site": "vj_re_sn_3", "deployment_status": "deployed",
        "rssi_dbm": -89, "pings_24h": 2, "silent": False,
        "uploaded_bytes": len(READINGS) + len(ERRORS), "uploaded_files": 2,
        "folders": {"data/readings": {"files": 1, "bytes": len(READINGS)},
                    "errors": {"files": 1, "bytes": len(ERRORS)}},
        "newest_reading": "2019-07-31T13:30:10",
        "newest_error_line": "(2019, 10, 25, 3, 11, 24, 4, 298) EXC   Uncaught exception <script>alert(1)</script>",
        "pending_update": None, "update_fetched": None, "update_fetched_at": None,
        "sd_card_replaced": False, "sd_card_replaced_at": [], "last_ping_repaired": None,
        "quota_used_bytes": len(READINGS) + len(ERRORS), "quota_used_files": 2, "quota_full": False,
        # Two pings, one cycle: too little history for a schedule, heard of just now.
        "liveness_state": "on_schedule", "expected_next_contact": None, "expected_next_in": None,
        "missed_contacts": 0, "contact_period_s": None, "contact_tolerance_s": None, "liveness_hint": None,
    }

    ub = units[B]
    # No nickname in its pings ("None"): the latest deployment's name; its
    # deployment ended, so no site.
    assert (ub["nickname"], ub["site"], ub["rssi_dbm"], ub["pings_24h"], ub["silent"]) == (
        "old-name", None, None, 1, False)
    assert ub["folders"] == {} and ub["newest_reading"] is None

    uc = units[C]
    assert uc["last_ping"] == old.isoformat()
    assert (uc["nickname"], uc["rssi_dbm"], uc["pings_24h"], uc["silent"], uc["last_ping_ago"]) == (
        "lab-unit", -101, 0, True, "30 h ago")
    assert (uc["liveness_state"], uc["missed_contacts"], uc["expected_next_contact"]) == ("silent", 0, None)
    assert board["liveness_counts"] == {"missed": 0, "late": 0, "silent": 1, "never_seen": 0, "on_schedule": 2}

    reply = server.request("GET", "/status/units")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    html = reply.body.decode()
    assert html.count('<tr class="unit silent"') == 1
    assert f'<tr class="unit silent" data-hw-id="{C}"' in html
    assert "<script>alert(1)</script>" not in html  # unit data is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "vj_re_sn_3" in html and "SILENT" in html


def test_unit_known_only_from_the_log_or_its_folder(server):
    # The database may lag the TSV log of record (or be missing its rows).
    pings = server.var_dir / "pings"
    pings.mkdir(parents=True, exist_ok=True)
    stamp = (now_utc() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    (pings / "pings-0000.tsv").write_text(f"{stamp}\t{A}\tfrom-log\t8\t-77\t99\n")
    (server.data_dir / B / "errors").mkdir(parents=True)
    (server.data_dir / "not-a-unit" / "errors").mkdir(parents=True)
    units = by_id(get_json(server))
    assert sorted(units) == [A, B]
    assert (units[A]["nickname"], units[A]["rssi_dbm"], units[A]["pings_24h"], units[A]["silent"]) == (
        "from-log", -77, 1, False)
    assert units[A]["last_ping"] == stamp
    assert (units[B]["last_ping"], units[B]["silent"], units[B]["last_ping_ago"]) == (None, True, "never")
    assert units[B]["folders"] == {"errors": {"files": 0, "bytes": 0}}


def test_pending_update_fetched_and_sd_card_replaced(server, tmp_path):
    a = UnitSim(A, tmp_path / "a", server.port)
    update = server.data_dir / A / "updates" / "update-2026-01-02"
    (update / "flash").mkdir(parents=True)
    (update / "flash" / "main.py").write_text("print('new')\n")
    (server.data_dir / A / "updates" / "update-2026-01-01" / "conf-patch").mkdir(parents=True)
    (server.data_dir / A / "updates" / "update-2026-01-01" / "conf-patch" / "x.json").write_text("{}")
    # An incomplete (empty) update sorting last is not what the unit would get.
    (server.data_dir / A / "updates" / "update-2026-01-03").mkdir()
    assert a.ping().status == 200

    unit = by_id(get_json(server))[A]
    assert (unit["pending_update"], unit["update_fetched"], unit["update_fetched_at"]) == (
        "update-2026-01-02", False, None)

    assert a.cycle() == "updated"
    unit = by_id(get_json(server))[A]
    assert (unit["pending_update"], unit["update_fetched"]) == ("update-2026-01-02", True)
    assert unit["update_fetched_at"][:10] == now_utc().strftime("%Y-%m-%d")

    aside = server.data_dir / A / "superseded" / "20260103T040506.123456Z" / "data" / "readings"
    aside.mkdir(parents=True)
    unit = by_id(get_json(server))[A]
    assert (unit["sd_card_replaced"], unit["sd_card_replaced_at"]) == (True, ["2026-01-03T04:05:06"])
    html = server.request("GET", "/status/units").body.decode()
    assert "update-2026-01-02" in html and "fetched " in html
    assert "replaced" in html and "2026-01-03T04:05:06" in html


def test_silent_threshold_is_a_setting(make_server, tmp_path):
    server = make_server(CO2_SILENT_HOURS="1")
    UnitSim(A, tmp_path / "a", server.port).ping()
    insert_ping(server.db_path, now_utc() - timedelta(hours=2), B, "b", -90)
    board = get_json(server)
    assert board["silent_hours"] == 1.0
    assert {u["hw_id"]: u["silent"] for u in board["units"]} == {A: False, B: True}
    assert json.loads(server.request("GET", "/status/units.json").body)["silent_count"] == 1


def silent_by_unit(server) -> dict[str, bool]:
    return {u["hw_id"]: u["silent"] for u in get_json(server)["units"]}


def test_silent_exactly_past_the_default_26_hours(server):
    """README: SILENT when the last ping is older than CO2_SILENT_HOURS (26 by default)."""
    now = now_utc()
    insert_ping(server.db_path, now - timedelta(hours=25.9), A, "a", -90)  # 6 minutes before the threshold
    insert_ping(server.db_path, now - timedelta(hours=26.1), B, "b", -90)  # 6 minutes past it
    insert_ping(server.db_path, now - timedelta(hours=13.5), C, "c", -90)  # just past half of it
    assert silent_by_unit(server) == {A: False, B: True, C: False}
    assert get_json(server)["silent_count"] == 1


def test_silent_threshold_of_another_value(make_server):
    server = make_server(CO2_SILENT_HOURS="2.5")
    now = now_utc()
    insert_ping(server.db_path, now - timedelta(hours=2.4), A, "a", -90)
    insert_ping(server.db_path, now - timedelta(hours=2.6), B, "b", -90)
    insert_ping(server.db_path, now - timedelta(hours=1.3), C, "c", -90)
    board = get_json(server)
    assert board["silent_hours"] == 2.5
    assert silent_by_unit(server) == {A: False, B: True, C: False}


def test_sizes_follow_uploads_after_being_cached(server):
    readings = server.data_dir / A / "data" / "readings"
    readings.mkdir(parents=True)
    line = f"{A}\tv\t2019-07-31\t13:00:10\t23.4\t1" + "\t680" * 10 + "\n"
    (readings / "readings-0000.tsv").write_text(line * 3)
    (readings / "readings-0001.tsv").write_text(line)
    old = (now_utc() - timedelta(days=1)).timestamp()
    os.utime(readings, (old, old))  # a folder not changed lately: its listing is cached
    for _ in range(4):  # reach both uWSGI workers
        assert by_id(get_json(server))[A]["folders"]["data/readings"] == {"files": 2, "bytes": 4 * len(line)}
    with open(readings / "readings-0001.tsv", "a") as f:  # the last file grows
        f.write(line.replace("13:00:10", "13:30:10"))
    for _ in range(4):
        unit = by_id(get_json(server))[A]
        assert unit["folders"]["data/readings"] == {"files": 2, "bytes": 5 * len(line)}
        assert unit["newest_reading"] == "2019-07-31T13:30:10"
    (readings / "readings-0002.tsv").write_text(line.replace("13:00:10", "14:00:10"))  # a new file
    for _ in range(4):
        unit = by_id(get_json(server))[A]
        assert unit["folders"]["data/readings"] == {"files": 3, "bytes": 6 * len(line)}
        assert unit["newest_reading"] == "2019-07-31T14:00:10"


def test_pages_work_when_the_database_is_broken(make_server, tmp_path):
    db_path = tmp_path / "broken.sqlite3"
    db_path.write_bytes(b"this is not an SQLite database" * 200)
    server = make_server(CO2_DB_PATH=db_path)
    assert UnitSim(A, tmp_path / "a", server.port, nickname="still-here").ping().status == 200
    board = get_json(server)
    assert [(u["hw_id"], u["nickname"], u["pings_24h"], u["silent"]) for u in board["units"]] == [
        (A, "still-here", 1, False)]
    assert board["problems"] and "database" in board["problems"][0]
    html = server.request("GET", "/status/units")
    assert html.status == 200 and b"Partial data" in html.body
    recent = server.request("GET", "/status/alive/recent")
    assert recent.status == 200 and b"30aea42a50bc\tstill-here" in recent.body
