"""A sweep's results at a glance: one row per trial in DIR/results.csv and results.json, the Pareto sets, and
DIR/report.md (`build.py report`-style Markdown).

Pareto sets are taken over the trials that finished with every node on the hardware, with the lowered model's test
accuracy (what the hardware computes) against each cost: LUT+DSP (min), BRAM18 (min) and FPS (max), and over the
search's own objectives. Columns `pareto_lut_dsp`, `pareto_bram18`, `pareto_fps`, `pareto_objectives` mark them.
"""

import math

from psa_finn.common.atomic_files import write_json_atomic, write_text_atomic
from psa_finn.reports.tables import csv_text
from psa_finn.sweeps.pareto import pareto_mask

SPEC_COLUMNS = ("variant", "hidden_factor", "bits", "grid_size", "lowering", "build_config", "target_fps", "seed")
NUMERIC_COLUMNS = ("accuracy_float", "accuracy_qat", "accuracy_lowered", "fps", "latency_ns", "lut", "dsp",
                   "bram18", "uram", "luts_plus_dsp", "hidden_dim", "parameters", "wall_s", "cpu_s")
ACCURACY = "accuracy_lowered"
PARETO_VIEWS = {"pareto_lut_dsp": ("luts_plus_dsp", "min"), "pareto_bram18": ("bram18", "min"),
                "pareto_fps": ("fps", "max")}
COLUMNS = ("id", "status", *SPEC_COLUMNS, *NUMERIC_COLUMNS, "all_nodes_on_hw", *PARETO_VIEWS, "pareto_objectives",
           "error")


def result_row(record: dict) -> dict:
    """One flat row of a trial record (spec settings, metrics, wall time, error)."""
    spec, metrics = record.get("spec", {}), record.get("metrics", {})
    row = {"id": record["id"], "status": record["status"], **{k: spec.get(k) for k in SPEC_COLUMNS}}
    row.update({k: metrics.get(k) for k in NUMERIC_COLUMNS if k not in ("wall_s", "cpu_s")})
    row.update(wall_s=record.get("wall_s"), cpu_s=record.get("cpu_s"), all_nodes_on_hw=metrics.get("all_nodes_on_hw"),
               error=record.get("error"))
    return row


def mark_pareto(rows: list, objectives: dict) -> list:
    """Add the Pareto columns to `rows` (in place; also returned). Only ok trials fully on hardware compete."""
    eligible = [r for r in rows if r["status"] == "ok" and r["all_nodes_on_hw"]]
    views = {name: {ACCURACY: "max", column: sense} for name, (column, sense) in PARETO_VIEWS.items()}
    views["pareto_objectives"] = dict(objectives)
    for name, view in views.items():
        mask = pareto_mask([tuple(r[c] for c in view) for r in eligible], tuple(view.values()))
        on_front = {id(r) for r, front in zip(eligible, mask) if front}
        for row in rows:
            row[name] = id(row) in on_front
    return rows


def result_rows(records, objectives: dict) -> list:
    """Rows of all `records`, ok trials first by descending lowered accuracy, then the failed ones; Pareto marked."""
    rows = [result_row(r) for r in records]
    rows.sort(key=lambda r: (r["status"] != "ok", -(r[ACCURACY] if r[ACCURACY] is not None else -math.inf), r["id"]))
    return mark_pareto(rows, objectives)


PAIR_KEYS = ("bits", "build_config", "target_fps", "seed")


def half_width_pairs(rows) -> list:
    """The paper's comparison within a sweep: every ok learnable-function trial at hidden factor h/2 with its ReLU
    twin at h (same bits, build config, target FPS and seed): accuracy gain (points) and LUT+DSP ratio."""
    ok = [r for r in rows if r["status"] == "ok"]
    relu = {(r["hidden_factor"], *(r[k] for k in PAIR_KEYS)): r for r in ok if r["variant"] == "relu"}
    pairs = []
    for row in ok:
        twin = relu.get((row["hidden_factor"] * 2, *(row[k] for k in PAIR_KEYS)))
        if row["variant"] == "relu" or twin is None or None in (row[ACCURACY], twin[ACCURACY]):
            continue
        ratio = (row["luts_plus_dsp"] / twin["luts_plus_dsp"]
                 if row["luts_plus_dsp"] is not None and twin["luts_plus_dsp"] else None)
        pairs.append({"id": row["id"], "relu_id": twin["id"], "variant": row["variant"],
                      "hidden_factor": row["hidden_factor"], "relu_hidden_factor": twin["hidden_factor"],
                      **{k: row[k] for k in ("bits", "lowering", "build_config")},
                      "accuracy": row[ACCURACY], "relu_accuracy": twin[ACCURACY],
                      "accuracy_gain": row[ACCURACY] - twin[ACCURACY], "lut_dsp_ratio": ratio,
                      "reached": row[ACCURACY] >= twin[ACCURACY]})
    return pairs


def write_results(sweep_dir, rows, summary: dict) -> None:
    """DIR/results.csv and DIR/results.json ({"sweep": summary, "trials": rows}), each written atomically."""
    write_text_atomic(sweep_dir / "results.csv", csv_text(rows, COLUMNS))
    write_json_atomic(sweep_dir / "results.json", {"sweep": summary, "trials": rows})


def _cell(value) -> str:
    """A table cell: em dash when missing, yes/no, counts with separators, two decimals below 1000."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and abs(value) < 1000:
        return f"{value:.2f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}"
    return str(value)


def _table(rows, columns) -> list:
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key)) for _, key in columns) + " |")
    return lines


TRIAL_TABLE = (("trial", "id"), ("variant", "variant"), ("h", "hidden_factor"), ("bits", "bits"),
               ("grid", "grid_size"), ("lowering", "lowering"), ("build", "build_config"),
               ("float %", "accuracy_float"), ("QAT %", "accuracy_qat"), ("lowered %", "accuracy_lowered"),
               ("FPS", "fps"), ("LUT", "lut"), ("DSP", "dsp"), ("BRAM18", "bram18"), ("URAM", "uram"),
               ("on HW", "all_nodes_on_hw"), ("wall s", "wall_s"))


PAIR_TABLE = (("variant", "variant"), ("h", "hidden_factor"), ("ReLU h", "relu_hidden_factor"), ("bits", "bits"),
              ("lowering", "lowering"), ("build", "build_config"), ("accuracy %", "accuracy"),
              ("ReLU accuracy %", "relu_accuracy"), ("gain (points)", "accuracy_gain"),
              ("LUT+DSP / ReLU's", "lut_dsp_ratio"), ("reached", "reached"))


def report_markdown(rows, summary: dict, plot_name: str | None) -> str:
    """DIR/report.md: what the sweep was, the Pareto sets, every trial, and the failures with their errors."""
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    lines = [f"# psa-finn sweep: {summary['space']}", "",
             f"{summary['dataset']}, {summary['family']} (embed {summary['embed_dim']}, depth {summary['depth']}), "
             f"{summary['method']} search; {len(ok)} trial(s) ok, {len(failed)} failed. This run: "
             f"{summary['ran']} ran, {summary['skipped']} reused from earlier runs, wall time "
             f"{summary['wall_s']:.0f} s on {summary['cluster']}.", "",
             "Accuracy is the test accuracy (%) of the lowered model, what the hardware computes. Pareto-optimal "
             "trials (fully on hardware) against each cost:", ""]
    for name, (column, _) in PARETO_VIEWS.items():
        front = [r for r in ok if r[name]]
        lines.append(f"- accuracy vs {column}: " + (", ".join(f"`{r['id']}`" for r in front) or "none"))
    lines += [""] + ([f"![Pareto fronts]({plot_name})", ""] if plot_name else [])
    pairs = half_width_pairs(rows)
    if pairs:
        reached = sum(p["reached"] for p in pairs)
        lines += ["## A learnable function at h/2 against ReLU at h", "",
                  f"Same bits, build config and seed; lowered accuracy. Reached in {reached} of {len(pairs)} "
                  f"pairs.", ""]
        lines += _table(pairs, PAIR_TABLE) + [""]
    lines += ["## Trials", ""] + _table(ok, TRIAL_TABLE) + [""]
    off_hw = [r["id"] for r in ok if not r["all_nodes_on_hw"]]
    if off_hw:
        lines += [f"Not fully on hardware (left out of the Pareto sets): {', '.join(off_hw)}.", ""]
    if failed:
        lines += ["## Failed trials", "", "Each has its error in `trials/<id>/result.json` and the output of every "
                  "stage in `trials/<id>/trial.log`; a rerun of the same sweep retries them.", ""]
        lines += [f"- `{r['id']}`: {r['error']}" for r in failed] + [""]
    return "\n".join(lines)


def write_report(sweep_dir, rows, summary: dict, plot_name: str | None) -> None:
    write_text_atomic(sweep_dir / "report.md", report_markdown(rows, summary, plot_name))
