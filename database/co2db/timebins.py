"""Time axes of the plots: the range to show and equal time bins, computed in
SQL, about one pixel wide."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .cli import CommandError
from .deployments import Period
from .readonly import julian_day

# Bin widths a reader can name: bins line up with hours and days.
NICE_BIN_SECONDS = (
    60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 3 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400,
)  # fmt: skip


@dataclass(frozen=True)
class TimeBins:
    """Equal time bins from origin; bin i covers [origin + i*width, origin + (i+1)*width)."""

    origin: datetime
    width: timedelta
    count: int

    @property
    def end(self) -> datetime:
        """End of the last bin."""
        return self.origin + self.count * self.width

    def start_of(self, index: int) -> datetime:
        """Start time of bin index."""
        return self.origin + index * self.width

    def sql_index(self, ts_expr: str) -> str:
        """SQL giving the bin index of the time text ts_expr (params :bin_j0, :bin_days)."""
        return f"CAST((julianday({ts_expr}) - :bin_j0) / :bin_days AS INTEGER)"

    def sql_params(self) -> dict:
        """Parameters for sql_index()."""
        return {
            "bin_j0": julian_day(self.origin),
            "bin_days": self.width.total_seconds() / 86400.0,
        }


def choose_bins(xmin: datetime, xmax: datetime, target_bins: int, min_seconds: int = 60) -> TimeBins:
    """Bins about as wide as (xmax - xmin) / target_bins, rounded up to a nice width.

    target_bins is about the pixel width of a panel, so the SQL returns no
    more points than the plot can show, however many readings there are.
    Day-or-wider bins start at midnight UTC, narrower ones on the hour.
    """
    span = max((xmax - xmin).total_seconds(), 1.0)
    wanted = max(span / max(target_bins, 1), min_seconds)
    width = next((w for w in NICE_BIN_SECONDS if w >= wanted), None)
    if width is None:
        width = int(math.ceil(wanted / 86400.0)) * 86400
    if width >= 86400:
        origin = datetime.combine(xmin.date(), datetime.min.time())
    else:
        origin = xmin.replace(minute=0, second=0, microsecond=0)
    # One more bin than the span needs: a point exactly at xmax has one too.
    count = int((xmax - origin).total_seconds() // width) + 1
    return TimeBins(origin=origin, width=timedelta(seconds=width), count=count)


def describe_width(width: timedelta) -> str:
    """'30 min', '6 h', '1 day', '7 days'."""
    seconds = int(width.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


def default_range(
    extent: tuple[datetime | None, datetime | None],
    periods: Sequence[Period],
    now: datetime,
    xmin: datetime | None,
    xmax: datetime | None,
) -> tuple[datetime, datetime]:
    """--xmin/--xmax, else the data's extent (else the periods', else the last day).

    The end is never past now (a unit with a wrong clock must not stretch the
    axis into the future), and the range is at least a day wide.
    """
    lo, hi = extent
    if lo is None or hi is None:
        starts = [p.start for p in periods if p.start]
        ends = [p.end or now for p in periods]
        lo = min(starts) if starts else None
        hi = max(ends) if ends else None
    if xmin is not None and xmax is not None and xmax <= xmin:
        raise CommandError(f"--xmin {xmin.isoformat()} is not before --xmax {xmax.isoformat()}")
    if xmax is None:
        xmax = min(hi, now) if hi is not None else now
        if xmin is not None and xmax <= xmin:
            xmax = xmin + timedelta(days=1)
    if xmin is None:
        xmin = lo if lo is not None and lo <= xmax else xmax - timedelta(days=1)
    if xmax - xmin < timedelta(days=1):
        pad = (timedelta(days=1) - (xmax - xmin)) / 2
        xmin, xmax = xmin - pad, xmax + pad
    return xmin, xmax
