"""Matplotlib figures over build summaries (each function returns a pyplot-free Figure; the caller saves or shows it).

- `resources_by_layer_figure`: one stacked bar per build and resource, one segment per layer, coloured by op type.
- `resources_vs_fps_figure`: resource totals against estimated FPS, one line per model over its builds (targets).
- `baseline_vs_psa_figure`: FPS and resources of each build relative to the first build of the same config.
"""

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from psa_finn.common.atomic_files import atomic_path
from psa_finn.reports.tables import relative_to_config_baseline

PLOT_RESOURCES = (("lut", "LUT"), ("dsp", "DSP"), ("bram18", "BRAM18"), ("uram", "URAM"))


def _shown_resources(summaries):
    """The resources to plot: LUT, DSP, BRAM18 always, URAM only when some build uses it."""
    return [(k, name) for k, name in PLOT_RESOURCES if k != "uram" or any(s.uram for s in summaries)]


def _op_type_colours(summaries) -> dict:
    op_types = sorted({layer.op_type for s in summaries for layer in s.layers})
    cmap = matplotlib.colormaps["tab20"]
    return {op: cmap(i % cmap.N) for i, op in enumerate(op_types)}


def resources_by_layer_figure(summaries, labels):
    """Stacked bars: for each resource a panel, for each build a bar made of its layers in graph order."""
    resources = _shown_resources(summaries)
    colours = _op_type_colours(summaries)
    fig = Figure(figsize=(3.2 * len(resources) + 2.5, 4.5))
    axes = fig.subplots(1, len(resources), squeeze=False)
    for ax, (key, name) in zip(axes[0], resources):
        for x, summary in enumerate(summaries):
            bottom = 0.0
            for layer in summary.layers:
                value = getattr(layer, key)
                if value:
                    ax.bar(x, value, bottom=bottom, color=colours[layer.op_type], edgecolor="white", linewidth=0.3)
                    bottom += value
        ax.set_title(name)
        ax.set_xticks(range(len(summaries)), labels, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    drawn = [op for op in colours if any(getattr(layer, key) for s in summaries for layer in s.layers
                                         if layer.op_type == op for key, _ in resources)]
    handles = [Rectangle((0, 0), 1, 1, color=colours[op]) for op in drawn]
    fig.legend(handles, drawn, loc="center right", fontsize="small", title="op type")
    fig.suptitle("Estimated resources per layer (one segment per layer; layers estimated at zero are not drawn)")
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / fig.get_figwidth(), 1))
    return fig


def _series_by_model(summaries, labels) -> dict:
    """Builds grouped by the model they compile (a build's target/folding varies within a group), FPS-sorted."""
    series = {}
    for summary, label in zip(summaries, labels, strict=True):
        series.setdefault(summary.model or label, []).append((summary, label))
    return {model: sorted(points, key=lambda p: p[0].fps) for model, points in series.items()}


def _model_name(model: str, points) -> str:
    """A legend name for a model: the folder of the model file (e.g. relu, lerp_psa) or the build label."""
    return Path(model).parent.name or points[0][1]


def resources_vs_fps_figure(summaries, labels):
    """Resource totals against estimated FPS: one line per model through its builds, points named by config."""
    resources = _shown_resources(summaries)
    fig = Figure(figsize=(4.0 * len(resources), 4.0))
    axes = fig.subplots(1, len(resources), squeeze=False)
    series = _series_by_model(summaries, labels)
    for ax, (key, name) in zip(axes[0], resources):
        for model, points in series.items():
            fps = [s.fps for s, _ in points]
            values = [getattr(s, key) for s, _ in points]
            ax.plot(fps, values, marker="o", label=_model_name(model, points))
            for (summary, label), f, v in zip(points, fps, values):
                ax.annotate(summary.config_name or label, (f, v), textcoords="offset points", xytext=(4, 4),
                            fontsize="x-small")
        ax.set_xscale("log")
        ax.set_xlabel("estimated FPS")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle("Resources against throughput")
    fig.tight_layout()
    return fig


def baseline_vs_psa_figure(summaries, labels):
    """Grouped bars per config: FPS, LUT, DSP, BRAM18 and LUT+DSP of each build over the config's first build."""
    relative = relative_to_config_baseline(summaries, labels)
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
