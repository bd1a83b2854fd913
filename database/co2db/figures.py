"""Figure helpers of the plot commands: headless matplotlib, plain field text,
status colours, the shared header pieces, and saving a plot atomically."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .cli import output_format, run_command, utc_now
from .outfiles import human_size, write_atomically
from .readonly import open_db_readonly

STATUS_STYLE = {
    # status: (strong colour for markers and lines, pale colour for bands)
    "deployed": ("#2e7d32", "#dcedc8"),
    "en_route": ("#e65100", "#ffe0b2"),
    "lab_check": ("#546e7a", "#e0e0e0"),
}
OTHER_STATUS_STYLE = ("#8d6e63", "#efebe9")  # a status not in STATUSES

RC_PARAMS = {
    "svg.fonttype": "none",  # text stays text: small, searchable files
    "svg.hashsalt": "co2db",  # stable ids: same data, same file
    # Text is never markup: a nickname `$\foo$` is drawn as written, not
    # parsed as math text (which fails on it, or draws something else).
    "text.parse_math": False,
    "text.usetex": False,
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

# Characters that cannot stand in an SVG (XML 1.0) or would break a label's line.
_NOT_PRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
MAX_LABEL_CHARS = 80


def plain_text(value: object) -> str:
    """Text from the data (nickname, hardware ID, site) as a figure may show it:
    control characters replaced by U+FFFD, very long text shortened with '…'."""
    text = _NOT_PRINTABLE.sub("\ufffd", str(value))
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def field_text(target, x: float, y: float, value: object, **kwargs):
    """Draw text that comes from the data on an Axes or Figure: plain text, never math."""
    return target.text(x, y, plain_text(value), parse_math=False, **kwargs)


def status_colours(status: str) -> tuple[str, str]:
    """(strong, pale) colours of a deployment status."""
    return STATUS_STYLE.get(status, OTHER_STATUS_STYLE)


def svg_id(prefix: str, key: str, taken: set[str]) -> str:
    """An XML-safe, unique element id such as panel-site-vj_re_sn_3."""
    base = prefix + re.sub(r"[^A-Za-z0-9_.-]", "_", key.replace(":", "-", 1))
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def left_out_note(left_out: int, shown: int) -> str:
    """What the plots and pages say about the units never deployed they leave out."""
    units = "unit" if left_out == 1 else "units"
    if not shown:
        return f"{left_out:,} {units} never deployed not shown"
    return f"{left_out:,} more {units} never deployed not shown (only the {shown} heard most recently)"


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


def save_figure(fig, out: Path, fmt: str) -> int:
    """Write the figure to out atomically (temp file, then rename); return its size."""
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}[fmt]
    return write_atomically(out, lambda f: fig.savefig(f, format=fmt, metadata=metadata))


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
