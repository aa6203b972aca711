"""Tests of reports/: the build-summary loader, comparison tables/CSV, warnings, plots and `build.py report`.

Build directories here are synthetic summary.json files with hand-picked numbers, so every figure the report prints
can be checked against a hand computation.
"""

import csv
import io
import json
import math

import numpy as np
import pytest

import build
from psa_finn.common.grid import grid_points
from psa_finn.reports.build_report import write_report
from psa_finn.reports.build_summary import BuildSummaryError, build_labels, load_build_summary
from psa_finn.reports.learned_functions import lerp_psa_nodes, sweep_lerp_psa_node
from psa_finn.reports.plots import cycles_by_layer_figure, op_type_colour, resources_by_layer_figure
from psa_finn.reports.synth_check_table import synth_check_table
from psa_finn.reports.tables import (comparison_rows, config_baseline_table, csv_text, markdown_table,
                            relative_to_config_baseline, reader_warnings)


def layer(name, op_type, cycles, lut, dsp=0, bram18=0, uram=0):
    return dict(name=name, op_type=op_type, cycles=cycles, lut=lut, dsp=dsp, bram18=bram18, uram=uram, PE=1, SIMD=1)


def write_build(path, layers, fps, latency_ns, config_name="unrolled", model="m/relu/lowered.onnx",
                zero_estimate_ops=(), off_hw_nodes=(), skipped_steps=(), target_fps=None, **extra):
    """A build directory whose totals are the sums of `layers` (as build_configs/summary.py writes them); its FIFOs
    sized (by default) with none deeper than a direct connection."""
    path.mkdir(parents=True)
    extra.setdefault("fifo_sizing", {"method": "cycle simulation", "deadlock_free": True})
    totals = {k: sum(entry[k] for entry in layers) for k in ("lut", "dsp", "bram18", "uram")}
    summary = dict(model=model, config=f"{config_name}.yaml", config_name=config_name, fpga_part="xcu50",
                   clk_ns=5.0, target_fps=target_fps, fps=fps, latency_ns=latency_ns,
                   max_cycles=max(entry["cycles"] for entry in layers),
                   **totals, luts_plus_dsp=totals["lut"] + totals["dsp"], all_nodes_on_hw=not off_hw_nodes,
                   off_hw_nodes=list(off_hw_nodes), host_nodes=[], layers=layers,
                   zero_estimate_ops=list(zero_estimate_ops), skipped_steps=list(skipped_steps), **extra)
    (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def two_builds(tmp_path):
    """A ReLU build (LUT+DSP 1100) and a PSA build (LUT+DSP 825 = 0.75 of it), both unrolled."""
    relu = write_build(tmp_path / "demo" / "relu" / "unrolled",
                       [layer("MVAU_rtl_0", "MVAU_rtl", 6144, 600, dsp=60, bram18=4),
                        layer("Thresholding_rtl_0", "Thresholding_rtl", 1536, 400, dsp=40, bram18=2),
                        layer("ElementwiseAdd_hls_0", "ElementwiseAdd_hls", 1536, 0)],
                       fps=32552.08, latency_ns=123450.0, zero_estimate_ops=["ElementwiseAdd_hls"])
    psa = write_build(tmp_path / "demo" / "lerp_psa" / "unrolled",
                      [layer("MVAU_rtl_0", "MVAU_rtl", 3072, 0, dsp=100, bram18=3),
                       layer("PerChannelLUT_hls_0", "PerChannelLUT_hls", 1536, 700, dsp=25, bram18=8)],
                      fps=65104.17, latency_ns=61000.0, model="m/lerp_psa/lowered.onnx")
    return relu, psa


def test_comparison_rows_and_csv_match_hand_computation(two_builds):
    summaries = [load_build_summary(d) for d in two_builds]
    labels = build_labels(summaries)
    assert labels == ["relu/unrolled", "lerp_psa/unrolled"]
    rows = comparison_rows(summaries, labels)
    assert [r["luts_plus_dsp"] for r in rows] == [1100, 825]
    assert rows[0]["luts_plus_dsp_rel_baseline"] == 1.0
    assert rows[1]["luts_plus_dsp_rel_baseline"] == pytest.approx(0.75)
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert [p["build"] for p in parsed] == labels
    assert [p["baseline"] for p in parsed] == ["relu/unrolled", "relu/unrolled"]
    assert [p["luts_plus_dsp_rel_baseline"] for p in parsed] == ["1.0000", "0.7500"]
    assert parsed[1]["lut"] == "700" and parsed[1]["dsp"] == "125" and parsed[1]["bram18"] == "11"
    assert float(parsed[0]["fps"]) == pytest.approx(32552.08)


def test_markdown_table_formats_units_and_relative_change(two_builds):
    summaries = [load_build_summary(d) for d in two_builds]
    text = markdown_table(comparison_rows(summaries, build_labels(summaries)))
    lines = text.splitlines()
    # summaries without finn-plus figures of their own (older ones) show their totals as finn-plus's
    assert lines[2] == ("| relu/unrolled | unrolled | 32,552 | 123.45 | 1,000 | 100 | 6 | 0 | 1,100 | baseline "
                        "| 1,000 / 100 / 6 | baseline |")
    assert lines[3] == ("| lerp_psa/unrolled | unrolled | 65,104 | 61.00 | 700 | 125 | 11 | 0 | 825 | 0.750 (-25.0 %) "
                        "vs relu/unrolled | 700 / 125 / 11 | 0.750 (-25.0 %) |")
    assert "(*)" not in text


def test_psa_finn_figures_and_finn_plus_figures_side_by_side(tmp_path):
    """The report shows psa-finn's estimates and finn-plus's own, each LUT+DSP ratio against its own baseline, and
    ranks op types by their share of LUT+DSP."""
    def build(name, lut, finn_lut):
        layers = [dict(layer(f"MVAU_rtl_0", "MVAU_rtl", 10, lut, dsp=20), estimate_basis="psa-finn model",
                       finn_estimate={"lut": finn_lut, "dsp": 10, "bram18": 0, "uram": 0}),
                  dict(layer("Thresholding_rtl_0", "Thresholding_rtl", 10, 80), estimate_basis="psa-finn model",
                       finn_estimate={"lut": 400, "dsp": 0, "bram18": 0, "uram": 0})]
        return write_build(tmp_path / name / "unrolled", layers, fps=1.0, latency_ns=1.0,
                           finn_totals={"lut": finn_lut + 400, "dsp": 10, "bram18": 0, "uram": 0})
    summaries = [load_build_summary(d) for d in (build("relu", 300, 0), build("psa", 100, 0))]
    rows = comparison_rows(summaries, build_labels(summaries))
    assert [r["luts_plus_dsp"] for r in rows] == [400, 200] and rows[1]["luts_plus_dsp_rel_baseline"] == 0.5
    assert [r["finn_luts_plus_dsp"] for r in rows] == [410, 410] and rows[1]["finn_luts_plus_dsp_rel_baseline"] == 1
    from psa_finn.reports.tables import op_type_table
    table = op_type_table(summaries[0]).splitlines()
    assert table[2] == "| MVAU_rtl | 1 | 10 | 300 | 20 | 0 | 0 | 80.0 % | psa-finn model | 0 / 10 / 0 |"
    assert table[3] == "| Thresholding_rtl | 1 | 10 | 80 | 0 | 0 | 0 | 20.0 % | psa-finn model | 400 / 0 / 0 |"
    # an op whose LUTs are 0 by a psa-finn model is not warned about
    assert reader_warnings(summaries, build_labels(summaries)) == []


def test_each_build_compares_with_the_first_build_of_its_own_config(tmp_path, two_builds):
    """A folded build is set against the folded baseline, never against the unrolled first build (issue 15)."""
    folded = [write_build(tmp_path / "demo" / name / "folded", [layer("MVAU_hls_0", "MVAU_hls", 100, lut, dsp=4)],
                          fps=2000.0, latency_ns=10.0, config_name="folded") for name, lut in (("relu", 96),
                                                                                               ("lerp_psa", 46))]
    summaries = [load_build_summary(d) for d in (*two_builds, *folded)]
    rows = comparison_rows(summaries, build_labels(summaries))
    assert [r["baseline"] for r in rows] == ["relu/unrolled", "relu/unrolled", "relu/folded", "relu/folded"]
    assert [r["luts_plus_dsp_rel_baseline"] for r in rows] == [1.0, 0.75, 1.0, 0.5]


def test_warnings_name_zero_estimate_ops_and_off_hardware_nodes(tmp_path, two_builds):
    off = write_build(tmp_path / "partial", [layer("MVAU_rtl_0", "MVAU_rtl", 10, 5)], fps=1.0, latency_ns=50.0,
                      off_hw_nodes=["MatMul_3 (MatMul)"])
    summaries = [load_build_summary(d) for d in (*two_builds, off)]
    labels = build_labels(summaries)
    warnings = reader_warnings(summaries, labels)
    assert len(warnings) == 3
    assert warnings[0].startswith(f"{labels[0]}: totals undercount")
    assert "ElementwiseAdd_hls (1 layer(s))" in warnings[0]
    assert warnings[1] == ("demo/lerp_psa/unrolled: LUT total undercounts: finn-plus estimates zero LUTs (but some "
                           "DSP/BRAM/URAM) for every MVAU_rtl layer and psa-finn has no model of it")
    assert warnings[2].startswith("partial: not every node is on hardware (MatMul_3 (MatMul))")
    table = markdown_table(comparison_rows(summaries, labels))
    assert "| partial (*) |" in table and "hardware partition only" in table


def test_warnings_name_a_build_whose_hardware_differs_from_qonnx(tmp_path):
    layers = [layer("MVAU_hls_0", "MVAU_hls", 10, 7)]
    bad = write_build(tmp_path / "mismatch", layers, fps=1.0, latency_ns=1.0, verification={"max_abs_diff": 295.0})
    good = write_build(tmp_path / "exact", layers, fps=1.0, latency_ns=1.0, verification={"max_abs_diff": 0.0})
    summaries = [load_build_summary(d) for d in (bad, good)]
    assert reader_warnings(summaries, build_labels(summaries)) == [
        "mismatch: the hardware model differs from the lowered QONNX model by up to 295 output codes (summary.json "
        "verification)"]


def test_warnings_name_a_build_stopped_before_its_fifos(tmp_path):
    """A build stopped at the estimate reports holds no width converter and no FIFO: its totals are not the design's,
    and the report says so (one that sized its FIFOs, or holds FIFOs sized by Vivado, is not warned about)."""
    layers = [layer("MVAU_hls_0", "MVAU_hls", 10, 7)]
    early = write_build(tmp_path / "early", layers, fps=1.0, latency_ns=1.0, fifo_sizing=None)
    vivado = write_build(tmp_path / "vivado", layers, fps=1.0, latency_ns=1.0, fifo_sizing=None,
                         fifos=[{"name": "StreamingFIFO_rtl_0", "depth": 32, "width_bits": 8, "lut": 12}])
    sized = write_build(tmp_path / "sized", layers, fps=1.0, latency_ns=1.0)
    summaries = [load_build_summary(d) for d in (early, vivado, sized)]
    assert reader_warnings(summaries, build_labels(summaries)) == [
        "early: totals hold no FIFO and no width converter: the build stopped before they were inserted and sized "
        "(step_size_fifos_by_simulation; `build.py build` without --stop-step runs it)"]


def test_warnings_shared_by_builds_come_once_naming_them(tmp_path):
    layers = [layer("MVAU_rtl_0", "MVAU_rtl", 10, 0, dsp=3), layer("ElementwiseAdd_hls_0", "ElementwiseAdd_hls", 10, 0)]
    dirs = [write_build(tmp_path / name, layers, fps=1.0, latency_ns=1.0, zero_estimate_ops=["ElementwiseAdd_hls"])
            for name in ("a", "b")]
    summaries = [load_build_summary(d) for d in dirs]
    assert reader_warnings(summaries, build_labels(summaries)) == [
        "a, b: totals undercount: no resource model for ElementwiseAdd_hls (1 layer(s)); finn-plus estimates zero "
        "resources for them",
        "a, b: LUT total undercounts: finn-plus estimates zero LUTs (but some DSP/BRAM/URAM) for every MVAU_rtl layer "
        "and psa-finn has no model of it"]


def relu_folded(tmp_path):
    """A folded ReLU build beside `two_builds` (LUT 50, DSP 4, no BRAM)."""
    return write_build(tmp_path / "demo" / "relu" / "folded", [layer("MVAU_hls_0", "MVAU_hls", 100, 50, dsp=4)],
                       fps=2000.0, latency_ns=10.0, config_name="folded")


def test_relative_to_config_baseline_groups_by_config(tmp_path, two_builds):
    summaries = [load_build_summary(d) for d in (*two_builds, relu_folded(tmp_path))]
    relative = relative_to_config_baseline(summaries, build_labels(summaries))
    assert list(relative) == ["unrolled", "folded"]
    (base_label, base), (psa_label, psa) = relative["unrolled"]
    assert base_label == "relu/unrolled" and all(v == 1.0 for v in base.values())
    assert psa["LUT+DSP"] == pytest.approx(0.75) and psa["DSP"] == pytest.approx(1.25)
    assert psa["FPS"] == pytest.approx(65104.17 / 32552.08) and psa["BRAM18"] == pytest.approx(11 / 6)
    (folded_label, alone), = relative["folded"]
    assert folded_label == "relu/folded" and alone["LUT"] == 1.0 and alone["DSP"] == 1.0
    assert math.isnan(alone["BRAM18"]), "no BRAM18 in the baseline: no ratio"
    lines = config_baseline_table(summaries, build_labels(summaries)).splitlines()
    assert lines[0] == "| config | build | FPS ratio | LUT ratio | DSP ratio | BRAM18 ratio | LUT+DSP ratio |"
    assert lines[3] == "| unrolled | lerp_psa/unrolled | 2.000 | 0.700 | 1.250 | 1.833 | 0.750 |"
    assert lines[4] == "| folded | relu/folded | 1.000 | 1.000 | 1.000 | n/a | 1.000 |"


def test_op_type_colours_are_the_same_in_every_report_and_panels_have_units(tmp_path, two_builds):
    summaries = [load_build_summary(d) for d in two_builds]
    both = resources_by_layer_figure(summaries, build_labels(summaries))
    psa_only = resources_by_layer_figure(summaries[1:], ["lerp_psa/unrolled"])

    def legend_colours(figure):
        legend = figure.legends[0]
        return {text.get_text(): tuple(patch.get_facecolor()) for text, patch in
                zip(legend.get_texts(), legend.get_patches())}

    assert legend_colours(psa_only)["MVAU_rtl"] == legend_colours(both)["MVAU_rtl"]
    assert op_type_colour("MVAU_rtl") == op_type_colour("MVAU_hls") != op_type_colour("PerChannelLUT_hls")
    assert op_type_colour("SomeNewOp_hls") == op_type_colour("SomeNewOp_hls")
    assert [ax.get_ylabel() for ax in both.axes] == ["estimated LUTs", "estimated DSP slices",
                                                     "estimated BRAM18 blocks"]


def test_cycles_by_layer_shows_each_builds_bottleneck_and_its_target_budget(tmp_path, two_builds):
    """One panel per build: a bar per layer of its cycles (graph order), the slowest outlined, and a dashed line at the
    cycles per frame the config's target_fps allows (max cycles * FPS / target FPS), only where there is a target."""
    slow = write_build(tmp_path / "demo" / "relu" / "slow", [layer("MVAU_hls_0", "MVAU_hls", 4000, 50),
                                                            layer("Thresholding_hls_0", "Thresholding_hls", 0, 5),
                                                            layer("MVAU_hls_1", "MVAU_hls", 1000, 20)],
                       fps=50000.0, latency_ns=10.0, config_name="slow", target_fps=200000)
    summaries = [load_build_summary(d) for d in (*two_builds, slow)]
    figure = cycles_by_layer_figure(summaries, build_labels(summaries))
    assert len(figure.axes) == 3
    expected = [[6144, 1536, 1536], [3072, 1536], [4000, 1000]]  # a layer of 0 cycles has no bar on the log axis
    for ax, cycles, summary in zip(figure.axes, expected, summaries):
        assert [p.get_height() for p in ax.patches] == cycles
        outlined = [p.get_height() for p in ax.patches if p.get_linewidth() == 1.5]
        assert outlined == [max(cycles)]
        assert ax.get_yscale() == "log" and ax.get_title().endswith(f"{summary.fps:,.0f} FPS")
    assert [len(ax.get_lines()) for ax in figure.axes] == [0, 0, 1], "a budget line only where target_fps is set"
    assert figure.axes[2].get_lines()[0].get_ydata()[0] == pytest.approx(4000 * 50000 / 200000)
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels[-2:] == ["bottleneck (sets the FPS)", "cycle budget of target_fps"]
    assert "Thresholding_hls" not in labels, "no bar drawn: no legend entry"


def test_stacked_layer_bars_add_up_to_each_layer(two_builds):
    summaries = [load_build_summary(d) for d in two_builds]
    figure = resources_by_layer_figure(summaries, build_labels(summaries))
    lut_axes = figure.axes[0]
    assert lut_axes.get_title() == "LUT"
    heights = [(round(p.get_x() + p.get_width() / 2), p.get_y(), p.get_height()) for p in lut_axes.patches]
    assert heights == [(0, 0, 600), (0, 600, 400), (1, 0, 700)], "zero-LUT layers (MVAU_rtl_0 of PSA) add no segment"


def test_synth_check_shows_yosys_beside_estimates(tmp_path):
    yosys = dict(lut=310, lutram=0, ff=40, bram18=2, uram=0, dsp=0, carry=3)
    record = {"tool": "yosys 0.23", "family": "xcup", "note": "relative figures",
              "layers": [{"name": "PerChannelLUT_rtl_0", "op_type": "PerChannelLUT_rtl", **yosys,
                          "estimate": {"lut": 120, "bram18": 2, "uram": 0, "dsp": 0},
                          "attributes": {"mode": "lerp64", "PE": 4}},
                         {"name": "PerChannelLUT_rtl_1", "op_type": "PerChannelLUT_rtl", **yosys}],
              "totals": {"yosys": {"lut": 620, "bram18": 4}, "estimate": {"lut": 240, "bram18": 4}}}
    d = write_build(tmp_path / "b", [layer("PerChannelLUT_rtl_0", "PerChannelLUT_rtl", 96, 120, bram18=2),
                                     layer("PerChannelLUT_rtl_1", "PerChannelLUT_rtl", 96, 77, bram18=1)],
                    fps=1.0, latency_ns=1.0, synth_check=record)
    lines = synth_check_table(load_build_summary(d)).splitlines()
    assert lines[0] == ("| layer | mode | PE | LUT yosys / est. | BRAM18 yosys / est. | URAM yosys / est. "
                        "| DSP yosys / est. | LUTRAM | FF | CARRY4 |")
    assert lines[2] == "| PerChannelLUT_rtl_0 | lerp64 | 4 | 310 / 120 | 2 / 2 | 0 / 0 | 0 / 0 | 0 | 40 | 3 |"
    assert lines[3] == "| PerChannelLUT_rtl_1 | - | - | 310 / 77 | 2 / 1 | 0 / 0 | 0 / 0 | 0 | 40 | 3 |", \
        "without its own estimate a layer takes the build's"
    assert lines[4] == "| **total** | - | - | 620 / 240 | 4 / 4 | - / - | - / - | - | - | - |"
    assert "- tool: yosys 0.23" in lines and "- note: relative figures" in lines


@pytest.mark.parametrize("breakage, message", [
    (None, "no such build directory"),
    ("", "no summary.json in it"),
    ("{not json", "not valid JSON"),
    (json.dumps({"fps": 1.0}), "missing key(s) latency_ns, lut"),
    (json.dumps({"fps": "fast", "latency_ns": 1, "lut": 1, "dsp": 1, "bram18": 1, "uram": 0, "all_nodes_on_hw": True,
                 "layers": [], "zero_estimate_ops": []}), "'fps' must be a number"),
    (json.dumps({"fps": 1, "latency_ns": 1, "lut": 1, "dsp": 1, "bram18": 1, "uram": 0, "all_nodes_on_hw": True,
                 "layers": [{"name": "x"}], "zero_estimate_ops": []}), "layers[0] must be an object with keys"),
    (json.dumps({"fps": 1, "latency_ns": 1, "lut": 1, "dsp": 1, "bram18": 1, "uram": 0, "all_nodes_on_hw": True,
                 "layers": [], "zero_estimate_ops": [], "target_fps": float("nan")}), "'target_fps' is nan"),
    (json.dumps({"fps": 1, "latency_ns": 1, "lut": 1, "dsp": 1, "bram18": 1, "uram": 0, "all_nodes_on_hw": True,
                 "layers": [], "zero_estimate_ops": [], "verification": {"max_abs_diff": float("nan")}}),
     "'verification.max_abs_diff' is nan"),
])
def test_bad_build_directory_gives_clear_error(tmp_path, breakage, message):
    d = tmp_path / "build"
    if breakage is not None:
        d.mkdir()
        if breakage:
            (d / "summary.json").write_text(breakage)
    with pytest.raises(BuildSummaryError, match=None) as err:
        load_build_summary(d)
    assert str(d) in str(err.value) and message in str(err.value)


def test_cli_writes_report_csv_and_plots(tmp_path, two_builds, capsys):
    out = tmp_path / "report"
    assert build.main(["report", *map(str, two_builds), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "warning: relu/unrolled: totals undercount" in printed.err
    text = (out / "report.md").read_text()
    assert "| lerp_psa/unrolled | unrolled | 65,104 |" in text and "## Warnings" in text
    for name in ("resources_by_layer.png", "cycles_by_layer.png", "baseline_vs_psa.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
    assert (out / "builds.csv").read_text() == csv_text(comparison_rows(
        [load_build_summary(d) for d in two_builds], ["relu/unrolled", "lerp_psa/unrolled"]))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.md", "builds.csv", "resources_by_layer.png", "cycles_by_layer.png", "baseline_vs_psa.png"])


def test_cli_bad_directory_exits_2_with_message(tmp_path, capsys):
    assert build.main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "missing: no such build directory" in err
    assert not (tmp_path / "r").exists()


def test_write_report_single_build_uses_its_name(tmp_path):
    d = write_build(tmp_path / "only", [layer("MVAU_hls_0", "MVAU_hls", 100, 50)], fps=10.0, latency_ns=5.0,
                    target_fps=32051, skipped_steps=[{"step": "step_hw_ipgen", "reason": "no Vivado"},
                                                     {"step": "step_create_stitched_ip", "reason": "no Vivado"}])
    files = write_report([d], tmp_path / "r")
    assert files.warnings == []
    text = files.report.read_text()
    assert "| only | unrolled | 10 | 0.01 | 50 | 0 | 0 | 0 | 50 | baseline |" in text
    assert [p.name for p in files.plots] == ["resources_by_layer.png", "cycles_by_layer.png"], \
        "one build: nothing to compare"
    assert "baseline_vs_psa.png" not in text and "](cycles_by_layer.png)" in text
    assert "target 32,051 FPS; 1 hardware layers." in text
    assert "Not run (they need Vivado): step_hw_ipgen, step_create_stitched_ip." in text
    assert "| config | build | FPS ratio |" not in text, "no ratio table for a single build"


def lerp_psa_chain(table, in_scale=0.25, out_scale=0.5, bits=4):
    """x -> Quant -> LerpPSA(table, grid range 4) -> Quant -> Relu, x [1, 3, C]."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    channels = table.shape[0]
    nodes = [helper.make_node("Quant", ["x", "si", "z", "b"], ["xq"], name="q_in", domain="qonnx.custom_op.general",
                              signed=1, narrow=0, rounding_mode="ROUND"),
             helper.make_node("LerpPSA", ["xq", "table"], ["y"], name="psa", domain="psa_finn.custom_ops",
                              grid_range=4.0),
             helper.make_node("Quant", ["y", "so", "z", "b"], ["yq"], name="q_out", domain="qonnx.custom_op.general",
                              signed=1, narrow=0, rounding_mode="ROUND"),
             helper.make_node("Relu", ["yq"], ["out"], name="relu")]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, channels])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, channels])])
    model = ModelWrapper(qonnx_make_model(graph))
    for name, value in (("si", in_scale), ("so", out_scale), ("z", 0.0), ("b", bits), ("table", table)):
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return model


def test_sweep_runs_every_input_code_through_each_lowered_form():
    grid = grid_points(64, 4.0)
    sweep = sweep_lerp_psa_node(lerp_psa_chain(np.stack([grid, 0.5 * grid])), "psa")
    assert sweep.codes.tolist() == list(range(-8, 8))
    assert np.array_equal(sweep.inputs[:, 0], np.arange(-8, 8) * 0.25)
    np.testing.assert_allclose(sweep.float_outputs[:, 1], 0.5 * sweep.inputs[:, 1], atol=1e-6)
    exported = sweep.outputs["exported"]
    # identity at input step 0.25, output step 0.5, round half to even: codes -8..7 -> -2.0, -2.0, -1.5, -1.0, ...
    assert exported[:4, 0].tolist() == [-2.0, -2.0, -1.5, -1.0]
    assert sweep.unavailable == {}
    assert np.array_equal(sweep.outputs["full"], exported)
    assert np.array_equal(sweep.outputs["MultiThreshold"], exported)
    every_fourth = slice(0, None, 4)
    assert np.array_equal(sweep.outputs["lerp64"][every_fourth], exported[every_fourth])
    assert float(sweep.output_scale) == 0.5


def test_sweep_reports_multithreshold_unavailable_for_non_monotone_tables():
    grid = grid_points(64, 4.0)
    sweep = sweep_lerp_psa_node(lerp_psa_chain(np.stack([grid, np.abs(grid)])), "psa")
    assert set(sweep.outputs) == {"exported", "full", "lerp64"}
    assert "monotone" in sweep.unavailable["MultiThreshold"] and "[1]" in sweep.unavailable["MultiThreshold"]
    assert np.array_equal(sweep.outputs["full"], sweep.outputs["exported"])


def test_sweep_of_unknown_node_names_the_nodes_there_are():
    model = lerp_psa_chain(np.zeros((1, 64)))
    assert lerp_psa_nodes(model) == ["psa"]
    with pytest.raises(ValueError, match=r"no LerpPSA node named 'relu'.*\['psa'\]"):
        sweep_lerp_psa_node(model, "relu")


def test_report_lists_the_deepest_fifos_with_their_memory(tmp_path):
    def fifo(name, depth, width, lut, bram18=0, uram=0):
        return dict(name=name, depth=depth, width_bits=width, lut=lut, bram18=bram18, uram=uram, ram_style="srl",
                    impl_style="rtl", producer=f"{name}_from", consumer=f"{name}_to")

    fifos = [fifo(f"StreamingFIFO_rtl_{i}", 2, 8, 5) for i in range(10)] + [fifo("bypass", 3072, 8, 86, uram=1),
                                                                              fifo("wide", 600, 48, 120, bram18=2)]
    layers = [layer("MVAU_0", "MVAU_rtl", 100, 10)] + [layer(f["name"], "StreamingFIFO_rtl", 0, f["lut"],
                                                             bram18=f["bram18"], uram=f["uram"]) for f in fifos]
    sizing = dict(method="cycle simulation", frames=4, simulated_fps=32552.1, deadlock_free=True, seconds=1.5)
    build = write_build(tmp_path / "b", layers, fps=32552.0, latency_ns=1000.0, fifos=fifos, fifo_sizing=sizing)
    text = write_report([build], tmp_path / "report").report.read_text()
    section = text.split("FIFOs\n", 1)[1]
    assert "12 StreamingFIFOs, in the totals above: LUT 256, BRAM18 2, URAM 1" in section
    assert "4 frames at 32,552 FPS simulated, deadlock-free" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "FIFO |" not in line]
    assert len(rows) == 8
    assert rows[0].startswith("| bypass | bypass_from | bypass_to | 3,072 | 8 | 24.6 | srl | 86 | 0 | 1 |")
    assert rows[1].startswith("| wide | wide_from | wide_to | 600 | 48 | 28.8 |")
