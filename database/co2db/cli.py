"""Command-line plumbing shared by the plot and page commands: option types,
the common options, and running a command with its one-line summary.

No matplotlib here: the pages (and any command that draws nothing) use it too.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

FORMATS = ("svg", "png", "pdf")
# Units never deployed shown at most, by default (plots and pages): a pings
# table with thousands of invented hardware IDs must not make a plot of
# thousands of rows.
DEFAULT_MAX_UNDEPLOYED = 50


class CommandError(Exception):
    """A problem the user can fix (bad option, missing file): printed, exit 1."""


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


def _integer(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{value} must be at least {lowest}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(text, 0)


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
    add_max_undeployed_option(parser)
    add_now_option(parser)


def add_max_undeployed_option(parser: argparse.ArgumentParser) -> None:
    """--max-undeployed: how many units never deployed to show, most recently heard first."""
    parser.add_argument(
        "--max-undeployed",
        type=non_negative_int,
        default=DEFAULT_MAX_UNDEPLOYED,
        metavar="N",
        help="show at most N units that were never deployed, the most recently heard "
        "(default: %(default)s); how many were left out is said",
    )


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


def warn(message: str) -> None:
    """A problem with the data that does not stop the command."""
    print(f"warning: {message}", file=sys.stderr)
