"""Schedule-aware liveness: pings at known times, a fixed now, exact states and expected times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from co2server.liveness import STATES, assess, error_hint

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
