"""Comparison tables over build summaries: one row per build, as Markdown and as CSV, plus the warnings a reader
must see beside the numbers (totals that undercount, nodes left off hardware).

Builds compare within their config: the first build of each config (same `config_name`) is that config's baseline,
and `luts_plus_dsp_rel_baseline` is a build's LUT+DSP over its baseline's (in the demo: LERP-PSA over ReLU at the
same folding; a folded build is never compared with an unrolled one). `relative_to_config_baseline` gives the same
ratios for FPS and each resource. Resources are estimates: psa-finn's resource model (each layer's basis in
summary.json), with finn-plus's own figures beside them (`finn_*` columns).
"""

import csv
import io
import math

CSV_COLUMNS = ("build", "config_name", "baseline", "fps", "latency_ns", "lut", "dsp", "bram18", "uram",
               "luts_plus_dsp", "luts_plus_dsp_rel_baseline", "finn_lut", "finn_dsp", "finn_bram18", "finn_uram",
               "finn_luts_plus_dsp", "finn_luts_plus_dsp_rel_baseline", "all_nodes_on_hw", "path")
# relative LUT+DSP rounded to 4 decimals
CSV_CELL_FORMATS = {"luts_plus_dsp_rel_baseline": "{:.4f}", "finn_luts_plus_dsp_rel_baseline": "{:.4f}"}


def config_baselines(summaries, labels) -> list:
    """For each build, the label of its config's baseline: the first build with the same config_name."""
    first = {}
    for summary, label in zip(summaries, labels, strict=True):
        first.setdefault(summary.config_name or "build", (summary, label))
    return [first[summary.config_name or "build"] for summary in summaries]


def comparison_rows(summaries, labels) -> list:
    """One dict per build with the CSV_COLUMNS; `luts_plus_dsp_rel_baseline` (over the first build of the same
    config) is None when that baseline has no LUT+DSP."""
    if not summaries:
        raise ValueError("no build summaries to compare; pass at least one build directory")
    rows = []
    for summary, label, (base, base_label) in zip(summaries, labels, config_baselines(summaries, labels),
                                                  strict=True):
        finn, finn_base = summary.finn, base.finn
        finn_sum, finn_base_sum = finn["lut"] + finn["dsp"], finn_base["lut"] + finn_base["dsp"]
        rows.append(dict(
            build=label, config_name=summary.config_name, baseline=base_label, fps=summary.fps,
            latency_ns=summary.latency_ns, lut=summary.lut, dsp=summary.dsp, bram18=summary.bram18,
            uram=summary.uram, luts_plus_dsp=summary.luts_plus_dsp,
            luts_plus_dsp_rel_baseline=summary.luts_plus_dsp / base.luts_plus_dsp if base.luts_plus_dsp else None,
            **{f"finn_{k}": finn[k] for k in ("lut", "dsp", "bram18", "uram")}, finn_luts_plus_dsp=finn_sum,
            finn_luts_plus_dsp_rel_baseline=finn_sum / finn_base_sum if finn_base_sum else None,
            all_nodes_on_hw=summary.all_nodes_on_hw, path=str(summary.path)))
    return rows


def csv_text(rows, columns=CSV_COLUMNS, cell_formats=CSV_CELL_FORMATS) -> str:
    """The rows (dicts) as CSV with a header line of `columns`: an empty cell for None, numbers unformatted except
    where `cell_formats` names a format for the column."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else cell_formats.get(k, "{}").format(row[k]) for k in columns})
    return out.getvalue()


def _count(value) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _relative(rel) -> str:
    if rel is None:
        return "n/a"
    return f"{rel:.3f} ({(rel - 1) * 100:+.1f} %)"


def markdown_table(rows) -> str:
    """The rows as a Markdown table: FPS and latency (finn-plus cycle estimates), resource totals (estimates,
    psa-finn model), LUT+DSP against the baseline of the build's config (its first build; the baseline itself reads
    "baseline"), and finn-plus's own LUT / DSP / BRAM18 and LUT+DSP ratio beside them."""
    header = ("build", "config", "FPS", "latency (us)", "LUT", "DSP", "BRAM18", "URAM", "LUT+DSP",
              "LUT+DSP vs config baseline", "finn-plus LUT / DSP / BRAM18", "finn-plus LUT+DSP vs baseline")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        baseline = row["baseline"] == row["build"]
        relative = "baseline" if baseline else f"{_relative(row['luts_plus_dsp_rel_baseline'])} vs {row['baseline']}"
        finn_relative = "baseline" if baseline else _relative(row["finn_luts_plus_dsp_rel_baseline"])
        cells = (row["build"] + ("" if row["all_nodes_on_hw"] else " (*)"), row["config_name"] or "-",
                 f"{row['fps']:,.0f}", f"{row['latency_ns'] / 1000:,.2f}", _count(row["lut"]), _count(row["dsp"]),
                 _count(row["bram18"]), _count(row["uram"]), _count(row["luts_plus_dsp"]), relative,
                 f"{_count(row['finn_lut'])} / {_count(row['finn_dsp'])} / {_count(row['finn_bram18'])}",
                 finn_relative)
        lines.append("| " + " | ".join(cells) + " |")
    if not all(row["all_nodes_on_hw"] for row in rows):
        lines.append("")
        lines.append("(*) not every node is on hardware: the figures cover the hardware partition only.")
    return "\n".join(lines) + "\n"


def reader_warnings(summaries, labels) -> list:
    """One line per reason a build's figures need care, naming the builds it holds for: op types estimated at zero in
    every resource, op types with no LUT estimate (e.g. MVAU_rtl), a build stopped before its FIFOs and width
    converters were inserted, nodes left off hardware (totals too low), a hardware model that differs from the
    lowered QONNX model."""
    builds_by_reason = {}
    for summary, label in zip(summaries, labels, strict=True):
        for reason in _warning_reasons(summary):
            builds_by_reason.setdefault(reason, []).append(label)
    return [f"{', '.join(builds)}: {reason}" for reason, builds in builds_by_reason.items()]


def _warning_reasons(summary) -> list:
    reasons = []
    if summary.zero_estimate_ops:
        ops = set(summary.zero_estimate_ops)
        layers = sum(1 for layer in summary.layers if layer.op_type in ops)
        reasons.append(f"totals undercount: no resource model for {', '.join(sorted(ops))} ({layers} layer(s)); "
                       f"finn-plus estimates zero resources for them")
    partly_zero = _op_types_without_lut_estimate(summary)
    if partly_zero:
        reasons.append(f"LUT total undercounts: finn-plus estimates zero LUTs (but some DSP/BRAM/URAM) for every "
                       f"{', '.join(partly_zero)} layer and psa-finn has no model of it")
    if not summary.fifos and summary.fifo_sizing is None:
        reasons.append("totals hold no FIFO and no width converter: the build stopped before they were inserted and "
                       "sized (step_size_fifos_by_simulation; `build.py build` without --stop-step runs it)")
    if not summary.all_nodes_on_hw:
        nodes = ", ".join(summary.off_hw_nodes) or "see summary.json"
        reasons.append(f"not every node is on hardware ({nodes}); totals cover the hardware partition only")
    if summary.verification_mismatch:
        reasons.append(f"the hardware model differs from the lowered QONNX model: {summary.verification_mismatch} "
                       f"(summary.json verification)")
    elif summary.verification_max_abs_diff:
        reasons.append(f"the hardware model differs from the lowered QONNX model by up to "
                       f"{summary.verification_max_abs_diff:g} output codes (summary.json verification)")
    return reasons


def _op_types_without_lut_estimate(summary) -> list:
    """Op types (not already in zero_estimate_ops) whose layers all have a zero LUT estimate but other resources."""
    by_op = {}
    for layer in summary.layers:
        by_op.setdefault(layer.op_type, []).append(layer)
    return sorted(op for op, layers in by_op.items()
                  if op not in summary.zero_estimate_ops and all(layer.lut == 0 for layer in layers)
                  and all(layer.estimate_basis == "finn-plus" for layer in layers)
                  and any(layer.dsp or layer.bram18 or layer.uram for layer in layers))


def relative_to_config_baseline(summaries, labels) -> dict:
    """{config_name: [(label, {metric: value / first build's value})]}: the first build of each config is 1.0."""
    metrics = {"FPS": lambda s: s.fps, "LUT": lambda s: s.lut, "DSP": lambda s: s.dsp,
               "BRAM18": lambda s: s.bram18, "LUT+DSP": lambda s: s.luts_plus_dsp}
    groups = {}
    for summary, label in zip(summaries, labels, strict=True):
        groups.setdefault(summary.config_name or "build", []).append((summary, label))
    relative = {}
    for config, members in groups.items():
        base = members[0][0]
        relative[config] = [
            (label, {m: (f(s) / f(base) if f(base) else float("nan")) for m, f in metrics.items()})
            for s, label in members]
    return relative


def config_baseline_table(summaries, labels) -> str:
    """Markdown table of relative_to_config_baseline: each build's figures over its config's first build."""
    relative = relative_to_config_baseline(summaries, labels)
    metrics = list(next(iter(relative.values()))[0][1])
    lines = ["| config | build | " + " | ".join(f"{m} ratio" for m in metrics) + " |",
             "|" + "---|" * (len(metrics) + 2)]
    for config, members in relative.items():
        for label, values in members:
            cells = ["n/a" if math.isnan(values[m]) else f"{values[m]:.3f}" for m in metrics]
            lines.append(f"| {config} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def op_type_table(summary) -> str:
    """Markdown table of one build's layers grouped by op type, the largest LUT+DSP first (which layers dominate):
    count, cycles of the slowest, resource sums (estimates) and their basis, share of the build's LUT+DSP, and
    finn-plus's own LUT / DSP / BRAM18 beside them."""
    groups = {}
    for layer in summary.layers:
        group = groups.setdefault(layer.op_type, dict(count=0, max_cycles=0, lut=0, dsp=0, bram18=0, uram=0,
                                                      finn_lut=0, finn_dsp=0, finn_bram18=0, basis=[]))
        group["count"] += 1
        group["max_cycles"] = max(group["max_cycles"], layer.cycles)
        finn = layer.finn_estimate or {k: getattr(layer, k) for k in ("lut", "dsp", "bram18", "uram")}
        for key in ("lut", "dsp", "bram18", "uram"):
            group[key] += getattr(layer, key)
        for key in ("lut", "dsp", "bram18"):
            group[f"finn_{key}"] += finn[key]
        if layer.estimate_basis not in group["basis"]:
            group["basis"].append(layer.estimate_basis)
    total = sum(g["lut"] + g["dsp"] for g in groups.values())
    lines = ["| op type | layers | max cycles | LUT | DSP | BRAM18 | URAM | share of LUT+DSP | basis "
             "| finn-plus LUT / DSP / BRAM18 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for op_type, g in sorted(groups.items(), key=lambda item: -(item[1]["lut"] + item[1]["dsp"])):
        share = f"{(g['lut'] + g['dsp']) / total * 100:.1f} %" if total else "n/a"
        lines.append(f"| {op_type} | {g['count']} | {g['max_cycles']:,.0f} | {_count(g['lut'])} | {_count(g['dsp'])} "
                     f"| {_count(g['bram18'])} | {_count(g['uram'])} | {share} | {', '.join(g['basis'])} "
                     f"| {_count(g['finn_lut'])} / {_count(g['finn_dsp'])} / {_count(g['finn_bram18'])} |")
    return "\n".join(lines) + "\n"


DEEPEST_FIFOS = 8


def fifo_markdown(summary, rows: int = DEEPEST_FIFOS) -> str:
    """The FIFOs of one build: totals, how they were sized, and the `rows` deepest as a table."""
    fifos = sorted(summary.fifos, key=lambda f: (-f["depth"], -f["width_bits"], f["name"]))
    totals = {key: sum(f[key] for f in fifos) for key in ("lut", "bram18", "uram")}
    sizing = summary.fifo_sizing
    how = ""
    if sizing:
        fps = "no" if sizing.get("simulated_fps") is None else f"{sizing['simulated_fps']:,.0f}"
        verdict = "deadlock-free" if sizing.get("deadlock_free") else "deadlocks"
        how = (f" Sized by {sizing.get('method')}: {sizing.get('frames')} frames at {fps} FPS simulated, {verdict}, "
               f"in {sizing.get('seconds')} s.")
    lines = [f"{len(fifos)} StreamingFIFOs, in the totals above: LUT {_count(totals['lut'])}, BRAM18 "
             f"{_count(totals['bram18'])}, URAM {_count(totals['uram'])} (finn-plus estimates of fifo.sv).{how} "
             f"The deepest:\n",
             "| FIFO | from | to | depth | width (bits) | kbit | style | LUT | BRAM18 | URAM |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f in fifos[:rows]:
        lines.append(f"| {f['name']} | {f['producer']} | {f['consumer']} | {f['depth']:,} | {f['width_bits']} | "
                     f"{f['depth'] * f['width_bits'] / 1000:,.1f} | {f.get('ram_style', '-')} | {f['lut']} | "
                     f"{f['bram18']} | {f['uram']} |")
    return "\n".join(lines) + "\n"
