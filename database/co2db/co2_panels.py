"""The CO2 figure: one panel per deployment group, in one matplotlib axes.

CO2 is a black line over a fill coloured by temperature (cold blue to warm
red, one scale for all panels), temperature a line on the right axis; data
taken en route, in a lab check or outside every deployment period is faded,
and en_route/lab_check periods are shaded. plot_co2 queries the bins; this
module only draws them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from . import deployments as D
from . import figures as F
from . import timebins as T

PANEL_INCHES = 1.05
GAP_INCHES = 0.14
MAX_GAP = timedelta(hours=3)  # a longer silence breaks the line
TEMP_CMAP = "coolwarm"
CO2_LINE = "#1a1a1a"
TEMP_LINE = "#6a1b9a"
NO_TEMP_FILL = "#b0bec5"


@dataclass
class Bin:
    """One time bin of one unit: mean CO2 and temperature, readings, deployment status."""

    index: int
    co2: float | None
    temp: float | None
    count: int
    status: str


def temperature_norm(series, groups):
    """One colour scale for all panels, centred on 0 °C (freezing)."""
    from matplotlib.colors import TwoSlopeNorm

    temps = sorted(
        b.temp for g in groups for unit_bins in series.get(g.key, {}).values()
        for b in unit_bins if b.temp is not None
    )  # fmt: skip
    lo, hi = -10.0, 10.0
    if temps:
        # Ignore the extreme 1 % so one odd bin cannot wash out every colour.
        k = len(temps) // 100
        lo, hi = min(temps[k], lo), max(temps[-1 - k], hi)
        lo, hi = min(lo, -1.0), max(hi, 1.0)
    return TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)


def split_runs(unit_bins: list[Bin], gap_bins: int) -> list[list[Bin]]:
    """Consecutive bins of one unit with one look (faded or not) and no long gap.

    A gap is long when it is longer than gap_bins and than three times the
    unit's usual spacing (a unit reading every 6 hours is not "silent" between
    readings when bins are 30 minutes).
    """
    ordered = sorted((b for b in unit_bins if b.co2 is not None), key=lambda b: b.index)
    steps = sorted(b.index - a.index for a, b in zip(ordered, ordered[1:], strict=False))
    if steps:
        gap_bins = max(gap_bins, 3 * steps[len(steps) // 2])
    runs: list[list[Bin]] = []
    for b in ordered:
        faded = b.status in D.SUBDUED
        if runs:
            last = runs[-1][-1]
            if b.index - last.index <= gap_bins and (last.status in D.SUBDUED) == faded:
                runs[-1].append(b)
                continue
        runs.append([b])
    return runs


def co2_limits(values: list[float], co2_max: float | None) -> tuple[float, float]:
    """y-limits of a panel: the data with a margin, capped at --co2-max."""
    if not values:
        return 0.0, co2_max or 1000.0
    lo, hi = min(values), max(values)
    if co2_max is not None:
        hi = min(hi, co2_max)
        lo = min(lo, co2_max * 0.9)
    margin = max((hi - lo) * 0.08, 10.0)
    lo = max(0.0, lo - margin)
    hi = co2_max if co2_max is not None else hi + margin
    if hi <= lo:
        hi = lo + 20.0
    return lo, hi


def nice_ticks(lo: float, hi: float, nbins: int = 3) -> list[float]:
    """A few round values within [lo, hi] for a panel's scale."""
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    return [t for t in ticks if lo <= t <= hi]


def draw(groups, series, bins, xmin, xmax, now, title, co2_max, n_readings, note=None):
    """Header (title, legend, colour scale) and one panel per group, sharing the time axis.

    All panels live in ONE matplotlib axes, each in its own band of y (panel
    i spans [base, base + 1]; CO2 and temperature are scaled into it and the
    panel draws its own two scales). Axes are the costly part of a figure:
    one per panel (two with a twin temperature axis) took seconds at a
    hundred panels, one for all takes a fraction of that.
    """
    import matplotlib
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Polygon, Rectangle
    from matplotlib.transforms import blended_transform_factory

    n = len(groups)
    width_in, left_in, right_in = 12.0, 0.8, 0.8
    header_in, footer_in = 1.5 + (0.2 if note else 0.0), 0.45
    gap = GAP_INCHES / PANEL_INCHES  # in panel heights
    body_in = max(n * (PANEL_INCHES + GAP_INCHES) - GAP_INCHES, 1.2)
    height_in = header_in + body_in + footer_in
    fig = F.new_figure(width_in, height_in)
    cmap = matplotlib.colormaps[TEMP_CMAP].with_extremes(bad=NO_TEMP_FILL)
    norm = temperature_norm(series, groups)

    fig.text(0.01, 1 - 0.22 / height_in, title, fontsize=12, fontweight="bold", va="center")
    fig.text(
        0.01,
        1 - 0.45 / height_in,
        f"{xmin:%Y-%m-%d %H:%M} – {xmax:%Y-%m-%d %H:%M} UTC · mean of bins of "
        f"{T.describe_width(bins.width)} · panels by tier, higher first · "
        f"generated {now:%Y-%m-%d %H:%M} UTC",
        fontsize=8.5,
        color="#455a64",
        va="center",
    )
    handles = [
        Line2D([], [], color=CO2_LINE, linewidth=1.0, label="CO₂ (ppm, left scale)"),
        Line2D([], [], color=TEMP_LINE, linewidth=0.8, label="temperature (°C, right scale)"),
        Patch(facecolor=NO_TEMP_FILL, label="fill: no temperature"),
        Line2D([], [], color=CO2_LINE, alpha=0.3, linewidth=1.0, label="faded: not deployed"),
    ]
    for status in ("en_route", "lab_check"):
        handles.append(Patch(facecolor=F.status_colours(status)[1], label=status.replace("_", " ")))
    F.top_legend(fig, handles, 0.6, height_in)
    if note:
        fig.text(0.01, 1 - 1.32 / height_in, note, fontsize=8.5, color="#b71c1c", va="center", gid="left-out")
    cax = fig.add_axes((0.015, 1 - 1.0 / height_in, 3.2 / width_in, 0.09 / height_in))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
    bar.ax.tick_params(labelsize=7, length=2)
    bar.outline.set_linewidth(0.4)
    fig.text(
        0.01 + 3.3 / width_in,
        1 - 0.955 / height_in,
        "fill colour: temperature (°C), one scale for all panels",
        fontsize=7.5,
        va="center",
    )

    axes_w = (width_in - left_in - right_in) / width_in
    ax = fig.add_axes((left_in / width_in, footer_in / height_in, axes_w, body_in / height_in))
    ax.set_gid("co2-panels")
    x0, x1 = mdates.date2num(xmin), mdates.date2num(xmax)
    top = max(n * (1 + gap) - gap, 1.0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(0, top)
    F.date_axis(ax)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7, top=n > 0, labeltop=n > 0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    left = blended_transform_factory(ax.transAxes, ax.transData)
    tick_len = 0.004  # in axes widths

    if not groups or n_readings == 0:
        fig.text(
            0.5,
            (footer_in + body_in / 2) / height_in if not groups else 1 - 0.9 / height_in,
            f"No CO₂ readings between {xmin:%Y-%m-%d %H:%M} and {xmax:%Y-%m-%d %H:%M} UTC",
            ha="center",
            va="center",
            fontsize=11 if not groups else 9,
            color="#b71c1c",
            gid="no-data",
        )

    origin = mdates.date2num(bins.origin)
    bin_days = bins.width.total_seconds() / 86400.0
    gap_bins = max(3, math.ceil(MAX_GAP / bins.width))
    grid_x = [x for x in ax.xaxis.get_major_locator()() if x0 <= x <= x1]
    grid, co2_ticks, temp_ticks, now_marks = [], [], [], []
    taken: set[str] = set()
    now_x = mdates.date2num(now) if xmin <= now <= xmax else None
    label_box = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5}

    for i, group in enumerate(groups):
        base = (n - 1 - i) * (1 + gap)
        frame = Rectangle((x0, base), x1 - x0, 1.0, facecolor="none", edgecolor="#90a4ae", linewidth=0.6, zorder=4.5)
        frame.set_gid(F.svg_id("panel-", group.key, taken))
        ax.add_patch(frame)
        grid.extend(((x, base), (x, base + 1)) for x in grid_x)
        if now_x is not None:
            now_marks.append(((now_x, base), (now_x, base + 1)))

        for period in group.periods:
            if period.status in ("en_route", "lab_check") and period.overlaps(xmin, xmax):
                a = mdates.date2num(max(period.start or xmin, xmin))
                b = mdates.date2num(min(period.end or xmax, xmax))
                ax.add_patch(
                    Rectangle((a, base), b - a, 1.0, facecolor=F.status_colours(period.status)[1], lw=0, zorder=0.2)
                )

        unit_series = series.get(group.key, {})
        runs = [run for bins_ in unit_series.values() for run in split_runs(bins_, gap_bins)]
        lo, hi = co2_limits([b.co2 for run in runs for b in run], co2_max)
        temps_known = [b.temp for run in runs for b in run if b.temp is not None]
        if temps_known:
            t_lo, t_hi = min(temps_known), max(temps_known)
            pad = max((t_hi - t_lo) * 0.1, 1.0)
            t_lo, t_hi = t_lo - pad, t_hi + pad
        else:
            t_lo, t_hi = -10.0, 10.0

        def y_co2(values, lo=lo, hi=hi, base=base):
            return base + (np.clip(values, lo, hi) - lo) / (hi - lo)

        def y_temp(values, t_lo=t_lo, t_hi=t_hi, base=base):
            return base + (values - t_lo) / (t_hi - t_lo)

        for run in runs:
            faded = run[0].status in D.SUBDUED
            alpha = 0.3 if faded else 1.0
            idx = np.array([b.index for b in run], dtype=float)
            xs = origin + (idx + 0.5) * bin_days
            ys = y_co2(np.array([b.co2 for b in run], dtype=float))
            temps = np.array([np.nan if b.temp is None else b.temp for b in run], dtype=float)
            # Fill: a strip of temperature colours, one pixel per bin, clipped
            # to the area under the CO2 line (one small image per run).
            full = np.arange(run[0].index, run[-1].index + 1, dtype=float)
            known = ~np.isnan(temps)
            strip = np.interp(full, idx[known], temps[known]) if known.any() else full * np.nan
            if len(xs) == 1:
                xs_fill = np.array([xs[0] - bin_days / 2, xs[0] + bin_days / 2])
                ys_fill = np.array([ys[0], ys[0]])
            else:
                xs_fill, ys_fill = xs, ys
            clip = Polygon(
                np.column_stack(
                    [
                        np.concatenate([[xs_fill[0]], xs_fill, [xs_fill[-1]]]),
                        np.concatenate([[base], ys_fill, [base]]),
                    ]
                ),
                closed=True,
                facecolor="none",
                edgecolor="none",
                transform=ax.transData,
            )
            # Not added to the axes: it only clips (adding it would make
            # matplotlib walk every vertex to update the data limits).
            image = ax.imshow(
                strip[np.newaxis, :],
                extent=(origin + run[0].index * bin_days, origin + (run[-1].index + 1) * bin_days, base, base + 1),
                aspect="auto",
                origin="lower",
                cmap=cmap,
                norm=norm,
                interpolation="nearest",
                alpha=0.85 * alpha,
                zorder=1,
            )
            image.set_clip_path(clip)
            ax.plot(
                xs_fill,
                ys_fill,
                color=CO2_LINE,
                linewidth=0.9,
                alpha=alpha,
                zorder=3,
                marker="o" if len(xs) == 1 else None,
                markersize=2.5,
                markevery=[0] if len(xs) == 1 else None,
            )
            if known.any():
                ax.plot(xs, y_temp(temps), color=TEMP_LINE, linewidth=0.6, alpha=alpha, zorder=2)

        if runs:
            for value in nice_ticks(lo, hi):
                y = float(y_co2(value))
                co2_ticks.append(((-tick_len, y), (0, y)))
                ax.text(-2 * tick_len, y, f"{value:g}", transform=left, ha="right", va="center", fontsize=7)
        if temps_known:
            for value in nice_ticks(t_lo, t_hi):
                y = float(y_temp(value))
                temp_ticks.append(((1, y), (1 + tick_len, y)))
                ax.text(
                    1 + 2 * tick_len, y, f"{value:g}", transform=left, ha="left", va="center",
                    fontsize=7, color=TEMP_LINE,
                )  # fmt: skip
        if not runs:
            ax.text(
                (x0 + x1) / 2, base + 0.5, "no readings in this period", ha="center", va="center",
                color="#78909c", fontsize=8,
            )  # fmt: skip
        tier = "no tier" if group.tier is None else f"tier {group.tier}"
        F.field_text(
            ax, 0.004, base + 0.94, group.label, transform=left, ha="left", va="top",
            fontsize=8.5, fontweight="bold", bbox=label_box, zorder=5,
        )  # fmt: skip
        F.field_text(
            ax, 0.996, base + 0.94, group.nickname_label(), transform=left, ha="right", va="top",
            fontsize=8, bbox=label_box, zorder=5,
        )  # fmt: skip
        ax.text(
            -0.05, base + 0.5, tier, transform=left, rotation=90, ha="center",
            va="center", fontsize=6.5, color="#78909c",
        )  # fmt: skip

    ax.add_collection(LineCollection(grid, colors="#e0e0e0", linewidths=0.5, zorder=0.15))
    ax.add_collection(LineCollection(now_marks, colors="#c62828", linewidths=0.6, zorder=4))
    ax.add_collection(LineCollection(co2_ticks, colors="#37474f", linewidths=0.6, transform=left, clip_on=False))
    ax.add_collection(LineCollection(temp_ticks, colors=TEMP_LINE, linewidths=0.6, transform=left, clip_on=False))
    ax.set_xlim(x0, x1)
    ax.set_ylim(0, top)
    fig.text(0.004, (footer_in + body_in / 2) / height_in, "CO₂ (ppm)", rotation=90, va="center", fontsize=8)
    fig.text(
        0.996, (footer_in + body_in / 2) / height_in, "temperature (°C)", rotation=90,
        va="center", ha="right", fontsize=8, color=TEMP_LINE,
    )  # fmt: skip
    return fig
