"""The deployment model: where each unit was when, and the groups the plots,
the pages (and the research export) are organised by.

A *period* is one row of deploy_durations_tiered: a unit at a site (or
without one) with a status, from start (inclusive) to end (exclusive); an
open start or end is None.

A *deployment group* is one row of the pings chart and one panel of the CO2
plots: a deployment site (every unit that stood there, over time), or a unit
on its own when the deployments table gives it no site (never deployed, or a
period without a site). Groups are ordered by tier, higher first; units that
were never deployed have no tier and come last.

Which group a reading or ping belongs to: each unit's deployment periods are
sorted by start; a unit belongs to the group of its most recently started
period (before its first period, to the group of its first period). So every
data point lands in exactly one group, also the ones between periods, and a
unit that keeps reporting after its period ended stays visible where it was.

No matplotlib here: this module only reads the database.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .cli import warn
from .readonly import table_exists

STATUSES = ("deployed", "en_route", "lab_check")
# Status of data outside every deployment period of a unit that has periods.
OUTSIDE = "outside"
# Status of data of a unit that has no deployment periods at all.
UNDEPLOYED = "undeployed"
# Statuses whose data is drawn subdued: the unit was not measuring at its site.
SUBDUED = frozenset({"en_route", "lab_check", OUTSIDE})


def parse_ts(text: object) -> datetime | None:
    """A deployments time (ISO date or date-time) as a naive UTC datetime; None when empty."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    value = datetime.fromisoformat(text)  # ValueError for the caller to report
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class Period:
    """One row of deploy_durations_tiered, times parsed; start/end None = open."""

    unit_id: str
    nickname: str | None
    site: str | None
    tier: int | None
    status: str  # an empty status reads as deployed (the plots and pages always have)
    start: datetime | None
    end: datetime | None
    given_status: str | None = None  # as the table has it: None when empty (the export's `status`)

    @property
    def group_key(self) -> str:
        """Key of the group this period's data belongs to."""
        return site_key(self.site) if self.site else unit_key(self.unit_id)

    def contains(self, when: datetime) -> bool:
        """True when `when` is in [start, end): start inclusive, end exclusive."""
        return (self.start is None or self.start <= when) and (self.end is None or when < self.end)

    def overlaps(self, xmin: datetime, xmax: datetime) -> bool:
        """True when the period shares some time with [xmin, xmax]."""
        return (self.start is None or self.start <= xmax) and (self.end is None or self.end >= xmin)


def site_key(site: str) -> str:
    return "site:" + site


def unit_key(unit_id: str) -> str:
    return "unit:" + unit_id


def load_periods(conn: sqlite3.Connection) -> list[Period]:
    """Read deploy_durations_tiered; skip (with a warning) rows that cannot be used."""
    if not table_exists(conn, "deploy_durations_tiered"):
        return []
    rows = conn.execute(
        "SELECT rowid, unit_id, nickname, site, tier, status, start_ts, end_ts"
        " FROM deploy_durations_tiered ORDER BY rowid"
    ).fetchall()
    periods = []
    for rowid, unit_id, nickname, site, tier, status, start_ts, end_ts in rows:
        where = f"deploy_durations_tiered row {rowid}"
        if not unit_id:
            warn(f"{where}: no unit_id; row ignored")
            continue
        try:
            start, end = parse_ts(start_ts), parse_ts(end_ts)
        except ValueError:
            warn(f"{where}: start_ts {start_ts!r} or end_ts {end_ts!r} is not ISO; row ignored")
            continue
        if tier is not None and not isinstance(tier, int):
            try:
                tier = int(str(tier).strip())
            except ValueError:
                warn(f"{where}: tier {tier!r} is not an integer; taken as no tier")
                tier = None
        periods.append(
            Period(
                unit_id=str(unit_id),
                nickname=str(nickname) if nickname not in (None, "") else None,
                site=str(site).strip() if site not in (None, "") else None,
                tier=tier,
                status=str(status).strip() if status else "deployed",
                start=start,
                end=end,
                given_status=str(status).strip() if status else None,
            )
        )
    return periods


def current_periods(periods: Iterable[Period], now: datetime) -> dict[str, Period]:
    """Each unit's current period: the latest started one that has not ended by now."""
    current: dict[str, Period] = {}
    for period in periods:
        if period.start is not None and period.start > now:
            continue
        if period.end is not None and period.end <= now:
            continue
        best = current.get(period.unit_id)
        if best is None or (period.start or datetime.min) >= (best.start or datetime.min):
            current[period.unit_id] = period
    return current


@dataclass
class Group:
    """One plot row/panel: a site, or a unit on its own."""

    key: str
    label: str  # site name, or the unit's hardware ID
    tier: int | None
    periods: list[Period] = field(default_factory=list)
    unit_ids: list[str] = field(default_factory=list)  # in order of first appearance
    nicknames: list[str] = field(default_factory=list)

    @property
    def is_site(self) -> bool:
        return self.key.startswith("site:")

    def add_unit(self, unit_id: str, nickname: str | None) -> None:
        if unit_id not in self.unit_ids:
            self.unit_ids.append(unit_id)
        if nickname and nickname not in self.nicknames:
            self.nicknames.append(nickname)

    def nickname_label(self, limit: int = 3) -> str:
        """Nicknames of the group's units, oldest first, shortened after limit."""
        names = self.nicknames or [u.removeprefix("co2unit-") for u in self.unit_ids]
        if len(names) > limit:
            return ", ".join(names[-limit:]) + f" (+{len(names) - limit})"
        return ", ".join(names)


@dataclass
class Layout:
    """Deployment groups and, per unit, which group and status a time belongs to."""

    groups: dict[str, Group]
    # unit_id -> (sorted period starts, periods in that order)
    _timelines: dict[str, tuple[list[datetime], list[Period]]]

    def periods_of(self, unit_id: str) -> list[Period]:
        """The unit's periods, by start (none for a unit without periods)."""
        timeline = self._timelines.get(unit_id)
        return list(timeline[1]) if timeline else []

    def is_deployed(self, unit_id: str) -> bool:
        """True when the unit has at least one deployment period (any status)."""
        return unit_id in self._timelines

    def governing_period(self, unit_id: str, when: datetime) -> Period | None:
        """The unit's most recently started period at `when` (before its first
        period, its first); None for a unit without periods."""
        timeline = self._timelines.get(unit_id)
        if timeline is None:
            return None
        starts, periods = timeline
        return periods[max(bisect.bisect_right(starts, when) - 1, 0)]

    def period_at(self, unit_id: str, when: datetime) -> Period | None:
        """The unit's period containing `when` (start inclusive, end exclusive,
        open ends open); of several, the latest start (an open start counts as
        earliest), then the later row of the file. None when no period
        contains it. The research export's rule (DATA-FORMATS.md)."""
        timeline = self._timelines.get(unit_id)
        if timeline is None:
            return None
        starts, periods = timeline
        # Sorted by start, stably: among equal starts, the file's order.
        for period in reversed(periods[: bisect.bisect_right(starts, when)]):
            if period.contains(when):
                return period
        return None

    def periods_at(self, unit_id: str, micros) -> tuple[list[Period], object]:
        """period_at for many times at once: `micros` are the times as integer
        microseconds since 1970-01-01 (UTC), a numpy int64 array. Returns
        (the unit's periods, a numpy array with, per time, the index of its
        period in that list or -1 for none). The same rule as period_at: of
        the periods containing a time, the last in start order (sorted
        stably, so among equal starts the later row of the file) wins."""
        import numpy as np

        found = np.full(len(micros), -1, dtype=np.int64)
        timeline = self._timelines.get(unit_id)
        if timeline is None:
            return [], found
        _, periods = timeline
        for i, period in enumerate(periods):  # later ones overwrite: the last containing period wins
            inside = np.ones(len(micros), dtype=bool)
            if period.start is not None:
                inside &= micros >= _micros(period.start)
            if period.end is not None:
                inside &= micros < _micros(period.end)
            found[inside] = i
        return periods, found

    def locate(self, unit_id: str, when: datetime) -> tuple[str, str]:
        """(group key, status) of a unit's data point at time when."""
        period = self.governing_period(unit_id, when)
        if period is None:
            return unit_key(unit_id), UNDEPLOYED
        return period.group_key, period.status if period.contains(when) else OUTSIDE

    def ordered(self) -> list[Group]:
        """Groups by tier (higher first; no tier last), then by label."""
        return sorted(
            self.groups.values(),
            key=lambda g: (g.tier is None, -(g.tier or 0), natural_key(g.label), g.key),
        )


_EPOCH = datetime(1970, 1, 1)


def _micros(when: datetime) -> int:
    """A naive UTC datetime as integer microseconds since 1970-01-01."""
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def natural_key(text: str) -> list:
    """Sort key putting site_2 before site_10."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text)]


def build_layout(periods: Sequence[Period]) -> Layout:
    """Groups from the deployment periods; units of the data are added with group_for_data()."""
    groups: dict[str, Group] = {}
    per_unit: dict[str, list[Period]] = {}
    for period in periods:
        key = period.group_key
        group = groups.get(key)
        if group is None:
            label = period.site if period.site else period.unit_id
            group = groups[key] = Group(key=key, label=label, tier=period.tier)
        elif period.tier is not None and (group.tier is None or period.tier > group.tier):
            group.tier = period.tier
        group.periods.append(period)
        per_unit.setdefault(period.unit_id, []).append(period)
    timelines = {}
    very_early = datetime.min
    for unit_id, unit_periods in per_unit.items():
        unit_periods.sort(key=lambda p: p.start or very_early)
        starts = [p.start or very_early for p in unit_periods]
        timelines[unit_id] = (starts, unit_periods)
        for p in unit_periods:
            groups[p.group_key].add_unit(unit_id, p.nickname)
    return Layout(groups=groups, _timelines=timelines)


def group_for_data(layout: Layout, key: str, unit_id: str, nickname: str | None) -> Group:
    """The group for key, created for a unit that has data but no deployment rows."""
    group = layout.groups.get(key)
    if group is None:
        group = layout.groups[key] = Group(key=key, label=unit_id, tier=None)
    group.add_unit(unit_id, nickname)
    return group


def tier_allowed(tier: int | None, min_tier: int | None, max_tier: int | None) -> bool:
    """--min-tier/--max-tier: a group without a tier passes only when neither is given."""
    if tier is None:
        return min_tier is None and max_tier is None
    if min_tier is not None and tier < min_tier:
        return False
    return max_tier is None or tier <= max_tier


@dataclass(frozen=True)
class Undeployed:
    """The units never deployed that are shown (most recently heard first), of how many."""

    shown: list[str]
    total: int

    @property
    def left_out(self) -> int:
        return self.total - len(self.shown)


def choose_undeployed(layout: Layout, last_heard: Mapping[str, object], limit: int) -> Undeployed:
    """Of the units in last_heard (unit_id -> a sortable time; None: not heard)
    that have no deployment period, the `limit` heard most recently.

    Thousands of invented hardware IDs must not make a plot or page of
    thousands of rows: the deployed groups are always shown, these are capped.
    """
    heard = sorted((u for u, t in last_heard.items() if t is not None and not layout.is_deployed(u)))
    heard.sort(key=lambda u: last_heard[u], reverse=True)  # stable: ties by hardware ID
    return Undeployed(shown=heard[:limit], total=len(heard))


def select_groups(
    layout: Layout,
    with_data: Iterable[str],
    xmin: datetime,
    xmax: datetime,
    min_tier: int | None,
    max_tier: int | None,
    undeployed: Undeployed | None = None,
) -> list[Group]:
    """Groups to draw: with data in range, or with a period overlapping it; tier-filtered.

    With `undeployed`, groups of units never deployed are only its shown
    units, last, in its order (most recently heard first).
    """
    wanted = set(with_data)
    chosen = []
    for group in layout.ordered():
        if not tier_allowed(group.tier, min_tier, max_tier):
            continue
        if undeployed is not None and not group.periods:
            continue
        if group.key in wanted or any(p.overlaps(xmin, xmax) for p in group.periods):
            chosen.append(group)
    if undeployed is not None and tier_allowed(None, min_tier, max_tier):
        for unit_id in undeployed.shown:
            group = layout.groups.get(unit_key(unit_id))
            if group is not None and group.key in wanted and not group.periods:
                chosen.append(group)
    return chosen
