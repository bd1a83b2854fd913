"""Plot on which days each unit was heard: one row per deployment group.

    python -m co2db.plot_pings --db ../var/db.sqlite3 --out ../var/pub/pings_all_tiered.svg

Rows are deployment groups (sites, or units never deployed) ordered by tier,
higher first; site names on the left, unit nicknames on the right. Each cell
is one time bin (a day, wider when the range is longer than the plot has
pixels) coloured by pings per day; the pale band behind the cells and the
markers at its ends show the deployment periods, coloured by status. Pings
are counted per unit and bin in SQL; Python only sees the counts.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from . import deployments as D
from . import figures as F
from . import readonly as R
from . import timebins as T
from .cli import add_common_plot_options

PROG = "co2db.plot_pings"
TARGET_BINS = 900  # about the axes' width in pixels at 100 dpi
ROW_INCHES = 0.2
# Pings per day -> colour class. Units ping once per communication cycle,
# normally hourly (about 24 a day).
PING_CLASSES = (
    # (lowest pings/day, label, colour)
    (0.0, "< 2", "#9ecae1"),
    (2.0, "2–5", "#6baed6"),
    (6.0, "6–11", "#3182bd"),
    (12.0, "12–23", "#08519c"),
    (24.0, "≥ 24", "#08306b"),
)


@dataclass
class PingBin:
    unit_id: str
    index: int
    count: int


def ping_extent(conn) -> tuple[datetime | None, datetime | None]:
    """First and last ping time (index seeks on pings_ts_unit)."""
    if not R.table_exists(conn, "pings"):
        return None, None
    lo, hi = conn.execute("SELECT min(ping_ts), max(ping_ts) FROM pings").fetchone()
    return R.parse_db_ts(lo), R.parse_db_ts(hi)


def last_heard(conn, xmin: datetime, xmax: datetime) -> dict[str, str | None]:
    """Every unit that ever pinged, with its last ping in [xmin, xmax] (None: none there).

    One index seek per unit: cheap for tens of thousands of hardware IDs."""
    if not R.table_exists(conn, "pings"):
        return {}
    sql = f"""
        WITH RECURSIVE {R.distinct_units_sql("pings")}
        SELECT id, (SELECT max(ping_ts) FROM pings
                    WHERE unit_id = units.id AND ping_ts >= :t0 AND ping_ts <= :t1)
        FROM units WHERE id IS NOT NULL"""
    params = {"t0": R.sql_ts(xmin), "t1": xmax.isoformat(timespec="microseconds")}
    return dict(conn.execute(sql, params).fetchall())


def unit_nicknames(conn, unit_ids) -> dict[str, str | None]:
    """These units, each with its latest non-NULL nickname in the pings."""
    if not R.table_exists(conn, "pings"):
        return {}
    sql = f"""
        WITH {R.listed_units_sql()}
        SELECT id, (SELECT nickname FROM pings
                    WHERE unit_id = units.id AND nickname IS NOT NULL
                    ORDER BY ping_ts DESC LIMIT 1)
        FROM units"""
    return dict(conn.execute(sql, {"units": R.units_param(unit_ids)}).fetchall())


def query_ping_bins(conn, bins: T.TimeBins, unit_ids) -> list[PingBin]:
    """Pings of these units per unit and (day-aligned) bin, counted by SQLite.

    One count per unit and bin, each an index range on (unit_id, ping_ts):
    about three times faster than grouping millions of pings, which sorts.
    """
    if not R.table_exists(conn, "pings"):
        return []
    width_days = int(bins.width.total_seconds() // 86400)
    sql = f"""
        WITH RECURSIVE {R.listed_units_sql()},
        edges(i, t0, t1) AS (
            SELECT 0, :t0, strftime('%Y-%m-%dT%H:%M:%S', :t0, :step)
            UNION ALL
            SELECT i + 1, t1, strftime('%Y-%m-%dT%H:%M:%S', t1, :step) FROM edges
            WHERE i + 1 < :count
        ),
        counts(unit_id, i, n) AS MATERIALIZED (
            SELECT units.id, edges.i,
                   (SELECT count(*) FROM pings
                    WHERE unit_id = units.id AND ping_ts >= edges.t0 AND ping_ts < edges.t1)
            FROM units, edges
        )
        SELECT unit_id, i, n FROM counts WHERE n > 0"""
    params = {
        "t0": R.sql_ts(bins.origin),
        "step": f"+{width_days} days",
        "count": bins.count,
        "units": R.units_param(unit_ids),
    }
    return [PingBin(u, b, n) for u, b, n in conn.execute(sql, params)]


def ping_class(per_day: float) -> int:
    """Index into PING_CLASSES."""
    index = 0
    for i, (lowest, _label, _colour) in enumerate(PING_CLASSES):
        if per_day >= lowest:
            index = i
    return index


def render(conn, args: argparse.Namespace, now: datetime):
    """Build the figure; return (figure, number of rows, description)."""
    periods = D.load_periods(conn)
    layout = D.build_layout(periods)
    xmin, xmax = T.default_range(ping_extent(conn), periods, now, args.xmin, args.xmax)
    # Cells are days: a defaulted axis shows whole days.
    if args.xmin is None:
        xmin = datetime.combine(xmin.date(), datetime.min.time())
    if args.xmax is None:
        xmax = datetime.combine(xmax.date(), datetime.min.time()) + timedelta(days=1)
    bins = T.choose_bins(xmin, xmax, TARGET_BINS, min_seconds=86400)
    # Units never deployed: only the most recently heard (thousands of
    # invented hardware IDs must not make thousands of rows).
    heard = last_heard(conn, xmin, xmax) if D.tier_allowed(None, args.min_tier, args.max_tier) else {}
    undeployed = D.choose_undeployed(layout, heard, args.max_undeployed)
    units = {p.unit_id for p in periods} | set(undeployed.shown)
    nicknames = unit_nicknames(conn, units)

    # Cells per group: (unit, bin index) -> count, each bin placed by its middle.
    cells: dict[str, list[PingBin]] = defaultdict(list)
    half = bins.width / 2
    for ping_bin in query_ping_bins(conn, bins, units):
        key, _status = layout.locate(ping_bin.unit_id, bins.start_of(ping_bin.index) + half)
        D.group_for_data(layout, key, ping_bin.unit_id, nicknames.get(ping_bin.unit_id))
        cells[key].append(ping_bin)
    groups = D.select_groups(layout, cells, xmin, xmax, args.min_tier, args.max_tier, undeployed)
    note = F.left_out_note(undeployed.left_out, len(undeployed.shown)) if undeployed.left_out else None
    fig = draw(groups, cells, bins, xmin, xmax, now, note)
    rows = f"{len(groups)} rows"
    if undeployed.left_out:
        rows += f" ({len(undeployed.shown)} of {undeployed.total:,} never deployed)"
    return fig, len(groups), f"{rows}, bins of {T.describe_width(bins.width)}"


def draw(groups, cells, bins: T.TimeBins, xmin: datetime, xmax: datetime, now: datetime, note: str | None = None):
    """Lay out the figure: header with legend, one row per group, date axis top and bottom."""
    import matplotlib.dates as mdates
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.transforms import blended_transform_factory

    n_rows = len(groups)
    width_in, left_in, right_in = 12.0, 1.9, 1.6
    header_in, footer_in = 1.05 + (0.22 if note else 0.0), 0.45
    body_in = max(n_rows, 4) * ROW_INCHES + 0.3
    height_in = header_in + body_in + footer_in
    fig = F.new_figure(width_in, height_in)
    ax = fig.add_axes(
        (
            left_in / width_in,
            footer_in / height_in,
            (width_in - left_in - right_in) / width_in,
            body_in / height_in,
        )
    )
    ax.set_gid("pings-chart")
    x0, x1 = mdates.date2num(xmin), mdates.date2num(xmax)
    ax.set_xlim(x0, x1)
    ax.set_ylim(max(n_rows, 1) - 0.5, -0.5)
    F.date_axis(ax)
    ax.tick_params(axis="x", top=True, labeltop=True)
    ax.grid(axis="x", color="#cfd8dc", linewidth=0.5, zorder=0)
    ax.set_axisbelow(True)
    for side in ("left", "right"):
        ax.spines[side].set_visible(False)

    fig.text(
        0.01,
        1 - 0.22 / height_in,
        "Alive pings per day, by deployment site",
        fontsize=12,
        fontweight="bold",
        va="center",
    )
    fig.text(
        0.01,
        1 - 0.45 / height_in,
        f"{xmin:%Y-%m-%d %H:%M} – {xmax:%Y-%m-%d %H:%M} UTC · one cell = "
        f"{T.describe_width(bins.width)} · rows by tier, higher first · "
        f"generated {now:%Y-%m-%d %H:%M} UTC",
        fontsize=8.5,
        color="#455a64",
        va="center",
    )

    bin_days = bins.width.total_seconds() / 86400.0
    origin = mdates.date2num(bins.origin)
    band_verts, band_colours = [], []
    cell_verts, cell_colours = [], []
    markers: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    taken: set[str] = set()
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for row, group in enumerate(groups):
        # The row's background carries the panel id a test (or a reader of
        # the SVG) can find: exactly one per deployment group.
        zebra = Rectangle(
            (x0, row - 0.5),
            x1 - x0,
            1.0,
            facecolor="#f4f6f7" if row % 2 else "#ffffff",
            edgecolor="none",
            zorder=0.5,
        )
        zebra.set_gid(F.svg_id("panel-", group.key, taken))
        ax.add_patch(zebra)
        for period in group.periods:
            if not period.overlaps(xmin, xmax):
                continue
            strong, pale = F.status_colours(period.status)
            start = max(period.start or xmin, xmin)
            end = min(period.end or xmax, xmax)
            a, b = mdates.date2num(start), mdates.date2num(end)
            band_verts.append(((a, row - 0.34), (b, row - 0.34), (b, row + 0.34), (a, row + 0.34)))
            band_colours.append(pale)
            if period.start is not None and xmin <= period.start <= xmax:
                xs, ys = markers[(period.status, "start")]
                xs.append(a)
                ys.append(row)
            if period.end is not None and xmin <= period.end <= xmax:
                xs, ys = markers[(period.status, "end")]
                xs.append(b)
                ys.append(row)
        # Merge neighbouring bins of one unit and one colour into one cell:
        # a unit heard every day is one rectangle, not hundreds.
        runs = []
        for cell in sorted(cells.get(group.key, ()), key=lambda c: (c.unit_id, c.index)):
            klass = ping_class(cell.count / bin_days)
            if runs and runs[-1][0] == cell.unit_id and runs[-1][2] == cell.index - 1 and (runs[-1][3] == klass):
                runs[-1][2] = cell.index
            else:
                runs.append([cell.unit_id, cell.index, cell.index, klass])
        for _unit, first, last, klass in runs:
            a = origin + first * bin_days
            b = origin + (last + 1) * bin_days
            cell_verts.append(((a, row - 0.2), (b, row - 0.2), (b, row + 0.2), (a, row + 0.2)))
            cell_colours.append(PING_CLASSES[klass][2])
        F.field_text(
            ax,
            1.008,
            row,
            group.nickname_label(),
            transform=right,
            va="center",
            ha="left",
            fontsize=8,
            clip_on=False,
        )

    ax.add_collection(PolyCollection(band_verts, facecolors=band_colours, edgecolors="none", zorder=1))
    ax.add_collection(PolyCollection(cell_verts, facecolors=cell_colours, edgecolors="none", zorder=2))
    for (status, end), (xs, ys) in sorted(markers.items()):
        strong, _pale = F.status_colours(status)
        ax.plot(
            xs,
            ys,
            linestyle="none",
            marker=">" if end == "start" else "<",
            markersize=5,
            color=strong,
            markeredgecolor="white",
            markeredgewidth=0.4,
            zorder=3,
            clip_on=False,
        )

    ax.set_yticks(range(n_rows), [F.plain_text(g.label) for g in groups])
    ax.tick_params(axis="y", length=0, labelsize=8)
    # Tier blocks: a rule between tiers and the tier number at the far left.
    previous = object()
    for row, group in enumerate(groups):
        if group.tier != previous:
            if row:
                ax.axhline(row - 0.5, color="#90a4ae", linewidth=0.7, zorder=2.5)
            ax.text(
                -left_in / (width_in - left_in - right_in) + 0.004,
                row,
                "no tier" if group.tier is None else f"tier {group.tier}",
                transform=blended_transform_factory(ax.transAxes, ax.transData),
                fontsize=7,
                color="#78909c",
                va="center",
                ha="left",
            )
            previous = group.tier

    if not groups:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            f"No pings and no deployments between {xmin:%Y-%m-%d} and {xmax:%Y-%m-%d}",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            color="#607d8b",
        )

    handles = [Patch(facecolor=c, label=f"{label} pings/day") for _l, label, c in PING_CLASSES]
    for status in D.STATUSES:
        strong, pale = F.status_colours(status)
        handles.append(
            Line2D(
                [],
                [],
                color=pale,
                linewidth=6,
                marker=">",
                markersize=5,
                markerfacecolor=strong,
                markeredgecolor=strong,
                label=status.replace("_", " "),
            )
        )
    F.top_legend(fig, handles, 0.58, height_in)
    if note:
        fig.text(0.01, 1 - 0.98 / height_in, note, fontsize=8.5, color="#b71c1c", va="center", gid="left-out")
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Plot the days each unit was heard (alive pings), one row per deployment group, ordered by tier.",
        epilog="Units never deployed have no tier: they are shown unless --min-tier or --max-tier is given.",
    )
    add_common_plot_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    def figure_and_description(conn, args, now):
        fig, _rows, description = render(conn, args, now)
        return fig, description

    return F.run_plot(PROG, build_parser().parse_args(argv), figure_and_description)


if __name__ == "__main__":
    sys.exit(main())
