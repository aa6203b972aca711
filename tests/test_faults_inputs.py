"""Bad input named before any work (issue 23, items 6-9 and 15): a float model or one exported with Brevitas' own
export_qonnx, build-config values finn-plus would only choke on, files of the wrong kind, flags out of range, and
the verification's inputs (the input quantizer's grid and its ties, or the user's own `--verify-data`).

Each case asserts the exit code of `psa_finn.common.cli_errors`, one error line naming the file, key or flag and the
fix, and that a previous build is intact.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from psa_finn.build_configs.verify import random_inputs
from test_faults import (ESTIMATES, UNROLLED, config_with, expect_error, fake_build, files,  # noqa: F401
                         run_cli, snapshot, tiny_model)


@pytest.fixture
def previous_build(tmp_path):
    out = fake_build(tmp_path / "build")
    return out, snapshot(out)


def float_onnx(path: Path) -> Path:
    """A plain float ONNX model (MatMul + Relu, no quantizer), batch 1."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 4], np.ones(32, dtype=np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "float", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    onnx.save(helper.make_model(graph), str(path))
    return path


def brevitas_exported(path: Path) -> Path:
    """A QuantLerpPSA network exported with Brevitas' own export_qonnx (the function traced op by op)."""
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantIdentity, QuantLinear
    from torch import nn

    from psa_finn.nn import QuantLerpPSA

    torch.manual_seed(0)
    model = nn.Sequential(QuantIdentity(return_quant_tensor=True), QuantLinear(8, 4, bias=False),
                          QuantLerpPSA(4, channel_dim=1))
    for _ in range(3):
        model(torch.randn(16, 8))
    export_qonnx(model.eval(), torch.randn(1, 8), str(path))
    return path


# ------------------------------------------------------------------------------------------------ 7: models

@pytest.mark.parametrize("command", ["build", "lower"])
@pytest.mark.parametrize("kind", ["float", "brevitas export_qonnx"])
def test_a_model_that_cannot_build_is_refused_before_the_build(tmp_path, capsys, previous_build, command, kind):
    model = float_onnx(tmp_path / "f.onnx") if kind == "float" else brevitas_exported(tmp_path / "b.onnx")
    out, before = previous_build
    args = ["--model", model, "--out", out] if command == "build" else ["--model", model, "--out", tmp_path / "l.onnx"]
    if command == "build":
        args += ["--config", UNROLLED]
    names = ["psa_finn.export.export_qonnx", model.name] + (["no Quant node"] if kind == "float" else ["Floor"])
    expect_error(capsys, 2, command, *args, names=names)
    assert snapshot(out) == before and not (tmp_path / "l.onnx").exists()


def test_a_nan_grid_range_is_named(tmp_path, capsys, files, previous_build):
    from test_faults import edited_onnx, first_lerp_psa

    def nan_range(model):
        for attribute in first_lerp_psa(model).attribute:
            if attribute.name == "grid_range":
                attribute.f = float("nan")

    model = edited_onnx(files["lerp.onnx"], tmp_path / "nan_range.onnx", nan_range)
    out, before = previous_build
    expect_error(capsys, 2, "build", "--model", model, "--config", UNROLLED, "--out", out,
                 names=["nan_range.onnx", "grid_range", "LerpPSA"])
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------------ 8: config values

CONFIG_VALUES = {
    "negative target_fps": (("target_fps: 32051", "target_fps: -5"), ["target_fps", "> 0"]),
    "nan clock": (("synth_clk_period_ns: 5.0", "synth_clk_period_ns: .nan"), ["synth_clk_period_ns", "finite"]),
    "empty steps": (("steps:\n", "steps: []\nx_steps:\n"), ["'steps'", "empty"]),
    "part suffix typo": (("xcu50-fsvh2104-2-e", "xcu50-fsvh2104-2e"), ["xcu50-fsvh2104-2e", "speed grade"]),
    "device typo keeps the suffix": (("xcu50-fsvh2104-2-e", "xcu5O-fsvh2104-2-e"), ["xcu50-fsvh2104-2-e'"]),
    "output_dir": (("target_fps: 32051", "target_fps: 32051\noutput_dir: elsewhere"), ["output_dir", "--out"]),
    "binary file": (None, ["binary.yaml", "not a text file"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_VALUES))
def test_build_config_values_are_checked_before_the_build(tmp_path, capsys, files, previous_build, case):
    replace, names = CONFIG_VALUES[case]
    if replace is None:
        config = tmp_path / "binary.yaml"
        config.write_bytes(b"\x00\x01\xff\xfe\x80")
    else:
        text = Path(UNROLLED).read_text()
        if case == "empty steps":  # drop the step list (keep the file valid YAML)
            text = text[:text.index("steps:\n")] + "steps: []\n"
            config = tmp_path / "typo.yaml"
            config.write_text(text)
        else:
            config = config_with(tmp_path, *replace)
    out, before = previous_build
    expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", config, "--out", out,
                 names=[config.name, *names])
    assert snapshot(out) == before and not (out.parent / "build.failed").exists()


def test_a_stop_step_typo_is_refused_at_once_with_the_nearest_step(tmp_path, capsys, files, previous_build):
    out, before = previous_build
    expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out,
                 "--stop-step", "step_generate_estimate_report", names=["--stop-step",
                                                                          "did you mean 'step_generate_estimate_reports'"])
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------------ 9: named files/flags

def test_hidden_factor_overflow_names_the_flag(tmp_path, capsys):
    expect_error(capsys, 2, "train", "--hidden-factor", "1e308", "--out", tmp_path / "run", names=["--hidden-factor"])
    assert not (tmp_path / "run").exists()


def test_eval_of_a_json_file_gives_no_unsafe_advice(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text('{"a": 1}\n')
    message = expect_error(capsys, 2, "eval", "--checkpoint", path, names=[str(path), "not a readable torch"])
    assert "weights_only" not in message


def test_eval_on_a_dataset_of_another_geometry_names_both(capsys, files):
    expect_error(capsys, 2, "eval", "--checkpoint", files["relu.pt"], "--dataset", "mnist1d",
                 names=["--checkpoint", "--dataset mnist1d", "use --dataset digits"])


@pytest.mark.parametrize("edit", [{"variant": "bogus"}, {"embed_dim": -4}])
def test_a_checkpoint_with_a_bogus_config_is_named(tmp_path, capsys, files, edit):
    payload = torch.load(files["relu.pt"], weights_only=True)
    payload["config"].update(edit)
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    expect_error(capsys, 2, "eval", "--checkpoint", path, names=[str(path), "does not build a model"])


def test_an_unreachable_ray_cluster_is_one_line_and_leaves_no_out(tmp_path, capsys):
    from test_faults_outputs import SPACE

    out = tmp_path / "sweep"
    message = expect_error(capsys, 3, "sweep", "--space", SPACE, "--out", out, "--address", "127.0.0.1:1",
                           names=["--address 127.0.0.1:1", "ray start --head"])
    assert "no Ray cluster answers" in message
    assert not out.exists()  # the folder it made is removed, lock file and all


# ------------------------------------------------------------------------------------------------ 6/15: verification

@pytest.mark.slow
def test_finn_plus_default_steps_build_brevitas_sfc_with_every_node_on_hardware(tmp_path, capsys):
    """Item 6 of issue 23: brevitas_examples' SFC (sfc_2w2a, random weights) through finn-plus's default step list
    (a config without `steps:`) exits 0 with every node on the hardware; its float outputs (the final TensorNorm)
    are compared to their precision, not bit for bit (they differed by 2e-8 to 5e-7 and the build exited 1), and
    the MVAUs with fused thresholds are counted (exit 3 before: finn-plus's MVAU has no datatype of input 2)."""
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    from psa_finn.export.qonnx_export import export_qonnx

    torch.manual_seed(0)
    model, _ = model_with_cfg("sfc_2w2a", False)
    export_qonnx(model.eval(), torch.rand(1, 1, 28, 28), tmp_path / "sfc.onnx")
    config = tmp_path / "default.yaml"
    config.write_text("synth_clk_period_ns: 5.0\nfpga_part: xcu50-fsvh2104-2-e\ntarget_fps: 1000\n"
                      "generate_outputs:\n  - estimate_reports\n")
    status, printed, err = run_cli(capsys, "build", "--model", tmp_path / "sfc.onnx", "--config", config, "--out",
                                   tmp_path / "build")
    assert status == 0, err[-2000:]
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    assert summary["all_nodes_on_hw"] and summary["host_nodes"] == [] and summary["exact"]["threshold_bits"] > 0
    verification = summary["verification"]
    assert verification["compared"] == "float outputs" and verification["mismatch"] is None
    assert verification["output_max_abs_diff"] <= verification["tolerance"]
    assert "float outputs agree" in printed


def test_verification_inputs_cover_the_input_grid_and_its_ties(files):
    """Random inputs of a model with a float input are on its input quantizer's grid or halfway (the ties), over
    the quantizer's range and a little beyond, not standard normal values."""
    from qonnx.core.modelwrapper import ModelWrapper

    from psa_finn.build_configs.verify import _input_quantizer

    model = ModelWrapper(str(files["lerp.onnx"]))
    scale, zero_point, bits, signed, narrow = _input_quantizer(model)
    x = random_inputs(model, 64).astype(np.float64)
    steps = x / scale + zero_point
    assert np.all(steps * 2 == np.round(steps * 2))
    assert np.any(steps != np.round(steps)) and np.any(steps == np.round(steps))
    assert steps.max() > 2 ** (bits - 1) - 1 if signed else steps.max() > 2 ** bits - 1


def test_verify_data_of_the_wrong_shape_is_refused_before_the_build(tmp_path, capsys, files, previous_build):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((5, 3, 3), dtype=np.float32))
    out, before = previous_build
    expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out,
                 "--verify-data", data, names=["--verify-data", "x.npy", "[5, 3, 3]"])
    assert snapshot(out) == before


@pytest.mark.slow
def test_verify_data_checks_the_build_on_the_users_inputs(tmp_path, capsys, files):
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(str(files["lerp.onnx"]))
    shape = model.get_tensor_shape(model.graph.input[0].name)[1:]
    data = tmp_path / "digits.npy"
    np.save(data, np.random.default_rng(1).standard_normal((7, *shape)).astype(np.float32))
    out = tmp_path / "build"
    status, printed, err = run_cli(capsys, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                                   out, *ESTIMATES, "--verify-data", data)
    assert status == 0, err
    verification = json.loads((out / "summary.json").read_text())["verification"]
    assert verification["samples"] == 7 and verification["inputs_kind"] == "--verify-data"
    assert verification["mismatching_samples"] == 0 and verification["compared"] == "output codes"
    assert "on 7 inputs (--verify-data): output codes agree exactly" in printed


@pytest.mark.slow
def test_float_outputs_after_a_host_softmax_are_compared_to_their_precision(tmp_path, capsys):
    """A network ending in Softmax (on the host, float outputs): the build verifies to float32 precision, exit 0,
    and says it compared float outputs."""
    from networks import export_network

    path = export_network("mlp", tmp_path / "mlp.onnx")
    model = onnx.load(str(path))
    output = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["pre_softmax" if name == output else name for name in node.output]
    model.graph.node.append(helper.make_node("Softmax", ["pre_softmax"], [output], axis=-1))
    onnx.save(model, str(tmp_path / "softmax.onnx"))
    out = tmp_path / "build"
    status, printed, err = run_cli(capsys, "build", "--model", tmp_path / "softmax.onnx", "--config", UNROLLED,
                                   "--out", out, *ESTIMATES)
    assert status == 0, (printed + err)[-3000:]
    verification = json.loads((out / "summary.json").read_text())["verification"]
    assert verification["compared"] == "float outputs" and verification["mismatching_samples"] == 0
    assert 0 < verification["tolerance"] < 1e-4


# ------------------------------------------------------------------------------------------------ 11: fixed weights

@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("quantizer", ["ChannelWeightQuant", "TensorWeightQuant"])
def test_fixed_routing_weights_stay_exact_and_no_row_maximum_is_clipped(quantizer, bits):
    """A 0/1 (and -1) routing matrix, e.g. a KAN fan-out, is held exactly (Brevitas' default scale made 1.0 into
    127/128); on random weights no value moves by more than half a step (the row maximum is never clipped)."""
    from brevitas.nn import QuantLinear

    from psa_finn.nn import quantizers

    layer = QuantLinear(4, 3, bias=False, weight_quant=getattr(quantizers, quantizer), weight_bit_width=bits)
    routing = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, -1, 1]])
    with torch.no_grad():
        layer.weight.copy_(routing)
    assert torch.equal(layer.quant_weight().value, routing)
    torch.manual_seed(bits)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 4) * torch.tensor([[1.0], [2.0], [0.3]]))
    quantized = layer.quant_weight()
    scale = quantized.scale.reshape(-1, 1).expand(3, 4)
    assert torch.all((quantized.value - layer.weight).abs() <= scale / 2 + 1e-7)


# ------------------------------------------------------------------------------------------------ 17: token layouts

def test_eval_takes_a_token_model_of_digit_rows(tmp_path, capsys):
    """A QONNX classifier whose input is [N, 8, 8] (each digit row a token) is scored on digits: the image's one
    channel is dropped, no refusal."""
    from brevitas.nn import QuantIdentity, QuantLinear
    from torch import nn

    from psa_finn.export import export_qonnx

    class RowTokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = QuantIdentity(return_quant_tensor=True)
            self.mix = QuantLinear(8, 4, bias=False)
            self.head = QuantLinear(32, 10, bias=False)

        def forward(self, x):
            return self.head(torch.flatten(self.mix(self.quant(x)), 1))

    torch.manual_seed(0)
    model = RowTokens()
    for _ in range(3):
        model(torch.rand(16, 8, 8) * 16)
    export_qonnx(model.eval(), torch.rand(1, 8, 8) * 16, tmp_path / "rows.onnx")
    status, printed, err = run_cli(capsys, "eval", "--checkpoint", tmp_path / "rows.onnx")
    assert status == 0, err
    assert "on digits test (360 samples): accuracy" in printed


# ------------------------------------------------------------------------------------------------ 16: residual grids

def _residual_join(path: Path, scale_a: float, scale_b: float) -> Path:
    """x -> Quant(scale_a), x -> Quant(scale_b) -> Add -> Quant(1/8): a residual join of two quantized branches."""
    from qonnx.util.basic import qonnx_make_model

    def quant(name, source, scale):
        return helper.make_node("Quant", [source, f"{name}_s", "zero", "bits"], [name],
                                domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND")

    nodes = [quant("a", "x", scale_a), quant("b", "x", scale_b),
             helper.make_node("Add", ["a", "b"], ["sum"], name="Add_join"),
             quant("y", "sum", 0.125)]
    inits = [helper.make_tensor(name, TensorProto.FLOAT, [], [value]) for name, value in
             (("a_s", scale_a), ("b_s", scale_b), ("y_s", 0.125), ("zero", 0.0), ("bits", 8.0))]
    graph = helper.make_graph(nodes, "join", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(qonnx_make_model(graph), str(path))
    return path


def test_a_residual_join_of_float_scaled_branches_is_refused_with_the_fix(tmp_path, capsys):
    model = _residual_join(tmp_path / "float_join.onnx", 0.0123, 0.125)
    expect_error(capsys, 2, "lower", "--model", model, "--out", tmp_path / "l.onnx",
                 names=["float_join.onnx", "Add_join", "UnsignedActQuant"])
    status, _, err = run_cli(capsys, "lower", "--model", _residual_join(tmp_path / "pot.onnx", 0.25, 0.125),
                             "--out", tmp_path / "l.onnx")
    assert status == 0, err  # power-of-two branches: their sum lies on the finer grid, handled exactly
