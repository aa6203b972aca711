"""Full finn-plus builds of the digits ResMLP (all three variants): summary.json, reports, python-mode equivalence.

The models are seeded random ResMLPs with random BatchNorm statistics and affines, as a trained one has; an
untrained BatchNorm (what --random-init exports) has its own test.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psa_finn.build_configs.summary import SUMMARY_KEYS
from psa_finn.models import ResMLP, load_checkpoint, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY

ROOT = Path(__file__).resolve().parents[1]
TARGET_FPS = 32051
VARIANTS = ("relu", "lerp_psa", "bspline")
EQUIVALENCE_SAMPLES = 30


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "XILINX_VIVADO")}
    return subprocess.run([sys.executable, "build.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


def _float_checkpoint(path, variant):
    """A seeded random digits ResMLP (embed 96, depth 4, hidden factor 1) with random BatchNorm statistics."""
    torch.manual_seed(0)
    model = ResMLP(variant, 1, **DATASET_GEOMETRY["digits"].model_kwargs()).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    save_checkpoint(path, model, dataset="digits")
    return path


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """variant -> (build dir, exit status, stdout); relu runs the whole config (code generation too)."""
    root = tmp_path_factory.mktemp("digits_builds")
    done = {}

    def build(variant):
        if variant not in done:
            model = root / f"{variant}.onnx"
            checkpoint = _float_checkpoint(root / f"{variant}.pt", variant)
            exported = _cli("export", "--checkpoint", str(checkpoint), "--out", str(model))
            assert exported.returncode == 0, exported.stderr[-2000:]
            stop = [] if variant == "relu" else ["--stop-step", "step_generate_estimate_reports"]
            result = _cli("build", "--model", str(model), "--config", "build_configs/unrolled.yaml",
                          "--out", str(root / variant), *stop)
            done[variant] = (root / variant, result.returncode, result.stdout + result.stderr)
        return done[variant]

    return build


@pytest.mark.slow
def test_relu_build_writes_reports_models_and_summary(builds):
    out, status, log = builds("relu")
    assert status == 0, log[-3000:]
    for report in ("estimate_layer_resources.json", "estimate_layer_cycles.json", "estimate_network_performance.json",
                   "op_and_param_counts.json", "time_per_step.json"):
        assert (out / "report" / report).is_file()
    for step in ("step_streamline_with_luts", "step_convert_to_hw", "step_specialize_layers", "step_hw_codegen"):
        assert (out / "intermediate_models" / f"{step}.onnx").is_file()
    assert "skipping step_create_stitched_ip: XILINX_VIVADO is not set" in log
    assert list((out / "finn_tmp").rglob("*.v")) or list((out / "finn_tmp").rglob("*.sv"))

    summary = json.loads((out / "summary.json").read_text())
    assert tuple(summary) == SUMMARY_KEYS
    perf = json.loads((out / "report" / "estimate_network_performance.json").read_text())
    assert summary["fps"] == perf["estimated_throughput_fps"] >= TARGET_FPS
    assert summary["latency_ns"] == perf["estimated_latency_ns"] > 0
    assert summary["all_nodes_on_hw"] is True and summary["off_hw_nodes"] == []
    assert summary["host_nodes"] and all(n.endswith(("(Mul)", "(Add)")) for n in summary["host_nodes"])
    layers = summary["layers"]
    assert summary["max_cycles"] == max(layer["cycles"] for layer in layers)
    assert summary["max_cycles_node"] in {layer["name"] for layer in layers}
    stock = json.loads((out / "report" / "estimate_layer_resources.json").read_text())
    for key, finn_key in (("lut", "LUT"), ("dsp", "DSP"), ("bram18", "BRAM_18K"), ("uram", "URAM")):
        assert summary[key] == sum(layer[key] for layer in layers)
        assert summary["finn_totals"][key] == sum(layer["finn_estimate"][key] for layer in layers)
        # FIFO sizing inserts StreamingFIFOs and width converters after finn-plus's estimate reports
        assert all(layer["finn_estimate"][key] == round(stock[layer["name"]][finn_key]) for layer in layers
                   if layer["name"] in stock)
    assert {layer["op_type"] for layer in layers if layer["name"] not in stock} <= {
        "StreamingFIFO_rtl", "StreamingDataWidthConverter_rtl"}
    assert summary["luts_plus_dsp"] == summary["lut"] + summary["dsp"]
    op_types = {layer["op_type"] for layer in layers}
    # every requantizer of the ReLU ResMLP (accumulator -> 8-bit ReLU / residual quantizer) is uniform: all of them
    # are IntegerRequant layers (step_convert_requantizers_to_hw); the one threshold layer left quantizes the float
    # input (no integer grid to requantize from)
    assert {"MVAU_rtl", "IntegerRequant_rtl", "GlobalAccPool_hls", "InnerShuffle_rtl"} <= op_types
    assert [layer["name"] for layer in layers if layer["op_type"].startswith("Thresholding")] == [layers[0]["name"]]
    assert list((out / "finn_tmp").rglob("IntegerRequant_rtl_0.v"))
    assert sum(layer["op_type"].startswith("MVAU") for layer in layers) == 14
    # every layer has a figure and its basis; every layer with logic has LUTs (a Reshape between equal widths is
    # wires); the RTL MVAU's LUTs (adder trees, accumulators) and thresholds' comparators are counted now
    assert summary["zero_estimate_ops"] == []
    assert {layer["estimate_basis"] for layer in layers} <= {"finn-plus", "psa-finn model"}
    assert all(layer["lut"] > 0 for layer in layers if not layer["op_type"].startswith("Reshape"))
    assert all(layer["finn_estimate"]["lut"] == 0 for layer in layers if layer["op_type"] == "MVAU_rtl")
    exact = summary["exact"]
    from qonnx.core.modelwrapper import ModelWrapper
    from psa_finn.analysis.exact_counts import qonnx_macs_per_frame
    assert exact["macs_per_frame"] == qonnx_macs_per_frame(ModelWrapper(summary["model"])) > 0
    assert exact["weight_bits"] > 0 and exact["threshold_bits"] > 0
    assert exact["paper_ops_per_frame"] >= 2 * exact["macs_per_frame"]
    assert summary["skipped_steps"] and summary["steps_run"][-1] == "step_size_fifos_by_simulation"
    assert "replaced by psa_finn.build_configs.steps.step_size_fifos_by_simulation" in log
    # FIFOs sized by cycle simulation: deadlock-free at the analytic rate, in the layers and totals; each token
    # mixer's bypass holds its branch's two transposes (a frame each) at the rate of the 6144-cycle MVAUs
    sizing = summary["fifo_sizing"]
    assert sizing["deadlock_free"] is True and sizing["simulated_fps"] >= 0.99 * summary["fps"]
    fifos = summary["fifos"]
    assert {layer["name"] for layer in layers if layer["op_type"] == "StreamingFIFO_rtl"} == {f["name"] for f in fifos}
    assert exact["fifo_bits"] == sum(f["depth"] * f["width_bits"] for f in fifos) > 0
    bypasses = [f for f in fifos if f["producer"].startswith("DuplicateStreams")
                and f["consumer"].startswith("ElementwiseAdd")]
    assert len(bypasses) == 8 and max(f["depth"] for f in bypasses) >= 1536
    assert "FIFOs are not counted" not in log


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_hw_model_in_python_mode_equals_lowered_model(builds, variant):
    from psa_finn.build_configs import finn_shims

    out, status, log = builds(variant)
    assert status == 0, log[-3000:]
    finn_shims.boot_finn(out)
    from psa_finn.build_configs.verify import compare
    from psa_finn.models import patchify
    from psa_finn.models.datasets import load_digits_split

    _, _, x_test, _ = load_digits_split()
    result, _ = compare(out, out.parent / f"{variant}.onnx", patchify(x_test[:EQUIVALENCE_SAMPLES], 2).numpy())
    # bit for bit, the rounding ties (common with power-of-two scales) included: half-to-even in both. (On these
    # seeded models; elsewhere a float32-rounded bias can still land on a tie: see build_configs.verify)
    assert result["max_abs_diff"] == 0.0 and result["output_max_abs_diff"] == 0.0
    assert result["reference_model"] == "step_lower_quantized_functions"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verification"]["max_abs_diff"] == 0.0
    # the requantizers computed the QONNX model bit for bit: 29 of them (4 blocks x 7, the head's 1); of the
    # B-spline model's, 4 are composed with the monotone function behind them (one threshold layer, not uniform)
    requantizers = {"relu": 29, "lerp_psa": 29, "bspline": 25}[variant]
    assert sum(layer["op_type"] == "IntegerRequant_rtl" for layer in summary["layers"]) == requantizers
    if variant != "relu":
        assert any(layer["op_type"].startswith(("PerChannelLUT", "Thresholding")) for layer in summary["layers"])
        report = json.loads((out / "report" / "lowering_report.json").read_text())
        assert len(report["nodes"]) == 8


@pytest.mark.slow
def test_export_with_rank1_per_channel_initializers_builds_to_the_same_model(tmp_path):
    """Exports made before the [1, 1, C] ChannelAffine layout hold rank-1 initializers. With a token-mixer layer
    scale of mixed signs (as training leaves it) finn's MoveTransposePastEltwise then met a rank-1 initializer after a
    Transpose and failed; now such an export builds, to the same model as the current layout."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from psa_finn.models.resmlp import TokenMixer

    checkpoint = _float_checkpoint(tmp_path / "relu.pt", "relu")
    float_model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        for module in float_model.modules():
            if isinstance(module, TokenMixer):
                module.affine_2.weight.uniform_(-0.2, 0.2)
    save_checkpoint(checkpoint, float_model, dataset="digits")
    exported = _cli("export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "new.onnx"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    old = ModelWrapper(str(tmp_path / "new.onnx"))
    rewritten = 0
    for node in old.graph.node:
        for name in node.input:
            value = old.get_initializer(name)
            if node.op_type in ("Mul", "Add") and value is not None and value.shape[:-1] == (1, 1) and value.size > 1:
                old.set_initializer(name, value.reshape(-1))
                rewritten += 1
    assert rewritten >= 4
    old.save(str(tmp_path / "old.onnx"))
    streamlined = []
    for name in ("old", "new"):
        result = _cli("build", "--model", str(tmp_path / f"{name}.onnx"), "--config", "build_configs/unrolled.yaml",
                      "--out", str(tmp_path / name), "--stop-step", "step_streamline_with_luts")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        streamlined.append(ModelWrapper(str(tmp_path / name / "intermediate_models/step_streamline_with_luts.onnx")))
    x = np.random.default_rng(1).normal(size=(4, *streamlined[0].get_tensor_shape("global_in")[1:]))
    outputs = [np.concatenate([execute_onnx(m, {m.graph.input[0].name: s[None].astype(np.float32)})[
        m.graph.output[0].name] for s in x]) for m in streamlined]
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.slow
def test_untrained_batchnorm_export_builds_bit_exact(tmp_path):
    """A --random-init export keeps untrained BatchNorms, whose 1/sqrt(1 + eps) qonnx's RemoveIdentityOps takes for 1
    in the FINN build: the export makes it exactly 1, so the hardware computes the QONNX model at every tie too."""
    from psa_finn.build_configs import finn_shims

    exported = _cli("export", "--variant", "relu", "--hidden-factor", "1", "--dataset", "digits", "--random-init",
                    "--out", str(tmp_path / "relu.onnx"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    result = _cli("build", "--model", str(tmp_path / "relu.onnx"), "--config", "build_configs/unrolled.yaml",
                  "--out", str(tmp_path / "build"), "--stop-step", "step_generate_estimate_reports")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    finn_shims.boot_finn(tmp_path / "build")
    from psa_finn.build_configs.verify import compare
    from psa_finn.models import patchify
    from psa_finn.models.datasets import load_digits_split

    _, _, x_test, _ = load_digits_split()
    compared, _ = compare(tmp_path / "build", tmp_path / "relu.onnx", patchify(x_test[:60], 2).numpy())
    assert compared["max_abs_diff"] == 0.0 and compared["output_max_abs_diff"] == 0.0
