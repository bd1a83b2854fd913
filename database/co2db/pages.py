"""Render the HTML summaries the server shows, from the database and the plots.

    python -m co2db.pages --db ../var/db.sqlite3 --pub-dir ../var/pub

writes, in --pub-dir (atomically, so the server never serves half a page):

- pings_summary.html (served at /status/alive/summary): the pings chart and
  one table row per unit: nickname, site, last ping and its signal, days
  since the current deployment started, days heard since then, and the
  signal's min/mean/max since then. Units not heard for --silent-hours are
  highlighted.
- co2_summary.html (served at /data/co2/summary): the CO2 plots and each
  unit's latest reading.

Plots are linked by relative file name (the server serves them beside the
page); a plot that does not exist yet is named, not linked, and a plot whose
last run failed (a note in --failed-dir, written by the Makefile) is replaced
by a note saying so. Units never deployed are listed up to --max-undeployed,
the most recently heard first. The figures are SQL aggregates over index
ranges, one unit at a time.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from . import deployments as D
from . import readonly as R
from .cli import (
    CommandError,
    add_max_undeployed_option,
    add_now_option,
    positive_float,
    run_command,
    utc_now,
)
from .outfiles import write_atomically

PROG = "co2db.pages"
DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates_web"
PINGS_PAGE = "pings_summary.html"
CO2_PAGE = "co2_summary.html"
PINGS_PLOT = "pings_all_tiered.svg"
CO2_PLOTS = (
    ("co2_tiered_recent_hires.svg", "Last 14 days"),
    ("co2_tiered_all_hires.svg", "All data"),
)
# The server's pages (absolute paths: the pages are served under two prefixes).
NAV = (
    ("/status/alive/summary", "Pings summary"),
    ("/status/alive/recent", "Recent pings"),
    ("/data/co2/summary", "CO₂ summary"),
    ("/status/units", "Units"),
)


@dataclass
class UnitRow:
    """One line of the pings table."""

    unit_id: str
    nickname: str | None
    site: str | None
    status: str | None
    tier: int | None
    period_start: datetime | None
    last_ping: datetime | None
    last_rssi: int | None
    since: datetime | None  # the figures below count from here
    days_heard: int
    pings: int
    rssi_min: int | None
    rssi_mean: float | None
    rssi_max: int | None
    silent: bool
    now: datetime

    @property
    def days_deployed(self) -> int | None:
        if self.period_start is None:
            return None
        return (self.now - self.period_start).days

    @property
    def silence(self) -> str:
        """How long ago the last ping was: '45 min', '5.5 h', '3.2 d', 'never'."""
        if self.last_ping is None:
            return "never"
        seconds = max((self.now - self.last_ping).total_seconds(), 0)
        if seconds < 3600:
            return f"{seconds / 60:.0f} min"
        if seconds < 48 * 3600:
            return f"{seconds / 3600:.1f} h"
        return f"{seconds / 86400:.1f} d"


def ping_rows(
    conn, periods: list[D.Period], now: datetime, silent_hours: float, max_undeployed: int
) -> tuple[list[UnitRow], D.Undeployed]:
    """One row per unit that ever pinged or is in a deployment period now;
    of the units never deployed, only the max_undeployed heard most recently."""
    current = D.current_periods(periods, now)
    layout = D.build_layout(periods)
    now_ts = now.isoformat(timespec="microseconds")
    last_heard: dict[str, str | None] = {}
    has_pings = R.table_exists(conn, "pings")
    if has_pings:
        sql = f"""
            WITH RECURSIVE {R.distinct_units_sql("pings")}
            SELECT id, (SELECT max(ping_ts) FROM pings WHERE unit_id = units.id AND ping_ts <= ?)
            FROM units WHERE id IS NOT NULL"""
        last_heard = dict(conn.execute(sql, (now_ts,)).fetchall())
    undeployed = D.choose_undeployed(layout, last_heard, max_undeployed)
    units = [u for u in last_heard if layout.is_deployed(u)] + undeployed.shown
    units += [u for u in current if u not in last_heard]
    silent_after = timedelta(hours=silent_hours)
    rows = []
    for unit_id in units:
        period = current.get(unit_id)
        last_ts = last_rssi = nickname = None
        stats = (0, None, None, None, 0, None)
        if has_pings:
            last = conn.execute(
                "SELECT ping_ts, rssi_dbm, nickname FROM pings"
                " WHERE unit_id = ? AND ping_ts <= ? ORDER BY ping_ts DESC LIMIT 1",
                (unit_id, now_ts),
            ).fetchone()
            if last:
                last_ts, last_rssi, nickname = last
            start_ts = R.sql_ts(period.start) if period and period.start else ""
            stats = conn.execute(
                "SELECT count(DISTINCT substr(ping_ts, 1, 10)), min(rssi_dbm), avg(rssi_dbm),"
                " max(rssi_dbm), count(*), min(ping_ts)"
                " FROM pings WHERE unit_id = ? AND ping_ts >= ? AND ping_ts <= ?",
                (unit_id, start_ts, now_ts),
            ).fetchone()
        if not nickname and has_pings:
            found = conn.execute(
                "SELECT nickname FROM pings WHERE unit_id = ? AND nickname IS NOT NULL ORDER BY ping_ts DESC LIMIT 1",
                (unit_id,),
            ).fetchone()
            nickname = found[0] if found else None
        if period is not None and period.nickname:
            nickname = period.nickname
        last_ping = R.parse_db_ts(last_ts)
        days_heard, rssi_min, rssi_mean, rssi_max, n_pings, first_ts = stats
        since = period.start if period and period.start else R.parse_db_ts(first_ts)
        rows.append(
            UnitRow(
                unit_id=unit_id,
                nickname=nickname,
                site=period.site if period else None,
                status=period.status if period else None,
                tier=period.tier if period else None,
                period_start=period.start if period else None,
                last_ping=last_ping,
                last_rssi=last_rssi,
                since=since,
                days_heard=days_heard,
                pings=n_pings,
                rssi_min=rssi_min,
                rssi_mean=rssi_mean,
                rssi_max=rssi_max,
                silent=last_ping is None or now - last_ping > silent_after,
                now=now,
            )
        )
    rows.sort(
        key=lambda r: (
            r.tier is None,
            -(r.tier or 0),
            D.natural_key(r.site or ""),
            D.natural_key(r.nickname or ""),
            r.unit_id,
        )
    )
    return rows, undeployed


@dataclass
class ReadingRow:
    """One line of the CO2 page's table: a unit's latest reading."""

    unit_id: str
    nickname: str | None
    when: str
    co2: float | None
    temp: float | None


def latest_readings(conn, periods: list[D.Period], max_undeployed: int) -> tuple[list[ReadingRow], D.Undeployed]:
    """Each unit's latest reading (one index seek per unit); of the units never
    deployed, only the max_undeployed read most recently."""
    if not R.table_exists(conn, "co2_readings"):
        return [], D.Undeployed(shown=[], total=0)
    from .daily import TEMP_SQL, co2_mean_sql

    sql = f"""
        WITH RECURSIVE {R.distinct_units_sql("co2_readings")}
        SELECT units.id, r.nickname, r.date || ' ' || coalesce(r.time, ''), {co2_mean_sql()},
               {TEMP_SQL}
        FROM units JOIN co2_readings AS r ON r.rowid = (
            SELECT rowid FROM co2_readings WHERE unit_id = units.id AND date IS NOT NULL
            ORDER BY date DESC, time DESC LIMIT 1)
        WHERE units.id IS NOT NULL"""
    rows = {row[0]: ReadingRow(*row) for row in conn.execute(sql)}
    layout = D.build_layout(periods)
    undeployed = D.choose_undeployed(layout, {u: r.when for u, r in rows.items()}, max_undeployed)
    shown = set(undeployed.shown)
    kept = [r for u, r in rows.items() if layout.is_deployed(u) or u in shown]
    kept.sort(key=lambda r: (D.natural_key(r.nickname or "~"), r.unit_id))
    return kept, undeployed


# A note of a failed plot: its first line says when and how it failed, its
# last line is the error (the end of the plot command's stderr).
NOTE_BYTES = 8192
ERROR_CHARS = 300


def failure_note(failed_dir: Path | None, name: str) -> dict | None:
    """What the Makefile noted about plot `name` failing on its last run, or None."""
    if failed_dir is None:
        return None
    try:
        with open(failed_dir / name, "rb") as f:
            head = f.readline(200)
            f.seek(0, 2)
            f.seek(max(f.tell() - NOTE_BYTES, 0))
            tail = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"when": "", "error": f"(its note cannot be read: {exc.strerror})"}
    lines = [line.strip() for line in tail.decode("utf-8", "replace").splitlines() if line.strip()]
    error = lines[-1] if len(lines) > 1 else ""
    if len(error) > ERROR_CHARS:
        error = error[: ERROR_CHARS - 1] + "…"
    return {"when": head.decode("utf-8", "replace").strip(), "error": error}


def plot_links(pub_dir: Path, names, failed_dir: Path | None = None) -> list[dict]:
    """Plots to show: each with its relative name, whether the file exists, and
    whether its last run failed (then the page shows a note instead)."""
    return [
        {
            "file": name,
            "title": title,
            "exists": (pub_dir / name).is_file(),
            "failed": failure_note(failed_dir, name),
        }
        for name, title in names
    ]


def render_pages(
    conn,
    pub_dir: Path,
    templates: Path,
    now: datetime,
    silent_hours: float,
    max_undeployed: int,
    failed_dir: Path | None = None,
) -> list[str]:
    """Render both pages into pub_dir; return short descriptions of what was written."""
    import jinja2

    if not templates.is_dir():
        raise CommandError(f"templates folder {templates} does not exist (see --templates)")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    periods = D.load_periods(conn)
    rows, undeployed = ping_rows(conn, periods, now, silent_hours, max_undeployed)
    readings, undeployed_readings = latest_readings(conn, periods, max_undeployed)
    common = {
        "generated": now,
        "nav": NAV,
        "silent_hours": silent_hours,
    }
    pages = [
        (
            PINGS_PAGE,
            {
                **common,
                "page": "/status/alive/summary",
                "plots": plot_links(pub_dir, [(PINGS_PLOT, "Alive pings per day")], failed_dir),
                "rows": rows,
                "n_silent": sum(r.silent for r in rows),
                "undeployed": undeployed,
            },
        ),
        (
            CO2_PAGE,
            {
                **common,
                "page": "/data/co2/summary",
                "plots": plot_links(pub_dir, CO2_PLOTS, failed_dir),
                "readings": readings,
                "undeployed": undeployed_readings,
            },
        ),
    ]
    written = []
    for name, context in pages:
        try:
            html = env.get_template(name).render(**context)
        except jinja2.TemplateNotFound:
            raise CommandError(f"template {templates / name} is missing (see --templates)") from None
        except jinja2.TemplateError as exc:
            raise CommandError(f"template {name}: {exc}") from exc
        write_atomically(pub_dir / name, lambda f, html=html: f.write(html.encode("utf-8")))
        written.append(name)
    left_out = f", {undeployed.left_out:,} never deployed not shown" if undeployed.left_out else ""
    return [f"{written[0]} ({len(rows)} units{left_out})", written[1]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description=f"Render {PINGS_PAGE} and {CO2_PAGE} into the folder the server publishes.",
    )
    parser.add_argument("--db", required=True, type=Path, help="SQLite database (read only)")
    parser.add_argument("--pub-dir", required=True, type=Path, help="folder of the pages and plots (e.g. ../var/pub)")
    parser.add_argument(
        "--silent-hours",
        type=positive_float,
        default=26.0,
        metavar="H",
        help="highlight units not heard for more than H hours (default: 26)",
    )
    parser.add_argument(
        "--templates",
        type=Path,
        default=DEFAULT_TEMPLATES,
        metavar="DIR",
        help="Jinja2 templates folder (default: templates_web beside co2db)",
    )
    parser.add_argument(
        "--failed-dir",
        type=Path,
        metavar="DIR",
        help="folder of notes of plots that failed on their last run (the Makefile's FAILED_DIR): "
        "such a plot is replaced by a note saying why",
    )
    add_max_undeployed_option(parser)
    add_now_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> str:
        now = args.now or utc_now()
        conn = R.open_db_readonly(args.db)
        try:
            written = render_pages(
                conn, args.pub_dir, args.templates, now, args.silent_hours, args.max_undeployed, args.failed_dir
            )
        finally:
            conn.close()
        return f"wrote {', '.join(written)} in {args.pub_dir}"

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
