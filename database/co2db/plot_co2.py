"""Plot CO2 and temperature, one panel per deployment group.

    python -m co2db.plot_co2 --db ../var/db.sqlite3 --out ../var/pub/co2_tiered_all_hires.svg
    python -m co2db.plot_co2 --db ../var/db.sqlite3 --recent-days 14 \\
        --out ../var/pub/co2_tiered_recent_hires.svg

Each panel is a deployment group (a site, or a unit never deployed), ordered
by tier, higher first. CO2 is the mean of a reading's ten values (NULLs and
sensor-limit codes left out), averaged over time bins about one pixel wide:
a black line over a fill coloured by temperature, cold blue to warm red, on
one scale for all panels. Temperature is also drawn as a line on the right
axis. Data taken en route, in a lab check, or outside every deployment
period of the unit is drawn faded, and en_route/lab_check periods are
shaded. SQLite does the averaging; Python only sees one row per unit and bin
(the drawing is co2_panels.py).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import datetime, timedelta

from . import daily
from . import deployments as D
from . import figures as F
from . import readonly as R
from . import timebins as T
from .cli import add_common_plot_options, positive_float, positive_int
from .co2_panels import Bin, draw
from .daily import TEMP_SQL, co2_mean_sql

PROG = "co2db.plot_co2"
TARGET_BINS = 800  # about a panel's width in pixels at 100 dpi


def readings_units(conn) -> dict[str, tuple[str | None, str | None, str | None]]:
    """unit_id -> (latest nickname, first 'date time', last 'date time'), by index seeks."""
    if not R.table_exists(conn, "co2_readings"):
        return {}
    sql = f"""
        WITH RECURSIVE {R.distinct_units_sql("co2_readings")}
        SELECT id,
            (SELECT nickname FROM (
                SELECT nickname FROM co2_readings WHERE unit_id = units.id
                ORDER BY date DESC, time DESC LIMIT 500) WHERE nickname IS NOT NULL LIMIT 1),
            (SELECT date || ' ' || coalesce(time, '00:00:00') FROM co2_readings
                WHERE unit_id = units.id AND date IS NOT NULL ORDER BY date, time LIMIT 1),
            (SELECT date || ' ' || coalesce(time, '00:00:00') FROM co2_readings
                WHERE unit_id = units.id AND date IS NOT NULL ORDER BY date DESC, time DESC LIMIT 1)
        FROM units WHERE id IS NOT NULL"""
    return {row[0]: row[1:] for row in conn.execute(sql)}


def readings_extent(units: dict) -> tuple[datetime | None, datetime | None]:
    firsts = [R.parse_db_ts(first) for _nick, first, _last in units.values()]
    lasts = [R.parse_db_ts(last) for _nick, _first, last in units.values()]
    firsts = [t for t in firsts if t]
    lasts = [t for t in lasts if t]
    return (min(firsts) if firsts else None, max(lasts) if lasts else None)


def last_read(units: dict, xmin: datetime, xmax: datetime) -> dict[str, str | None]:
    """unit_id -> its last reading time, at most xmax; None when it has none in [xmin, xmax]."""
    t0, t1 = R.sql_ts(xmin, " "), R.sql_ts(xmax, " ")
    return {
        unit_id: min(last, t1) if first and last and first <= t1 and last >= t0 else None
        for unit_id, (_nick, first, last) in units.items()
    }


def query_bins(conn, bins: T.TimeBins, xmin: datetime, xmax: datetime, unit_ids=None):
    """(unit_id, bin index, mean CO2, mean temperature, readings) per unit and bin,
    of every unit, or only of unit_ids (when thousands of units would be read)."""
    if not R.table_exists(conn, "co2_readings"):
        return []
    ts = "r.date || ' ' || coalesce(r.time, '00:00:00')"
    params = bins.sql_params() | {
        "d0": xmin.strftime("%Y-%m-%d"),
        "d1": xmax.strftime("%Y-%m-%d"),
        "t0": R.sql_ts(max(xmin, bins.origin), " "),
        "t1": R.sql_ts(xmax, " "),
    }
    only = ""
    if unit_ids is not None:
        params["units"] = R.units_param(unit_ids)
        only = " AND unit_id IN (SELECT value FROM json_each(:units))"
    day_bins = bins.width.total_seconds() % 86400 == 0 and bins.origin.time() == datetime.min.time()
    # Sums per (unit_id, date), then days into bins: sum / count, weighted by
    # readings (never a mean of daily means).
    days_into_bins = f"""
            SELECT unit_id, {bins.sql_index("date")} AS b,
                   sum(co2_sum) / nullif(sum(co2_n), 0), sum(temp_sum) / nullif(sum(temp_n), 0),
                   sum(n)
            FROM ({{days}})
            GROUP BY unit_id, b"""
    if day_bins and daily.is_built(conn):
        # Whole-day bins (long ranges): the importer's daily sums, one row
        # per unit and day instead of every reading.
        sql = days_into_bins.format(
            days="SELECT unit_id, date, n, co2_sum, co2_n, temp_sum, temp_n FROM co2_daily"
            " WHERE date BETWEEN :d0 AND :d1" + only
        )
    elif day_bins:
        # The same from the readings (a database without co2_daily): group by
        # (unit_id, date) first, which follows the (unit_id, date, time) index,
        # so SQLite aggregates while scanning instead of sorting millions of rows.
        sql = days_into_bins.format(days=daily.daily_select("WHERE r.date BETWEEN :d0 AND :d1" + only))
    else:
        # The units CTE drives one index range scan per unit over (unit_id, date).
        sql = f"""
            WITH RECURSIVE {R.distinct_units_sql("co2_readings") if unit_ids is None else R.listed_units_sql()}
            SELECT r.unit_id, {bins.sql_index(ts)} AS b, avg({co2_mean_sql()}), avg({TEMP_SQL}),
                   count(*)
            FROM units JOIN co2_readings AS r ON r.unit_id = units.id
            WHERE r.date BETWEEN :d0 AND :d1 AND {ts} >= :t0 AND {ts} <= :t1
            GROUP BY r.unit_id, b"""
    return [
        row
        for row in conn.execute(sql, params)
        if row[0] is not None and row[1] is not None and 0 <= row[1] < bins.count
    ]


def render(conn, args: argparse.Namespace, now: datetime):
    """Build the figure; return (figure, description)."""
    periods = D.load_periods(conn)
    layout = D.build_layout(periods)
    units = readings_units(conn)
    if args.recent_days:
        xmax = args.xmax or now
        xmin = args.xmin or xmax - timedelta(days=args.recent_days)
        xmin, xmax = T.default_range((xmin, xmax), periods, now, xmin, xmax)
        title = f"CO₂ and temperature, last {args.recent_days} days"
    else:
        xmin, xmax = T.default_range(readings_extent(units), periods, now, args.xmin, args.xmax)
        title = "CO₂ and temperature, all data"
    bins = T.choose_bins(xmin, xmax, TARGET_BINS)
    # Units never deployed: only the most recently heard get a panel.
    heard = last_read(units, xmin, xmax) if D.tier_allowed(None, args.min_tier, args.max_tier) else {}
    undeployed = D.choose_undeployed(layout, heard, args.max_undeployed)
    shown = None
    if undeployed.left_out:
        shown = {unit_id for unit_id in units if layout.is_deployed(unit_id)} | set(undeployed.shown)

    series: dict[str, dict[str, list[Bin]]] = defaultdict(lambda: defaultdict(list))
    half = bins.width / 2
    n_readings = 0
    for unit_id, index, co2, temp, count in query_bins(conn, bins, xmin, xmax, shown):
        if shown is not None and unit_id not in shown:
            continue
        key, status = layout.locate(unit_id, bins.start_of(index) + half)
        D.group_for_data(layout, key, unit_id, units.get(unit_id, (None,))[0])
        series[key][unit_id].append(Bin(index, co2, temp, count, status))
        n_readings += count
    groups = D.select_groups(layout, series, xmin, xmax, args.min_tier, args.max_tier, undeployed)
    note = F.left_out_note(undeployed.left_out, len(undeployed.shown)) if undeployed.left_out else None
    fig = draw(groups, series, bins, xmin, xmax, now, title, args.co2_max, n_readings, note)
    panels = f"{len(groups)} panels"
    if undeployed.left_out:
        panels += f" ({len(undeployed.shown)} of {undeployed.total:,} never deployed)"
    return fig, f"{panels}, {n_readings} readings in bins of {T.describe_width(bins.width)}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Plot CO2 (mean of each reading's ten values) and temperature, one panel "
        "per deployment group, ordered by tier.",
        epilog="Units never deployed have no tier: they are shown unless --min-tier or "
        "--max-tier is given. Sensor-limit codes (CO2 0 or 200010, temperature 85.0) are "
        "left out of the means.",
    )
    add_common_plot_options(parser)
    parser.add_argument(
        "--recent-days",
        type=positive_int,
        metavar="N",
        help="show the last N days up to now (or --xmax) instead of all data",
    )
    parser.add_argument(
        "--co2-max",
        type=positive_float,
        metavar="PPM",
        help="top of every CO2 axis (higher values are clipped); default: each panel's data",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return F.run_plot(PROG, build_parser().parse_args(argv), render)


if __name__ == "__main__":
    sys.exit(main())
