"""The deployment model's two forms of the export's period rule agree:
Layout.period_at (one time) and Layout.periods_at (many times at once, what
the export uses), on crafted boundaries and on many random periods and times."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import numpy as np

from co2db.deployments import Period, build_layout

EPOCH = datetime(1970, 1, 1)


def micros(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def both(layout, unit, times):
    periods, index = layout.periods_at(unit, np.array([micros(t) for t in times], dtype=np.int64))
    vectorised = [periods[i] if i >= 0 else None for i in index.tolist()]
    one_by_one = [layout.period_at(unit, t) for t in times]
    return vectorised, one_by_one


def period(site, start, end, status="deployed", unit="u1"):
    return Period(unit_id=unit, nickname=None, site=site, tier=1, status=status, start=start, end=end)


def test_boundaries_overlaps_and_equal_starts_agree():
    d = datetime
    periods = [
        period("a", d(2020, 1, 1), d(2020, 1, 10, 12)),
        period("b", d(2020, 1, 10, 12), None),  # open end
        period("c", d(2020, 1, 5), d(2020, 1, 6)),  # inside a
        period("d", d(2020, 1, 5), d(2020, 1, 6), status="lab_check"),  # same start, later row: wins
        period("e", None, d(2019, 6, 1)),  # open start
        period("f", d(2020, 3, 1, 0, 0, 0, 500000), d(2020, 3, 2)),  # a fraction of a second
    ]
    layout = build_layout(periods)
    times = [
        d(2019, 1, 1),
        d(2019, 6, 1) - timedelta(seconds=1),
        d(2019, 6, 1),
        d(2019, 12, 31, 23, 59, 59),
        d(2020, 1, 1),
        d(2020, 1, 5),
        d(2020, 1, 5, 23, 50),
        d(2020, 1, 6),
        d(2020, 1, 10, 11, 59, 59),
        d(2020, 1, 10, 12),
        d(2020, 3, 1),
        d(2020, 3, 1, 0, 0, 1),
        d(2030, 6, 1),
    ]
    vectorised, one_by_one = both(layout, "u1", times)
    assert vectorised == one_by_one
    assert [p.site if p else None for p in one_by_one] == [
        "e", "e", None, None, "a", "d", "d", "a", "a", "b", "b", "f", "b",
    ]  # fmt: skip
    assert both(layout, "no-such-unit", times[:3]) == ([None] * 3, [None] * 3)


def test_random_periods_and_times_agree():
    rng = random.Random(10)
    base = datetime(2020, 1, 1)

    def when():
        return base + timedelta(hours=rng.randrange(0, 24 * 60))

    for round_ in range(200):
        periods = []
        for _ in range(rng.randrange(1, 6)):
            start = None if rng.random() < 0.2 else when()
            end = None if rng.random() < 0.2 else when()
            periods.append(period(f"s{len(periods)}", start, end, status=rng.choice(["deployed", "en_route"])))
        layout = build_layout(periods)
        times = [when() for _ in range(50)] + [p.start for p in periods if p.start] + [p.end for p in periods if p.end]
        vectorised, one_by_one = both(layout, "u1", times)
        assert vectorised == one_by_one, round_
