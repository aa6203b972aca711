"""sweeps.pareto on hand-made tables, and the result rows, CSV, report and plot built from trial records."""

import csv
import io

import pytest

from psa_finn.reports.tables import csv_text
from psa_finn.sweeps.pareto import pareto_mask
from psa_finn.sweeps.plots import pareto_figure
from psa_finn.sweeps.results import COLUMNS, half_width_pairs, report_markdown, result_rows
from psa_finn.sweeps.search import objective_values


def test_pareto_front_of_a_hand_made_accuracy_cost_table():
    table = {"A": (90, 100), "B": (92, 150), "C": (92, 150), "D": (91, 200), "E": (85, 80), "F": (95, 300),
             "G": (None, 50), "H": (80, 100), "I": (95, 300), "J": (float("nan"), 10)}
    mask = pareto_mask(list(table.values()), ("max", "min"))
    # D is beaten by B (more accurate, cheaper), H by A (same cost, more accurate); G and J lack an accuracy;
    # equal points (B, C) and (F, I) stay on the front together.
    assert [name for name, front in zip(table, mask) if front] == ["A", "B", "C", "E", "F", "I"]


def test_pareto_front_with_three_objectives_and_mixed_senses():
    points = [(90, 100, 1000), (90, 100, 2000), (95, 200, 500), (85, 50, 100), (85, 50, 100), (84, 60, 90)]
    assert pareto_mask(points, ("max", "min", "max")) == [False, True, True, True, True, False]
    assert pareto_mask([(1, 1), (2, 2)], ("min", "min")) == [True, False]
    assert pareto_mask([], ("max",)) == []
    with pytest.raises(ValueError, match="senses must be 'max' or 'min'"):
        pareto_mask([(1,)], ("up",))
    with pytest.raises(ValueError, match="has 1 objectives, senses 2"):
        pareto_mask([(1,)], ("max", "min"))


def record(name, variant, accuracy, lut, bram18, fps, status="ok", on_hw=True, bits=8):
    return {"id": name, "status": status, "wall_s": 12.5, "error": None if status == "ok" else f"{name} broke",
            "spec": {"variant": variant, "hidden_factor": 1.0, "bits": bits, "grid_size": 64, "lowering": "auto",
                     "build_config": "unrolled", "target_fps": None, "seed": 0},
            "metrics": {} if status != "ok" else {
                "accuracy_float": accuracy + 1, "accuracy_qat": accuracy, "accuracy_lowered": accuracy, "fps": fps,
                "latency_ns": 1e4, "lut": lut - 10, "dsp": 10, "bram18": bram18, "uram": 0, "luts_plus_dsp": lut,
                "all_nodes_on_hw": on_hw, "hidden_dim": 32, "parameters": 1000}}


RECORDS = [record("r1", "relu", 90.0, 1000, 10, 5e4), record("p1", "lerp_psa", 93.0, 1200, 20, 5e4, bits=4),
           record("p2", "lerp_psa", 89.0, 1500, 8, 1e5), record("x", "lerp_psa", 99.0, 10, 1, 1e6, on_hw=False),
           record("f", "relu", None, None, None, None, status="failed")]


def test_rows_mark_the_fronts_among_trials_fully_on_hardware():
    rows = {r["id"]: r for r in result_rows(RECORDS, {"accuracy_lowered": "max", "luts_plus_dsp": "min"})}
    assert [r["id"] for r in result_rows(RECORDS, {"accuracy_lowered": "max"})] == ["x", "p1", "r1", "p2", "f"]
    assert {k for k, r in rows.items() if r["pareto_lut_dsp"]} == {"r1", "p1"}
    assert {k for k, r in rows.items() if r["pareto_bram18"]} == {"r1", "p1", "p2"}
    assert {k for k, r in rows.items() if r["pareto_fps"]} == {"p1", "p2"}
    assert rows["x"]["pareto_objectives"] is False and rows["f"]["pareto_lut_dsp"] is False
    table = list(csv.DictReader(io.StringIO(csv_text(rows.values(), COLUMNS))))
    assert list(table[0]) == list(COLUMNS) and len(table) == 5
    failed = next(r for r in table if r["id"] == "f")
    assert (failed["status"], failed["accuracy_lowered"], failed["error"]) == ("failed", "", "f broke")


def test_report_lists_fronts_trials_off_hardware_and_failures():
    rows = result_rows(RECORDS, {"accuracy_lowered": "max", "luts_plus_dsp": "min"})
    summary = {"space": "s.yaml", "dataset": "digits", "family": "resmlp", "embed_dim": 32, "depth": 2,
               "method": "grid", "ran": 3, "skipped": 2, "wall_s": 61.0, "cluster": "local Ray, 2 CPUs"}
    text = report_markdown(rows, summary, "pareto.png")
    assert "4 trial(s) ok, 1 failed. This run: 3 ran, 2 reused from earlier runs, wall time 61 s" in text
    assert "- accuracy vs luts_plus_dsp: `p1`, `r1`" in text
    assert "Not fully on hardware (left out of the Pareto sets): x." in text
    assert "- `f`: f broke" in text and "![Pareto fronts](pareto.png)" in text
    assert "| p1 | lerp_psa | 1.00 | 4 | 64 | auto | unrolled | 94.00 | 93.00 | 93.00 | 50,000 | 1,190 | 10 | 20 |" \
        in text


def test_pareto_figure_has_one_panel_per_cost_and_rings_the_front():
    fig = pareto_figure(result_rows(RECORDS, {"accuracy_lowered": "max"}), "t")
    axes = fig.get_axes()
    assert [ax.get_xlabel().split(" —")[0] for ax in axes] == ["LUT + DSP (estimate)", "BRAM18 (estimate)",
                                                                "throughput (FPS)"]
    # three trials fully on hardware per panel; the front's points are annotated with width and bits
    assert [sum(len(c.get_offsets()) for c in ax.collections) for ax in axes] == [3, 3, 3]
    assert [sorted(t.get_text() for t in ax.texts) for ax in axes] == [["h1 4b", "h1 8b"],
                                                                       ["h1 4b", "h1 8b", "h1 8b"],
                                                                       ["h1 4b", "h1 8b"]]
    assert axes[2].get_xscale() == "log"
    empty = pareto_figure([], "none")
    assert any("no finished trial" in t.get_text() for t in empty.get_axes()[1].texts)


def test_sweep_notebook_is_committed_without_outputs():
    from pathlib import Path

    import nbformat

    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "sweep.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_half_width_pairs_match_each_learnable_function_with_its_relu_twin_at_twice_the_width():
    relu_h2 = dict(record("r2", "relu", 95.0, 2000, 10, 5e4), spec=dict(RECORDS[0]["spec"], hidden_factor=2.0))
    relu_h2_4bit = dict(record("r2b4", "relu", 80.0, 900, 10, 5e4, bits=4),
                        spec=dict(RECORDS[0]["spec"], hidden_factor=2.0, bits=4))
    rows = result_rows([*RECORDS, relu_h2, relu_h2_4bit], {"accuracy_lowered": "max"})
    pairs = half_width_pairs(rows)
    # x and p2 (8-bit, h1) pair with the 8-bit ReLU at h2, p1 (4-bit) with the 4-bit one; f failed, so no pair
    assert [(p["id"], p["relu_id"]) for p in pairs] == [("x", "r2"), ("p1", "r2b4"), ("p2", "r2")]
    p1 = pairs[1]
    assert (p1["accuracy_gain"], p1["lut_dsp_ratio"], p1["reached"]) == (13.0, 1200 / 900, True)
    assert pairs[2]["reached"] is False and pairs[2]["accuracy_gain"] == -6.0
    text = report_markdown(rows, {"space": "s", "dataset": "digits", "family": "resmlp", "embed_dim": 8,
                                  "depth": 1, "method": "grid", "ran": 1, "skipped": 0, "wall_s": 1.0,
                                  "cluster": "c"}, None)
    assert "Reached in 2 of 3 pairs." in text


def test_search_objectives_read_the_same_columns_as_the_results_table():
    # wall_s lives at the top of a record, accuracy and LUT+DSP in its metrics: NSGA-II sees both, as the table does
    objectives = {"accuracy_lowered": "max", "luts_plus_dsp": "min", "wall_s": "min"}
    assert objective_values(RECORDS[0], objectives) == [90.0, 1000.0, 12.5]
    assert objective_values(RECORDS[-1], objectives) is None  # a failed trial has none
    assert objective_values({**RECORDS[0], "wall_s": None}, objectives) is None
