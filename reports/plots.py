"""Matplotlib figures over build summaries (each function returns a pyplot-free Figure; the caller saves or shows it).

- `resources_by_layer_figure`: one stacked bar per build and resource, one segment per layer, coloured by op type
  (the same colour for an op type in every report), each panel on its own y scale with its unit.
- `cycles_by_layer_figure`: one panel per build, the estimated cycles per frame of each hardware layer (the
  bottleneck outlined, the cycle budget of the config's target_fps dashed): where the time goes, which the table of
  totals does not show.
- `baseline_vs_psa_figure`: FPS and resources of each build relative to the first build of the same config.
"""

import zlib
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from psa_finn.common.atomic_files import atomic_path
from psa_finn.reports.tables import relative_to_config_baseline

PLOT_RESOURCES = (("lut", "LUT"), ("dsp", "DSP"), ("bram18", "BRAM18"), ("uram", "URAM"))
RESOURCE_UNITS = {"lut": "LUTs", "dsp": "DSP slices", "bram18": "BRAM18 blocks", "uram": "URAM blocks"}
# Fixed colours of the op types of psa-finn builds (HLS and RTL variants alike), so that an op type looks the same in
# every report; any other op type gets a colour from its name (also stable).
OP_TYPE_COLOURS = {"MVAU": "tab:blue", "Thresholding": "tab:orange", "PerChannelLUT": "tab:green",
                   "ElementwiseAdd": "tab:red", "ElementwiseMul": "tab:pink", "DuplicateStreams": "tab:purple",
                   "GlobalAccPool": "tab:brown", "InnerShuffle": "tab:olive", "Reshape": "tab:cyan",
                   "StreamingDataWidthConverter": "tab:gray", "StreamingFIFO": "lightgray",
                   "LabelSelect": "gold", "ChannelwiseOp": "navy"}


def _shown_resources(summaries):
    """The resources to plot: LUT, DSP, BRAM18 always, URAM only when some build uses it."""
    return [(k, name) for k, name in PLOT_RESOURCES if k != "uram" or any(s.uram for s in summaries)]


def op_type_colour(op_type: str):
    """The colour of an op type in every plot: fixed for known ones (`MVAU_hls` and `MVAU_rtl` alike), else chosen by
    a hash of the name."""
    base = op_type.removesuffix("_hls").removesuffix("_rtl")
    if base in OP_TYPE_COLOURS:
        return OP_TYPE_COLOURS[base]
    cmap = matplotlib.colormaps["tab20b"]
    return cmap(zlib.crc32(base.encode()) % cmap.N)


def _op_type_colours(summaries) -> dict:
    return {op: op_type_colour(op) for op in sorted({layer.op_type for s in summaries for layer in s.layers})}


def resources_by_layer_figure(summaries, labels):
    """Stacked bars: for each resource a panel, for each build a bar made of its layers in graph order."""
    resources = _shown_resources(summaries)
    colours = _op_type_colours(summaries)
    fig = Figure(figsize=(3.4 * len(resources) + 2.5, 4.5))
    axes = fig.subplots(1, len(resources), squeeze=False, sharey=False)
    for ax, (key, name) in zip(axes[0], resources):
        for x, summary in enumerate(summaries):
            bottom = 0.0
            for layer in summary.layers:
                value = getattr(layer, key)
                if value:
                    ax.bar(x, value, bottom=bottom, color=colours[layer.op_type], edgecolor="white", linewidth=0.3)
                    bottom += value
        ax.set_title(name)
        ax.set_ylabel(f"estimated {RESOURCE_UNITS[key]}")
        ax.set_xticks(range(len(summaries)), labels, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    drawn = [op for op in colours if any(getattr(layer, key) for s in summaries for layer in s.layers
                                         if layer.op_type == op for key, _ in resources)]
    handles = [Rectangle((0, 0), 1, 1, color=colours[op]) for op in drawn]
    fig.legend(handles, drawn, loc="center right", fontsize="small", title="op type")
    fig.suptitle("Estimated resources per layer (one segment per layer; layers estimated at zero are not drawn)")
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / fig.get_figwidth(), 1))
    return fig


def cycles_by_layer_figure(summaries, labels):
    """Where each build's time goes: one panel per build, one bar per hardware layer in graph order (its estimated
    cycles per frame, log scale, coloured by op type), the bottleneck that sets the FPS outlined, and the cycle
    budget of the config's target_fps dashed. It shows which layer limits each build, how even its folding is and
    how far it is from its target: the table holds only totals."""
    columns = min(len(summaries), 3)
    rows = -(-len(summaries) // columns)
    colours = _op_type_colours(summaries)
    fig = Figure(figsize=(4.4 * columns + 2.5, 3.4 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, summary, label in zip(axes.flat, summaries, labels):
        layers = [layer for layer in summary.layers if layer.cycles > 0]
        cycles = [layer.cycles for layer in layers]
        bars = ax.bar(range(len(layers)), cycles, color=[colours[layer.op_type] for layer in layers])
        if layers:
            slowest = max(range(len(layers)), key=cycles.__getitem__)
            bars[slowest].set_edgecolor("black")
            bars[slowest].set_linewidth(1.5)
            if summary.target_fps:
                ax.axhline(cycles[slowest] * summary.fps / summary.target_fps, color="black", linestyle="--",
                           linewidth=0.9)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)  # from one cycle, so a bar's length reads as its share of the bottleneck's
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{label}: {summary.fps:,.0f} FPS", fontsize="medium")
        ax.set_xlabel("hardware layer (graph order)")
        ax.set_ylabel("estimated cycles per frame")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(summaries):]:
        ax.remove()
    drawn = [op for op in colours if any(layer.op_type == op and layer.cycles > 0
                                         for s in summaries for layer in s.layers)]
    handles = [Rectangle((0, 0), 1, 1, color=colours[op], label=op) for op in drawn]
    handles += [Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", linewidth=1.5,
                          label="bottleneck (sets the FPS)"),
                Line2D([], [], color="black", linestyle="--", linewidth=0.9, label="cycle budget of target_fps")]
    fig.legend(handles=handles, loc="center right", fontsize="small", title="op type")
    fig.suptitle("Estimated cycles per frame of every hardware layer (finn-plus estimates)")
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / fig.get_figwidth(), 1))
    return fig


def baseline_vs_psa_figure(summaries, labels):
    """Grouped bars per config that holds two builds or more: FPS, LUT, DSP, BRAM18 and LUT+DSP of each build over
    the config's first build (its baseline)."""
    relative = {config: members for config, members in relative_to_config_baseline(summaries, labels).items()
                if len(members) > 1}
    if not relative:
        raise ValueError("no config holds two builds: nothing to set against a baseline")
    fig = Figure(figsize=(5.5 * len(relative), 4.0))
    axes = fig.subplots(1, len(relative), squeeze=False)
    for ax, (config, members) in zip(axes[0], relative.items()):
        metrics = list(members[0][1])
        width = 0.8 / len(members)
        for i, (label, values) in enumerate(members):
            xs = [m + (i - (len(members) - 1) / 2) * width for m in range(len(metrics))]
            ax.bar(xs, [values[m] for m in metrics], width=width, label=label)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(metrics)), metrics)
        ax.set_ylabel(f"relative to {members[0][0]}")
        ax.set_title(config)
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Each build against the first build of its config (the baseline)")
    fig.tight_layout()
    return fig


def save_figure_atomic(figure, path) -> Path:
    """Save a matplotlib figure as PNG to `path` atomically; returns the path."""
    with atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)
