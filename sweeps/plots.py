"""The sweep's Pareto plot: lowered test accuracy against LUT+DSP, BRAM18 and FPS, one panel each.

One colour per activation variant (ReLU in grey-blue, each learnable function in its own colour), one marker per
bit width; Pareto-optimal trials are ringed in black and joined by the front's staircase. Returns a pyplot-free
Figure; `reports.plots.save_figure_atomic` writes it.
"""

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from psa_finn.sweeps.results import ACCURACY, PARETO_VIEWS

VARIANT_STYLE = {"relu": ("#4c72b0", "ReLU"), "lerp_psa": ("#dd8452", "LERP-PSA"), "bspline": ("#55a868", "B-spline")}
OTHER_COLOURS = ("#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
BIT_MARKERS = {8: "o", 7: "D", 6: "s", 5: "P", 4: "^", 3: "v", 2: "X"}
AXIS_TITLES = {"luts_plus_dsp": "LUT + DSP (estimate)", "bram18": "BRAM18 (estimate)", "fps": "throughput (FPS)"}


def _style(variant, others: dict):
    if variant in VARIANT_STYLE:
        return VARIANT_STYLE[variant]
    colour = others.setdefault(variant, OTHER_COLOURS[len(others) % len(OTHER_COLOURS)])
    return colour, variant


def _front_line(points, sense: str):
    """The staircase through the Pareto points (x, accuracy), from the cheapest/fastest end."""
    points = sorted(points, reverse=(sense == "max"))
    xs, ys = [], []
    for x, y in points:
        if xs:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys


def pareto_figure(rows, title: str = "") -> Figure:
    """Three panels of accuracy against each cost over the ok trials fully on hardware."""
    shown = [r for r in rows if r["status"] == "ok" and r["all_nodes_on_hw"] and r[ACCURACY] is not None]
    fig = Figure(figsize=(15, 4.6))
    axes = fig.subplots(1, len(PARETO_VIEWS), sharey=True)
    others = {}
    for ax, (flag, (column, sense)) in zip(axes, PARETO_VIEWS.items()):
        points = [r for r in shown if r[column] is not None]
        for row in points:
            colour, _ = _style(row["variant"], others)
            ax.scatter(row[column], row[ACCURACY], s=70 if row[flag] else 36, color=colour, alpha=0.9,
                       marker=BIT_MARKERS.get(row["bits"], "o"), edgecolors="black" if row[flag] else "none",
                       linewidths=1.4, zorder=3)
        for row in points:
            if row[flag]:
                ax.annotate(f"h{row['hidden_factor']:g} {row['bits']}b", (row[column], row[ACCURACY]),
                            textcoords="offset points", xytext=(6, 4), fontsize=8)
        front = [(r[column], r[ACCURACY]) for r in points if r[flag]]
        if front:
            ax.plot(*_front_line(front, sense), color="black", linewidth=1, linestyle="--", alpha=0.6, zorder=2)
        if column == "fps" and points and min(r[column] for r in points) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(AXIS_TITLES[column] + (" — higher is better" if sense == "max" else " — lower is better"))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy of the lowered model (%)")
    variants = sorted({r["variant"] for r in shown}, key=lambda v: (v != "relu", v))
    handles = [Line2D([], [], marker="o", linestyle="", color=_style(v, others)[0], label=_style(v, others)[1])
               for v in variants]
    handles += [Line2D([], [], marker=BIT_MARKERS.get(b, "o"), linestyle="", color="grey", label=f"{b}-bit")
                for b in sorted({r["bits"] for r in shown}, reverse=True)]
    handles.append(Line2D([], [], marker="o", linestyle="--", color="black", markerfacecolor="white",
                          label="Pareto-optimal"))
    if handles and shown:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if not shown:
        axes[1].text(0.5, 0.5, "no finished trial fully on hardware yet", ha="center", va="center",
                     transform=axes[1].transAxes)
    fig.suptitle(title or "accuracy against hardware cost")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
