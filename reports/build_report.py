"""The report over build directories: `report.md`, `builds.csv` and the PNG plots, written into one folder.

`write_report` is what `build.py report` and the demo call; it returns the paths it wrote and the warnings it found.
"""

from dataclasses import dataclass, field
from pathlib import Path

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.common.output_paths import check_output_folder
from psa_finn.reports.build_summary import build_labels, load_build_summary
from psa_finn.reports.plots import (baseline_vs_psa_figure, cycles_by_layer_figure, resources_by_layer_figure,
                                    save_figure_atomic)
from psa_finn.reports.synth_check_table import synth_check_table
from psa_finn.reports.tables import (comparison_rows, config_baseline_table, csv_text, fifo_markdown, markdown_table,
                                     op_type_table, relative_to_config_baseline, reader_warnings)

REPORT_FILE = "report.md"
CSV_FILE = "builds.csv"
PLOT_FILES = {
    "resources_by_layer.png": (resources_by_layer_figure, "Estimated resources per layer"),
    "cycles_by_layer.png": (cycles_by_layer_figure, "Estimated cycles per frame of every layer (the bottleneck "
                                                    "outlined, the target's cycle budget dashed)"),
    "baseline_vs_psa.png": (baseline_vs_psa_figure, "Each build against the first build of its config"),
}


def has_comparison(summaries, labels) -> bool:
    """Whether some config holds two builds or more (else there is no build to compare with its baseline)."""
    return any(len(members) > 1 for members in relative_to_config_baseline(summaries, labels).values())


def plots_for(summaries, labels) -> list:
    """The plots that say something about these builds: the per-layer resources and cycles always; the baseline
    comparison when a config holds two builds or more."""
    names = ["resources_by_layer.png", "cycles_by_layer.png"]
    if has_comparison(summaries, labels):
        names.append("baseline_vs_psa.png")
    return names


@dataclass
class ReportFiles:
    """What `write_report` wrote, and the warnings it put in the report."""

    report: Path
    csv: Path
    plots: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def report_markdown(summaries, labels, warnings, plot_names, title: str, intro: str = "", appendix: str = "") -> str:
    """The Markdown text of the report (plots linked by file name, so they sit beside it); `intro` goes after the
    title, `appendix` at the end."""
    parts = [f"# {title}\n"]
    if intro:
        parts.append(intro.rstrip() + "\n")
    parts.append("Estimates, no Vivado synthesis (docs/hardware_numbers.md): FPS and latency are finn-plus cycle "
                 "estimates; LUT, DSP, BRAM18 and URAM come from psa-finn's resource model of every layer (each "
                 "layer's basis: `psa-finn model` or `finn-plus`), finn-plus's own figures beside them. Builds "
                 "compare within their config: the first build of each config is its baseline (in the demo: ReLU), "
                 "so a folded build is never set against an unrolled one.\n")
    parts.append(markdown_table(comparison_rows(summaries, labels)))
    if has_comparison(summaries, labels):
        parts.append("Each build against the first build of the same config (for the demo: LERP-PSA over ReLU):\n")
        parts.append(config_baseline_table(summaries, labels))
    if warnings:
        parts.append("## Warnings\n")
        parts.append("".join(f"- {w}\n" for w in warnings))
    parts.append("## Plots\n")
    parts.append("".join(f"![{PLOT_FILES[name][1]}]({name})\n\n" for name in plot_names))
    for summary, label in zip(summaries, labels):
        parts.append(f"## {label}: layers by op type\n")
        target = f"target {summary.target_fps:,} FPS" if summary.target_fps else "fixed folding"
        parts.append(f"Build directory: `{summary.path}`; model: `{summary.model or '-'}`; {target}; "
                     f"{len(summary.layers)} hardware layers.\n")
        if summary.skipped_steps:
            parts.append(f"Not run (they need Vivado): {', '.join(summary.skipped_steps)}.\n")
        parts.append(op_type_table(summary))
        if summary.fifos:
            parts.append(f"### {label}: FIFOs\n")
            parts.append(fifo_markdown(summary))
        if summary.synth_check is not None:
            parts.append(f"### {label}: yosys synthesis of the LUT layers beside the estimates\n")
            parts.append(synth_check_table(summary))
    if appendix:
        parts.append(appendix.rstrip() + "\n")
    return "\n".join(parts)


def write_report(build_dirs, out_dir, title: str = "psa-finn build report", intro: str = "",
                 appendix: str = "") -> ReportFiles:
    """Load every build directory, then write report.md, builds.csv and the plots into `out_dir`."""
    summaries = [load_build_summary(d) for d in build_dirs]
    labels = build_labels(summaries)
    out_dir = check_output_folder(out_dir)
    warnings = reader_warnings(summaries, labels)
    files = ReportFiles(report=out_dir / REPORT_FILE, csv=out_dir / CSV_FILE, warnings=warnings)
    write_text_atomic(files.csv, csv_text(comparison_rows(summaries, labels)))
    plots = plots_for(summaries, labels)
    for name in plots:
        files.plots.append(save_figure_atomic(PLOT_FILES[name][0](summaries, labels), out_dir / name))
    for name in set(PLOT_FILES) - set(plots):
        (out_dir / name).unlink(missing_ok=True)  # an earlier report's plot that no longer applies
    text = report_markdown(summaries, labels, warnings, plots, title, intro, appendix)
    write_text_atomic(files.report, text)
    return files
