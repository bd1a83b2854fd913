"""Shared helpers of the plots and pages: read-only database, deployment groups,
time bins computed in SQL, headless matplotlib, atomic output files.

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
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

STATUSES = ("deployed", "en_route", "lab_check")
# Status of data outside every deployment period of a unit that has periods.
OUTSIDE = "outside"
# Status of data of a unit that has no deployment periods at all.
UNDEPLOYED = "undeployed"
# Statuses whose data is drawn subdued: the unit was not measuring at its site.
SUBDUED = frozenset({"en_route", "lab_check", OUTSIDE})

STATUS_STYLE = {
    # status: (strong colour for markers and lines, pale colour for bands)
    "deployed": ("#2e7d32", "#dcedc8"),
    "en_route": ("#e65100", "#ffe0b2"),
    "lab_check": ("#546e7a", "#e0e0e0"),
}
OTHER_STATUS_STYLE = ("#8d6e63", "#efebe9")  # a status not in STATUSES

# Readings that are sensor-limit codes, not measurements (DATA-FORMATS.md): the
# import keeps them; plots leave them out of means. Defined beside co2_daily,
# which sums readings by the same rules.
from .daily import CO2_VALID_MAX, CO2_VALID_MIN, TEMP_LIMIT_CODE  # noqa: E402,F401

FORMATS = ("svg", "png", "pdf")

RC_PARAMS = {
    "svg.fonttype": "none",  # text stays text: small, searchable files
    "svg.hashsalt": "co2db",  # stable ids: same data, same file
    "font.size": 8.5,
    "font.family": "DejaVu Sans",
    "axes.titlesize": 9,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "path.simplify": True,
    "savefig.dpi": 100,
}


class CommandError(Exception):
    """A problem the user can fix (bad option, missing file): printed, exit 1."""


# ---------------------------------------------------------------------------
# Command-line plumbing


def parse_when(text: str) -> datetime:
    """Parse an ISO date or date-time (UTC, naive) for --xmin/--xmax/--now."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or date-time (e.g. 2019-08-13 or 2019-08-13T12:00)"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def add_common_plot_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every plot command."""
    parser.add_argument("--db", required=True, type=Path, help="SQLite database (read only)")
    parser.add_argument("--out", required=True, type=Path, help="output file, written atomically")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default: from the --out extension, else svg)",
    )
    parser.add_argument("--xmin", type=parse_when, metavar="DATE", help="start of the time axis (UTC)")
    parser.add_argument("--xmax", type=parse_when, metavar="DATE", help="end of the time axis (UTC)")
    parser.add_argument(
        "--min-tier",
        type=int,
        metavar="N",
        help="leave out groups whose tier is below N (and units never deployed)",
    )
    parser.add_argument(
        "--max-tier",
        type=int,
        metavar="N",
        help="leave out groups whose tier is above N (and units never deployed)",
    )
    add_now_option(parser)


def add_now_option(parser: argparse.ArgumentParser) -> None:
    """--now: pretend the current time is this (tests, reproducing an old page)."""
    parser.add_argument(
        "--now",
        type=parse_when,
        metavar="DATETIME",
        help="take this UTC time as the current time (default: the clock)",
    )


def utc_now() -> datetime:
    """The current UTC time as a naive datetime, to the second."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def output_format(out: Path, requested: str | None) -> str:
    """The --format value, else the --out extension when it is known, else svg."""
    if requested:
        return requested
    ext = out.suffix.lower().lstrip(".")
    return ext if ext in FORMATS else "svg"


def run_command(prog: str, main: Callable[[], str]) -> int:
    """Run main(), print its one-line summary with the time taken; map errors to exit 1."""
    started = time.perf_counter()
    try:
        summary = main()
    except CommandError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"{prog}: error: database: {exc}", file=sys.stderr)
        return 1
    print(f"{prog}: {summary} in {time.perf_counter() - started:.2f} s")
    return 0


def run_plot(prog: str, args, render: Callable) -> int:
    """A plot command's body: open the database read-only, draw with
    `render(conn, args, now) -> (figure, description)`, save atomically, report."""

    def run() -> str:
        fmt = output_format(args.out, args.format)
        now = args.now or utc_now()
        conn = open_db_readonly(args.db)
        try:
            fig, description = render(conn, args, now)
        finally:
            conn.close()
        size = save_figure(fig, args.out, fmt)
        return f"wrote {args.out} ({fmt}, {description}, {human_size(size)})"

    return run_command(prog, run)


def warn(message: str) -> None:
    """A problem with the data that does not stop the command."""
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------
# Database (read only)


def open_db_readonly(path: Path) -> sqlite3.Connection:
    """Open the SQLite file read-only; the pipeline's plots never write to it."""
    if not path.is_file():
        raise CommandError(f"database {path} does not exist (run the importers first, e.g. `make` in database/)")
    uri = "file:" + quote(str(path.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlite3.Error as exc:
        raise CommandError(f"cannot read database {path}: {exc}") from exc
    return conn


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    """True when the database has this table (a fresh database may have none)."""
    row = conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is not None


def distinct_units_sql(table: str) -> str:
    """A CTE `units(id)` listing a table's unit_ids by seeking its (unit_id, ...) index.

    This "loose index scan" costs one index seek per unit instead of a scan
    of the whole table, which matters with millions of rows.
    """
    return f"""
        units(id) AS (
            SELECT (SELECT min(unit_id) FROM {table})
            UNION ALL
            SELECT (SELECT min(unit_id) FROM {table} WHERE unit_id > units.id)
            FROM units WHERE units.id IS NOT NULL
        )"""


def sql_ts(when: datetime, sep: str = "T") -> str:
    """A datetime as the text the tables hold, for comparisons in SQL."""
    return when.strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def julian_day(when: datetime) -> float:
    """SQLite's julianday() of a naive UTC datetime."""
    return (when - datetime(2000, 1, 1, 12)).total_seconds() / 86400.0 + 2451545.0


# ---------------------------------------------------------------------------
# Time bins


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


# ---------------------------------------------------------------------------
# Deployments and groups


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
    status: str
    start: datetime | None
    end: datetime | None

    @property
    def group_key(self) -> str:
        """Key of the group this period's data belongs to."""
        return site_key(self.site) if self.site else unit_key(self.unit_id)

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
            )
        )
    return periods


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


def svg_id(prefix: str, key: str, taken: set[str]) -> str:
    """An XML-safe, unique element id such as panel-site-vj_re_sn_3."""
    base = prefix + re.sub(r"[^A-Za-z0-9_.-]", "_", key.replace(":", "-", 1))
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


@dataclass
class Layout:
    """Deployment groups and, per unit, which group and status a time belongs to."""

    groups: dict[str, Group]
    # unit_id -> (sorted period starts, periods in that order)
    _timelines: dict[str, tuple[list[datetime], list[Period]]]

    def locate(self, unit_id: str, when: datetime) -> tuple[str, str]:
        """(group key, status) of a unit's data point at time when."""
        timeline = self._timelines.get(unit_id)
        if timeline is None:
            return unit_key(unit_id), UNDEPLOYED
        starts, periods = timeline
        i = max(bisect.bisect_right(starts, when) - 1, 0)
        period = periods[i]
        inside = (period.start is None or period.start <= when) and (period.end is None or when < period.end)
        return period.group_key, period.status if inside else OUTSIDE

    def ordered(self) -> list[Group]:
        """Groups by tier (higher first; no tier last), then by label."""
        return sorted(
            self.groups.values(),
            key=lambda g: (g.tier is None, -(g.tier or 0), natural_key(g.label), g.key),
        )


def natural_key(text: str) -> list:
    """Sort key putting site_2 before site_10."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text)]


def build_layout(periods: Sequence[Period]) -> Layout:
    """Groups from the deployment periods; units of the data are added with add_data_unit()."""
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


def select_groups(
    layout: Layout,
    with_data: Iterable[str],
    xmin: datetime,
    xmax: datetime,
    min_tier: int | None,
    max_tier: int | None,
) -> list[Group]:
    """Groups to draw: with data in range, or with a period overlapping it; tier-filtered."""
    wanted = set(with_data)
    chosen = []
    for group in layout.ordered():
        if not tier_allowed(group.tier, min_tier, max_tier):
            continue
        if group.key in wanted or any(p.overlaps(xmin, xmax) for p in group.periods):
            chosen.append(group)
    return chosen


def status_colours(status: str) -> tuple[str, str]:
    """(strong, pale) colours of a deployment status."""
    return STATUS_STYLE.get(status, OTHER_STATUS_STYLE)


# ---------------------------------------------------------------------------
# Time range


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


def parse_db_ts(text: str | None) -> datetime | None:
    """A time as stored in the tables ('YYYY-MM-DD HH:MM:SS' or ISO with T) or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Matplotlib


def new_figure(width_in: float, height_in: float):
    """A Figure not registered with pyplot (no global state, no GUI)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: the pipeline runs from cron, without a display
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(RC_PARAMS)
    return Figure(figsize=(width_in, height_in))


def date_axis(ax) -> None:
    """Readable date ticks at any span."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False))


def save_figure(fig, out: Path, fmt: str) -> int:
    """Write the figure to out atomically (temp file, then rename); return its size."""
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}[fmt]
    return write_atomically(out, lambda f: fig.savefig(f, format=fmt, metadata=metadata))


def write_atomically(out: Path, write: Callable[[object], None]) -> int:
    """Call write(binary file) on a temp file beside out, then rename it over out.

    The server may be serving out at this moment: it sees the old file or the
    new one, never half of one. Returns the size written.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            size = f.tell()
        # mkstemp makes the file private; the web server must be able to read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, out)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    return size


def human_size(size: int) -> str:
    """'12.3 kB'."""
    for unit in ("B", "kB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


def top_legend(fig, handles: list, top_in: float, height_in: float) -> None:
    """One row of legend entries `top_in` inches below the top of the figure."""
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.005, 1 - top_in / height_in),
        ncols=len(handles),
        fontsize=7.5,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.2,
    )
