"""Schedule-aware liveness: from a unit's recent contacts, is it calling when it should?

A pure model (no I/O): the dashboard, its JSON and the metrics feed it the
ping times they read and a `now`, so it is tested with both fixed.

The model, per unit:
- contacts closer than BURST_S to the one before belong to one cycle (a unit
  may ping more than once in a cycle); a cycle counts from its first ping;
- the usual period is the median of the intervals between the last
  MAX_CONTACTS cycles; an interval of about k periods (k missed calls) counts
  as k intervals of interval/k, so a few misses do not skew it; the spread is
  the MAD of those intervals (scaled to a standard deviation);
- the time of day (the phase) is the median offset of the last PHASE_CONTACTS
  cycles from a grid of that period laid through the last cycle: a unit that
  calls at 03:15 daily with a few minutes' jitter is expected at the next
  03:15, not 24 h after its last (jittered) call;
- the tolerance is 4 spreads, at least MIN_TOLERANCE_S and 5 % of the period,
  at most 40 % of the period.

States, in urgency order (STATES; the dashboard sorts by it):
- missed: at least one expected contact has passed by more than half a
  period (a call arriving later is nearer the next slot): `missed` counts them;
- late: past the expected contact plus the tolerance, not yet missed;
- silent: too little history (fewer than MIN_CONTACTS cycles) to know a
  schedule, and no contact for more than CO2_SILENT_HOURS;
- never_seen: no contact at all (a unit folder or enrolled unit, no ping);
- on_schedule: otherwise (also a unit with too little history heard from
  within CO2_SILENT_HOURS; its expected_next is then unknown).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median

STATES = ("missed", "late", "silent", "never_seen", "on_schedule")

BURST_S = 120.0
MAX_CONTACTS = 30
PHASE_CONTACTS = 7
MIN_CONTACTS = 3
MIN_TOLERANCE_S = 300.0
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Liveness:
    state: str                     # one of STATES
    last_contact: datetime | None  # UTC, aware
    expected_next: datetime | None
    missed: int                    # contacts missed in a row (0 unless state == "missed")
    period_s: float | None         # the usual period between contacts, when known
    tolerance_s: float | None      # lateness tolerated before "late"
    hint: str | None               # from the unit's error log, when it explains a miss

    def overdue_s(self, now: datetime) -> float:
        """How far past its expected contact (or, without a schedule, its last one) the unit is."""
        ref = self.expected_next if self.state in ("missed", "late") else self.last_contact
        if ref is None or self.state in ("on_schedule", "never_seen"):
            return 0.0
        return (_aware(now) - ref).total_seconds()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = _EPOCH.replace(tzinfo=None)


def _aware(ts: datetime) -> datetime:
    """Naive datetimes are UTC (as the pings log writes them)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _seconds(ts: datetime) -> float:
    """Seconds since the epoch (naive = UTC): the model works on these, cheaply."""
    return (ts - (_EPOCH_NAIVE if ts.tzinfo is None else _EPOCH)).total_seconds()


def _time(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _cycles(times: list[float]) -> list[float]:
    """The first contact of each cycle (times sorted), at most the last MAX_CONTACTS."""
    starts: list[float] = []
    previous = None
    for ts in times:
        if previous is None or ts - previous > BURST_S:
            starts.append(ts)
        previous = ts
    return starts[-MAX_CONTACTS:]


def _period(starts: list[float]) -> tuple[float, float]:
    """(usual period, robust spread) in seconds, missed calls folded back in.

    The median interval picks the period roughly; intervals of about k such
    periods (k - 1 missed calls between) are kept, others (an extra call at
    an odd time) left out; the period is then their total over their count
    of periods, so the jitter of single calls averages out.
    """
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    rough = median(gaps)
    total = periods = 0.0
    parts: list[float] = []
    for gap in gaps:
        k = max(1, round(gap / rough))
        if abs(gap - k * rough) <= 0.25 * rough:  # a long silence must end near a slot
            total, periods = total + gap, periods + k
            parts += [gap / k] * k
    if not periods:
        return rough, 0.0
    period = total / periods
    spread = MAD_TO_SIGMA * median(abs(p - period) for p in parts)
    return period, spread


def _phase_offset(starts: list[float], period: float) -> float:
    """Median offset (s) of the recent cycles from a grid of `period` through the last one."""
    last = starts[-1]
    offsets = []
    for ts in starts[-PHASE_CONTACTS:]:
        d = (ts - last) % period
        offsets.append(d - period if d > period / 2 else d)
    return median(offsets)


@dataclass(frozen=True)
class Schedule:
    """What a unit's contacts tell, whatever the time now (the dashboard caches it per unit)."""
    last_contact: float          # seconds since the epoch
    cycles: int                  # contacts after folding the bursts, at most MAX_CONTACTS
    period_s: float | None = None
    tolerance_s: float | None = None
    expected_next: float | None = None  # the first expected contact after the last one


def schedule(contacts: Sequence[datetime]) -> Schedule | None:
    """The unit's usual contact pattern from its contact times (any order; naive = UTC); None if none."""
    if not contacts:
        return None
    times = sorted(map(_seconds, contacts))
    starts = _cycles(times)
    if len(starts) < MIN_CONTACTS:
        return Schedule(times[-1], len(starts))
    period, spread = _period(starts)
    if period <= 0:
        return Schedule(times[-1], len(starts))
    tolerance = min(max(MIN_TOLERANCE_S, 0.05 * period, 4 * spread), 0.4 * period)
    expected = starts[-1] + _phase_offset(starts, period) + period
    while expected <= times[-1]:  # a call answered late still counts for its slot
        expected += period
    return Schedule(times[-1], len(starts), period, tolerance, expected)


def state_at(sched: Schedule | None, now: datetime, silent_hours: float, hint: str | None = None) -> Liveness:
    """The liveness at `now` of a unit with schedule `sched` (see the module's states)."""
    if sched is None:
        return Liveness("never_seen", None, None, 0, None, None, None)
    at, last = _seconds(now), _time(sched.last_contact)
    if sched.expected_next is None:
        silent = at - sched.last_contact > silent_hours * 3600
        return Liveness("silent" if silent else "on_schedule", last, None, 0, None, None, hint if silent else None)
    period, tolerance, expected = sched.period_s, sched.tolerance_s, sched.expected_next
    overdue = at - expected
    if overdue > period / 2:
        missed = int((overdue - period / 2) // period) + 1
        return Liveness("missed", last, _time(expected), missed, period, tolerance, hint)
    state = "late" if overdue > tolerance else "on_schedule"
    return Liveness(state, last, _time(expected), 0, period, tolerance, hint if state == "late" else None)


def assess(contacts: Sequence[datetime], now: datetime, silent_hours: float, hint: str | None = None) -> Liveness:
    """The unit's liveness at `now` from its recent contact times (any order; naive = UTC)."""
    return state_at(schedule(contacts), now, silent_hours, hint)


# The entry types of DATA-FORMATS.md's error-log import rules (the importer,
# database/co2db/import_errors.py, is outside the server's reach: its
# etype_of and this one are kept the same by tests/test_liveness.py); three
# of them explain a missed call.
_TYPES = (  # in the rules' order: the last that matches wins
    ("uncaught", re.compile(r"Uncaught exception")),
    ("watchdog", re.compile(r"[Ww]atch ?dog")),
    ("signal", re.compile(r"Signal quality")),
    ("backoff", re.compile(r"backoff")),
    ("transmit", re.compile(r"transmitting")),
)
_HINT_TEXT = {
    "uncaught": "last cycle ended with an uncaught exception",
    "watchdog": "watchdog reset",
    "backoff": "skipping calls (backoff)",
}


# The written date and time an error-log entry starts with (zero-padded or not).
_ENTRY_TIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})")


def _entry_seconds(error_line: str) -> float | None:
    """When the entry was written (seconds since the epoch), None if undated or 1970 (clock not set)."""
    found = _ENTRY_TIME.match(error_line)
    if found is None or found.group(1) == "1970":
        return None
    try:
        return _seconds(datetime(*map(int, found.groups())))
    except ValueError:
        return None


def error_hint(error_line: str | None, sched: Schedule | None = None) -> str | None:
    """A short hint when the unit's newest error-log entry explains a miss, else None.

    An entry written more than two periods (two days without a schedule)
    before the unit's last contact explains nothing about a miss since: no
    hint then. Undated entries and 1970 ones (the unit's clock not set) count.
    """
    if not error_line:
        return None
    written = _entry_seconds(error_line)
    if written is not None and sched is not None:
        if written < sched.last_contact - 2 * (sched.period_s or 86400.0):
            return None
    etype = etype_of(error_line)
    return f"{_HINT_TEXT[etype]}: {error_line}" if etype in _HINT_TEXT else None


def etype_of(message: str) -> str | None:
    """The entry type of an error-log message: the last of _TYPES that matches, or None."""
    for etype, pattern in reversed(_TYPES):
        if pattern.search(message):
            return etype
    return None
