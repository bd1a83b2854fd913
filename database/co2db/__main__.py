"""The pipeline's command line: `python -m co2db <subcommand> ...`.

The Makefile calls one subcommand per input kind; each prints one summary
line on stdout (progress of long runs goes to stderr).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from . import db
from .import_deployments import import_deployments
from .import_errors import import_errors
from .import_pings import import_pings
from .import_readings import import_readings
from .incremental import DEFAULT_UNIT_PATTERN


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m co2db",
        description="Import the CO2 units' data into SQLite (see database/README.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", required=True, type=Path, help="the SQLite database file")
        p.add_argument(
            "--marker",
            type=Path,
            help="file to touch when the import changed the database (for make)",
        )
        return p

    for name, what in (("import-readings", "readings"), ("import-errors", "error logs")):
        p = add(name, f"import new lines of the units' {what}")
        p.add_argument("--data-dir", required=True, type=Path, help="DATA_DIR")
        p.add_argument(
            "--unit-pattern",
            default=DEFAULT_UNIT_PATTERN,
            help="regular expression for hardware-ID folder names (default %(default)s)",
        )
    p = add("import-pings", "import new lines of the pings logs")
    p.add_argument("--pings-dir", type=Path, help="PINGS_DIR (the server's var/pings)")
    p.add_argument("--data-dir", type=Path, help="DATA_DIR (for server-*/var/pings copies)")
    p = add("import-deployments", "re-import the deployments file when it changed")
    p.add_argument("--tsv", type=Path, help="DEPLOY_DURATIONS_TIERED_TSV (may be missing)")
    p.add_argument("--data-dir", type=Path, help="DATA_DIR (to name the file in rejected_lines)")
    p = add("import", "all four imports in one process (what make runs)")
    p.add_argument("--data-dir", required=True, type=Path, help="DATA_DIR")
    p.add_argument(
        "--unit-pattern",
        default=DEFAULT_UNIT_PATTERN,
        help="regular expression for hardware-ID folder names (default %(default)s)",
    )
    p.add_argument("--pings-dir", type=Path, help="PINGS_DIR (the server's var/pings)")
    p.add_argument("--deploy-tsv", type=Path, help="DEPLOY_DURATIONS_TIERED_TSV")
    p.add_argument(
        "--marker-dir",
        type=Path,
        help="folder of the markers readings, errors, pings, deployments (for make)",
    )
    add(
        "reset",
        "forget everything imported except pings (the next import reads all files again)",
    )
    return parser


def import_all(conn: sqlite3.Connection, args: argparse.Namespace) -> str:
    """Run the four importers; return their summary lines."""
    markers = args.marker_dir

    def marker(name: str) -> Path | None:
        return None if markers is None else markers / name

    lines = [
        import_readings(conn, args.data_dir, args.unit_pattern, marker("readings")),
        import_errors(conn, args.data_dir, args.unit_pattern, marker("errors")),
        import_pings(conn, args.pings_dir, args.data_dir, marker("pings")),
        import_deployments(conn, args.deploy_tsv, args.data_dir, marker("deployments")),
    ]
    return "\n".join(lines)


def reset(conn: sqlite3.Connection) -> str:
    """Empty the imported tables and the bookkeeping; pings stay (the server's)."""
    with db.transaction(conn):
        for table in db.RESET_TABLES:
            conn.execute(f"DELETE FROM {table}")
    return "reset: emptied " + ", ".join(db.RESET_TABLES)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command in ("import", "import-readings", "import-errors") and not args.data_dir.is_dir():
        # An empty archive is fine (nothing to import), a typo is not silent.
        print(f"{args.command}: note: data folder {args.data_dir} does not exist", file=sys.stderr)
    try:
        conn = db.connect(args.db)
    except db.DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "import":
            line = import_all(conn, args)
        elif args.command == "import-readings":
            line = import_readings(conn, args.data_dir, args.unit_pattern, args.marker)
        elif args.command == "import-errors":
            line = import_errors(conn, args.data_dir, args.unit_pattern, args.marker)
        elif args.command == "import-pings":
            line = import_pings(conn, args.pings_dir, args.data_dir, args.marker)
        elif args.command == "reset":
            line = reset(conn)
        else:
            line = import_deployments(conn, args.tsv, args.data_dir, args.marker)
    except sqlite3.OperationalError as exc:
        print(f"error: {args.command}: database {args.db}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
