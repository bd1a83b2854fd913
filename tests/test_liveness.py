"""Schedule-aware liveness: pings at known times, a fixed now, exact states and expected times."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from co2server import db
from co2server.config import Config
from co2server.dashboard import build_dashboard
from co2server.liveness import STATES, assess, error_hint, etype_of
from co2server.pinglog import Ping

DAY = timedelta(days=1)
MIN = timedelta(minutes=1)
T0 = datetime(2026, 11, 1, 3, 15, tzinfo=UTC)  # a daily unit's 03:15 call, first of ten


def daily(days: int = 10, jitter_min: list[int] | None = None) -> list[datetime]:
    jitter = jitter_min or [0] * days
    return [T0 + i * DAY + jitter[i] * MIN for i in range(days)]


def every_30_min(start: datetime, count: int) -> list[datetime]:
    return [start + i * 30 * MIN for i in range(count)]


LAST_DAILY = T0 + 9 * DAY  # 2026-11-10 03:15


def test_states_in_urgency_order():
    assert STATES == ("missed", "late", "silent", "never_seen", "on_schedule")


@pytest.mark.parametrize(("now", "state", "missed"), [
    (LAST_DAILY + 23 * timedelta(hours=1), "on_schedule", 0),          # 11-11 02:15, before its call
    (LAST_DAILY + DAY + 71 * MIN, "on_schedule", 0),                    # within the 72 min tolerance
    (LAST_DAILY + DAY + 73 * MIN, "late", 0),                           # 04:28
    (LAST_DAILY + DAY + 12 * timedelta(hours=1) - MIN, "late", 0),      # 15:14
    (LAST_DAILY + DAY + 12 * timedelta(hours=1) + MIN, "missed", 1),    # 15:16: nearer the next call
    (LAST_DAILY + 2 * DAY + 12 * timedelta(hours=1) + MIN, "missed", 2),
])
def test_daily_unit(now, state, missed):
    live = assess(daily(), now, silent_hours=26)
    assert (live.state, live.missed) == (state, missed)
    assert live.expected_next == datetime(2026, 11, 11, 3, 15, tzinfo=UTC)
    assert live.last_contact == LAST_DAILY
    assert live.period_s == 86400.0
    assert live.tolerance_s == 0.05 * 86400  # no jitter: the 5 % floor


def test_daily_unit_that_missed_three_calls_with_a_hint():
    now = datetime(2026, 11, 13, 16, 0, tzinfo=UTC)  # calls of 11-11, 11-12 and 11-13 passed
    live = assess(list(reversed(daily())), now, 26, hint="watchdog reset: ...")  # order does not matter
    assert (live.state, live.missed, live.hint) == ("missed", 3, "watchdog reset: ...")
    assert live.expected_next == datetime(2026, 11, 11, 3, 15, tzinfo=UTC)  # the first one missed


def test_jittered_daily_unit_is_expected_at_its_usual_time_not_24_h_after_its_last_call():
    jitter = [4, -2, 5, -4, 1, 6, -3, 2, -1, 4]  # minutes around 03:15; the last call at 03:19
    now = datetime(2026, 11, 11, 3, 0, tzinfo=UTC)
    live = assess(daily(jitter_min=jitter), now, 26)
    assert live.state == "on_schedule" and live.hint is None
    # First and last calls both at +4: the period is exactly a day; the phase
    # is the median of the last seven calls' jitter (+1 min).
    assert live.period_s == 86400.0
    assert live.expected_next == datetime(2026, 11, 11, 3, 16, tzinfo=UTC)
    assert 0.05 * 86400 == live.tolerance_s  # 4 x 7.4 min of spread is under the floor
    late = assess(daily(jitter_min=jitter), datetime(2026, 11, 11, 4, 29, tzinfo=UTC), 26)
    assert late.state == "late"


def test_30_minute_unit():
    start = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    pings = every_30_min(start, 49)  # 00:00 .. 24:00
    last = start + 24 * timedelta(hours=1)
    expected = last + 30 * MIN
    cases = {
        last + 20 * MIN: ("on_schedule", 0),
        last + 34 * MIN: ("on_schedule", 0),   # 5 min tolerance
        last + 36 * MIN: ("late", 0),
        last + 46 * MIN: ("missed", 1),        # half a period past its call
        last + 106 * MIN: ("missed", 3),       # 13:46: three calls missed
    }
    for now, (state, missed) in cases.items():
        live = assess(pings, now, 26)
        assert (live.state, live.missed, live.expected_next, live.period_s, live.tolerance_s) == (
            state, missed, expected, 1800.0, 300.0), now
    # The silent flag of 26 h would say nothing for a day; the model says missed.
    assert assess(pings, last + 3 * timedelta(hours=1), 26).missed == 5


def test_missed_calls_between_do_not_skew_the_period():
    start = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    pings = [p for i, p in enumerate(every_30_min(start, 40)) if i not in (10, 11, 25)]
    live = assess(pings, start + 39 * 30 * MIN + 10 * MIN, 26)
    assert (live.state, live.period_s, live.expected_next) == ("on_schedule", 1800.0, start + 40 * 30 * MIN)


def test_several_pings_in_one_cycle_count_as_one_contact():
    pings = daily() + [p + timedelta(seconds=40) for p in daily()]
    live = assess(pings, LAST_DAILY + 2 * timedelta(hours=1), 26)
    assert (live.state, live.period_s) == ("on_schedule", 86400.0)
    assert live.last_contact == LAST_DAILY + timedelta(seconds=40)
    assert live.expected_next == LAST_DAILY + DAY


def test_too_little_history_falls_back_to_the_silent_hours():
    pings = [T0, T0 + DAY]
    recent = assess(pings, T0 + DAY + 25 * timedelta(hours=1), 26, hint="watchdog reset: x")
    assert (recent.state, recent.expected_next, recent.period_s, recent.hint) == ("on_schedule", None, None, None)
    quiet = assess(pings, T0 + DAY + 27 * timedelta(hours=1), 26, hint="watchdog reset: x")
    assert (quiet.state, quiet.missed, quiet.expected_next, quiet.hint) == ("silent", 0, None, "watchdog reset: x")
    assert assess(pings[:1], T0 + 2 * timedelta(hours=1), 1.5).state == "silent"


def test_never_seen():
    live = assess([], T0, 26, hint="anything")
    assert live == type(live)("never_seen", None, None, 0, None, None, None)


def test_naive_times_are_utc():
    naive = [p.replace(tzinfo=None) for p in daily()]
    live = assess(naive, (LAST_DAILY + DAY + 2 * timedelta(hours=1)).replace(tzinfo=None), 26)
    assert live.state == "late" and live.expected_next == LAST_DAILY + DAY
    assert live.last_contact.tzinfo is UTC


def test_overdue_orders_within_a_state():
    now = datetime(2026, 11, 13, 16, 0, tzinfo=UTC)
    assert assess(daily(), now, 26).overdue_s(now) == (now - (LAST_DAILY + DAY)).total_seconds()
    assert assess(daily(), LAST_DAILY + MIN, 26).overdue_s(LAST_DAILY + MIN) == 0.0
    assert assess([T0], T0 + 2 * DAY, 26).overdue_s(T0 + 2 * DAY) == 2 * 86400.0


@pytest.mark.parametrize(("line", "starts"), [
    ("(2019, 10, 25, 3, 11, 24, 4, 298) EXC   Uncaught exception KeyError", "last cycle ended with an uncaught"),
    ("2019-10-25 03:11:24 WARN  Watchdog reset", "watchdog reset"),
    ("2019-10-25 03:11:24 WARN  Skipping comm due to backoff: 4/5", "skipping calls (backoff)"),
    ("2019-10-25 03:11:24 INFO  Self-test. LTE attached: True.", None),
    ("2019-10-25 03:11:24 WARN  Uncaught exception while transmitting", None),  # 'transmit' wins, as imported
    (None, None),
])
def test_error_hint(line, starts):
    hint = error_hint(line)
    if starts is None:
        assert hint is None
    else:
        assert hint.startswith(starts) and hint.endswith(line)


# ------------------------------------------------ through the database, the pings log and the folders

A, B, C, D, E, F = (f"co2unit-30aea4{n:06x}" for n in (0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6))
NOW = datetime(2026, 11, 13, 16, 0)  # naive UTC, as the dashboard keeps time


def ping(ts: datetime, unit: str, nick: str) -> Ping:
    return Ping(ts.replace(tzinfo=None).isoformat(timespec="microseconds"), unit, nick, 9, -95, 99)


def insert_pings(db_path: Path, pings: list[Ping]) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.executemany("INSERT INTO pings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [p.db_row() for p in pings])
    conn.close()


def write_units(root: Path) -> Config:
    """Six units' pings at known times: in the database, in the pings log, or both."""
    config = Config.from_environ({"CO2_DATA_DIR": str(root / "remote_data"), "CO2_VAR_DIR": str(root / "var")})
    db.prepare(config.db_path)
    in_db, in_log = [], []
    in_db += [ping(t, A, "a-daily") for t in daily(13)]                       # last 11-13 03:15
    in_db += [ping(datetime(2026, 10, 1, 12, 0, tzinfo=UTC), A, "a-daily")]   # 6 weeks ago, off its slot: not in the period
    in_db += [ping(t, B, "b-daily-missed") for t in daily(10)]                # last 11-10 03:15
    half_hourly = every_30_min(datetime(2026, 11, 13, 0, 20, tzinfo=UTC), 31)  # 00:20 .. 15:20
    in_db += [ping(t, C, "c-30min") for t in half_hourly[:20]]
    in_log += [ping(t, C, "c-30min") for t in half_hourly[18:]]                # the log ahead of the database
    jitter = [4, -2, 5, -4, 1, 6, -3, 2, -1, 4, 1, 0, 4]  # median of the last seven: +1 min
    in_log += [ping(t, D, "d-jitter") for t in daily(13, jitter)]            # last 11-13 03:19
    in_db += [ping(NOW - 30 * timedelta(hours=1), E, "e-new")]                # one ping, 30 h ago
    insert_pings(config.db_path, in_db)
    config.pings_dir.mkdir(parents=True, exist_ok=True)
    (config.pings_dir / "pings-0000.tsv").write_bytes(b"".join(p.tsv_line() for p in in_log))
    (config.data_dir / F / "errors").mkdir(parents=True)                      # a folder, never a ping
    (config.data_dir / B / "errors").mkdir(parents=True)
    (config.data_dir / B / "errors" / "errors-0000.txt").write_bytes(
        b"----- 2026-11-10 03:14:02 INFO  Self-test. LTE attached: True.\n"
        b"----- 2026-11-10 03:20:40 WARN  Watchdog reset\n")
    return config


def test_dashboard_assesses_every_unit_from_database_and_log(tmp_path):
    board = build_dashboard(write_units(tmp_path), now=NOW)
    units = {u.hw_id: u for u in board.units}
    got = {hw: (u.liveness.state, u.liveness.missed, u.liveness.expected_next) for hw, u in units.items()}
    at = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    assert got == {
        A: ("on_schedule", 0, at(2026, 11, 14, 3, 15)),
        B: ("missed", 3, at(2026, 11, 11, 3, 15)),
        C: ("late", 0, at(2026, 11, 13, 15, 50)),
        D: ("on_schedule", 0, at(2026, 11, 14, 3, 16)),
        E: ("silent", 0, None),
        F: ("never_seen", 0, None),
    }
    assert units[B].liveness.hint == "watchdog reset: 2026-11-10 03:20:40 WARN  Watchdog reset"
    assert [units[hw].liveness.period_s for hw in (A, B, C, D)] == [86400.0, 86400.0, 1800.0, 86400.0]
    assert units[C].last_ping == datetime(2026, 11, 13, 15, 20)  # from the log
    # Most urgent first; within on_schedule by nickname.
    assert [u.hw_id for u in board.units] == [B, C, E, F, A, D]

    rows = {u["hw_id"]: u for u in board.as_json()["units"]}
    assert {k: rows[B][k] for k in ("liveness_state", "expected_next_contact", "expected_next_in", "missed_contacts",
                                    "contact_period_s", "liveness_hint", "silent")} == {
        "liveness_state": "missed", "expected_next_contact": "2026-11-11T03:15:00Z", "expected_next_in": "2 d ago",
        "missed_contacts": 3, "contact_period_s": 86400.0,
        "liveness_hint": "watchdog reset: 2026-11-10 03:20:40 WARN  Watchdog reset", "silent": True}
    assert (rows[A]["expected_next_contact"], rows[A]["expected_next_in"]) == ("2026-11-14T03:15:00Z", "in 11 h")
    assert (rows[C]["expected_next_in"], rows[C]["silent"]) == ("10 min ago", False)  # late long before silent
    assert board.as_json()["liveness_counts"] == {"missed": 1, "late": 1, "silent": 1, "never_seen": 1,
                                                  "on_schedule": 2}


def test_the_same_units_the_next_day_at_noon(tmp_path):
    board = build_dashboard(write_units(tmp_path), now=datetime(2026, 11, 14, 12, 0))
    got = {u.hw_id: (u.liveness.state, u.liveness.missed) for u in board.units}
    assert got == {A: ("late", 0), B: ("missed", 3), C: ("missed", 40), D: ("late", 0),
                   E: ("silent", 0), F: ("never_seen", 0)}
    # Within a state the most overdue first: B since 11-11 03:15, C since 11-13 15:50; A a minute before D.
    assert [u.hw_id for u in board.units] == [B, C, A, D, E, F]


def test_a_unit_silent_for_weeks_keeps_its_schedule_and_an_old_error_explains_nothing(tmp_path):
    """A daily unit quiet for 20 days is 'missed' 20 times (not merely silent), and its newest
    error entry, written long before its last call, gives no hint; a fresh one does."""
    config = Config.from_environ({"CO2_DATA_DIR": str(tmp_path / "remote_data"), "CO2_VAR_DIR": str(tmp_path / "var")})
    db.prepare(config.db_path)
    insert_pings(config.db_path, [ping(t, A, "a") for t in daily(10)] + [ping(t, B, "b") for t in daily(10)])
    last_call = T0 + 9 * DAY  # 2026-11-10 03:15
    for unit, written in ((A, "2026-09-01 03:15:00"), (B, "2026-11-10 03:14:00")):
        (config.data_dir / unit / "errors").mkdir(parents=True)
        (config.data_dir / unit / "errors" / "errors-0000.txt").write_bytes(
            f"----- {written} ERROR Uncaught exception\n".encode())
    now = (last_call + 20 * DAY + 12 * timedelta(hours=1)).replace(tzinfo=None)
    units = {u.hw_id: u.liveness for u in build_dashboard(config, now=now).units}
    assert [(units[hw].state, units[hw].missed, units[hw].expected_next) for hw in (A, B)] == [
        ("missed", 20, last_call + DAY)] * 2
    assert units[A].hint is None
    assert units[B].hint == "last cycle ended with an uncaught exception: 2026-11-10 03:14:00 ERROR Uncaught exception"


def test_units_json_through_uwsgi(make_server, tmp_path):
    server = make_server()
    now = datetime.now(UTC).replace(microsecond=0)
    last = now - 106 * MIN  # a 30-minute unit: its calls of -76, -46 and -16 min missed
    daily_calls = [now - 2 * DAY - 3 * timedelta(hours=1), now - DAY - 3 * timedelta(hours=1), now - 3 * timedelta(hours=1)]
    insert_pings(server.db_path, [ping(t, C, "c-30min") for t in every_30_min(last - 20 * 30 * MIN, 21)]
                 + [ping(t, A, "a-daily") for t in daily_calls])
    reply = server.request("GET", "/status/units.json")
    assert reply.status == 200, reply.body
    board = reply.json()
    assert [u["hw_id"] for u in board["units"]] == [C, A]
    uc, ua = board["units"]
    assert (uc["liveness_state"], uc["missed_contacts"], uc["contact_period_s"], uc["expected_next_contact"]) == (
        "missed", 3, 1800.0, (last + 30 * MIN).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert (ua["liveness_state"], ua["expected_next_contact"], ua["expected_next_in"]) == (
        "on_schedule", (now + 21 * timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "in 20 h")
    html = server.request("GET", "/status/units").body.decode()
    assert f'data-hw-id="{C}" data-state="missed"' in html and "missed &times;3" in html
    assert html.index(C) < html.index(A)


ENTRY_MESSAGES = [
    "Uncaught exception in main loop",
    "Watchdog reset",
    "watch dog fired after Uncaught exception",
    "Watch dog",
    "Signal quality 12, backoff 3 cycles",
    "transmitting readings; Signal quality low; backoff",
    "uncaught exception",  # lower case: no type
    "Stopwatch started",  # 'atch' but not watchdog
    "",
    "nothing to see",
]


@pytest.mark.parametrize("message", ENTRY_MESSAGES)
def test_the_server_types_error_entries_as_the_importer_does(message):
    """The server cannot import the pipeline: its copy of the entry types must agree with the importer's."""
    from co2db.import_errors import etype_of as importer_etype

    assert etype_of(message) == importer_etype(message)
