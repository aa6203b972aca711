"""Traps for a user's own network (issue 23, items 12, 14, 16), written as a user writes it: each exports with
psa_finn.export.export_qonnx, lowers and builds onto the hardware, bit-exact from torch through QONNX to the built
model, or is refused before the build with one line naming the node and the fix.

- 12: a KAN fan-out written as `torch.cat` of a repeated input (qonnx's renaming broke the graph) or as
  `unsqueeze -> expand -> reshape` (left Unsqueeze/Expand off the hardware); a CNN's channels concatenated twice;
  `torch.cat([a, b, a])`.
- 14: a QuantTensor passed through a shape op (transpose, permute, flatten, max_pool2d) into QuantLerpPSA,
  QuantBSpline or QuantKANLinear (which take it as quantized): a token mixer, a CNN with QuantReLU(return_quant_tensor
  =True) -> MaxPool2d -> QuantLerpPSA.
- 16: tests/networks.py's residual CNN with a default (float-scaled) QuantReLU branch: refused before the build.

Re-trial of issue 23:
- a CNN with brevitas_examples' CommonWeightQuant 2-bit weights (fixed scale 1.0) on PyTorch's default initialisation:
  every weight quantizes to 0 and finn-plus stopped in step_minimize_bit_width ("Factor and x are <= 0").
- a per-channel QuantReLU (a QuantTensor) flattened into QuantLerpPSA: lowering said "add an input quantizer" (it has
  one); now it lowers exactly, and `build` refuses a function read through a Flatten / Reshape before the build.
- `torch.cat` of two differently scaled quantizers (4 and 6 bits) before QuantLerpPSA, of features [N, C] or of a
  CNN's channels: the Concat stayed off the hardware (exit 1, "nodes left off the hardware: Concat_0").
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.transformation.infer_shapes import InferShapes
from torch import nn

from graphs import graph_model
from networks import ResidualCNN
from test_faults import UNROLLED, expect_error, fake_build, snapshot
from psa_finn.custom_ops.domain import LERP_PSA_OP, OPS_DOMAIN, is_quant_node
from psa_finn.export import export_qonnx
from psa_finn.nn import QuantBSpline, QuantKANLinear, QuantLerpPSA
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant, UnsignedActQuant
from psa_finn.reports.learned_functions import lerp_psa_nodes, sweep_lerp_psa_node
from psa_finn.transforms.lower_kan_linear import LowerKANLinear
from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS, lower_quantized_functions
from psa_finn.transforms.requantize_after_shape_ops import RequantizeAfterShapeOps
from psa_finn.transforms.scales_past_concat import MoveScalesPastConcat

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 64
EXACT = dict(weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)  # biases on the accumulator grid


# ------------------------------------------------------------------------- 14: a QuantTensor through shape ops

class TokenMixer(nn.Module):
    """[N, T, C] tokens -> QuantIdentity (a QuantTensor) -> transpose to [N, C, T] -> a function of each token
    position (`function`, channels last: T channels) -> back to [N, T, C]."""

    def __init__(self, function):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)
        self.function = function

    def forward(self, x):
        return self.function(self.quant(x).transpose(1, 2)).transpose(1, 2)


class PermutedBank(nn.Module):
    """[N, C, H, W] -> QuantIdentity (a QuantTensor) -> permute to NHWC -> QuantBSpline on the channels (last)."""

    def __init__(self):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)
        self.function = QuantBSpline(3, channel_dim=-1, bit_width=4)

    def forward(self, x):
        return self.function(self.quant(x).permute(0, 2, 3, 1))


class PoolCNN(nn.Module):
    """[N, 1, 8, 8] -> QuantConv2d -> QuantReLU (default float scale, return_quant_tensor=True) -> MaxPool2d ->
    QuantLerpPSA (channel_dim 1) -> flatten -> QuantLinear (exact bias)."""

    def __init__(self):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8)
        self.conv = QuantConv2d(1, 4, 3, padding=1)
        self.relu = QuantReLU(return_quant_tensor=True)
        self.pool = nn.MaxPool2d(2)
        self.function = QuantLerpPSA(4, channel_dim=1, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(4 * 4 * 4, 10, **EXACT)

    def forward(self, x):
        return self.fc(self.function(self.pool(self.relu(self.conv(self.quant(x))))).flatten(1))


class FlattenedMLP(nn.Module):
    """[N, 4, 4] -> QuantIdentity (a QuantTensor) -> flatten -> QuantLerpPSA (16) -> QuantLinear (exact bias)."""

    def __init__(self):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)
        self.function = QuantLerpPSA(16, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(16, 10, **EXACT)

    def forward(self, x):
        return self.fc(self.function(self.quant(x).flatten(1)))


class CatFanOut(nn.Module):
    """[N, 4] -> QuantIdentity -> the 4 inputs repeated 3 times (`torch.cat` of the tensor's values, or of the
    QuantTensor itself, `quant_tensor`) -> QuantLerpPSA on the 12 edges -> QuantLinear (exact bias)."""

    def __init__(self, quant_tensor=False):
        super().__init__()
        self.quant_tensor = quant_tensor
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)
        self.function = QuantLerpPSA(12, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(12, 5, **EXACT)

    def forward(self, x):
        x = self.quant(x)
        x = x if self.quant_tensor else x.value
        return self.fc(self.function(torch.cat([x, x, x], dim=1)))


class RepeatingConcat(CatFanOut):
    """CatFanOut's edges as `torch.cat([a, b, a])` of two quantizers of the input (one scale)."""

    def __init__(self):
        super().__init__()
        self.other = QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)

    def forward(self, x):
        a, b = self.quant(x).value, self.other(x).value
        return self.fc(self.function(torch.cat([a, b, a], dim=1)))


class ExpandFanOut(CatFanOut):
    """CatFanOut with the repeat written `unsqueeze(1).expand(-1, 3, -1).reshape(N, 12)`."""

    def forward(self, x):
        x = self.quant(x).value
        return self.fc(self.function(x.unsqueeze(1).expand(-1, 3, -1).reshape(x.shape[0], 12)))


class ChannelCatCNN(nn.Module):
    """[N, 1, 8, 8] -> QuantConv2d(4) -> QuantReLU (a QuantTensor) -> its channels twice, `torch.cat([x, x], 1)` ->
    QuantLerpPSA on the 8 channels (channel_dim 1) -> flatten -> QuantLinear (exact bias)."""

    def __init__(self):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8)
        self.conv = QuantConv2d(1, 4, 3, padding=1)
        self.relu = QuantReLU(return_quant_tensor=True)
        self.function = QuantLerpPSA(8, channel_dim=1, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(8 * 8 * 8, 10, **EXACT)

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        return self.fc(self.function(torch.cat([x, x], dim=1)).flatten(1))


class TwoScaleCat(nn.Module):
    """[N, 4] -> two quantizers of the input with different scales (4 and 6 bits) -> `torch.cat` -> QuantLerpPSA on
    the 8 features -> QuantLinear (exact bias)."""

    def __init__(self):
        super().__init__()
        self.a = QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)
        self.b = QuantIdentity(act_quant=SignedActQuant, bit_width=6, return_quant_tensor=True)
        self.function = QuantLerpPSA(8, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(8, 5, **EXACT)

    def forward(self, x):
        return self.fc(self.function(torch.cat([self.a(x).value, self.b(x).value], dim=1)))


class TwoScaleCatCNN(nn.Module):
    """[N, 1, 8, 8] -> two QuantConv2d(4) branches, QuantReLU of 4 and of 6 bits (different scales) -> their channels
    `torch.cat`-ed -> QuantLerpPSA on the 8 channels (channel_dim 1) -> flatten -> QuantLinear (exact bias)."""

    def __init__(self):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8, return_quant_tensor=True)
        self.conv_a = QuantConv2d(1, 4, 3, padding=1, **EXACT)
        self.conv_b = QuantConv2d(1, 4, 3, padding=1, **EXACT)
        self.relu_a = QuantReLU(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
        self.relu_b = QuantReLU(act_quant=UnsignedActQuant, bit_width=6, return_quant_tensor=True)
        self.function = QuantLerpPSA(8, channel_dim=1, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(8 * 8 * 8, 10, **EXACT)

    def forward(self, x):
        x = self.quant(x)
        joined = torch.cat([self.relu_a(self.conv_a(x)).value, self.relu_b(self.conv_b(x)).value], dim=1)
        return self.fc(self.function(joined).flatten(1))


class PerChannelFlattenCNN(nn.Module):
    """[N, 1, 4, 4] -> QuantConv2d(4) -> QuantReLU with a scale per channel (a QuantTensor) -> flatten -> QuantLerpPSA
    on the 64 features -> QuantLinear (exact bias)."""

    def __init__(self):
        super().__init__()
        self.quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8)
        self.conv = QuantConv2d(1, 4, 3, padding=1)
        self.relu = QuantReLU(bit_width=4, return_quant_tensor=True, scaling_per_output_channel=True,
                              per_channel_broadcastable_shape=(1, 4, 1, 1), scaling_stats_permute_dims=(1, 0, 2, 3))
        self.function = QuantLerpPSA(4 * 4 * 4, channel_dim=1, bit_width=4, return_quant_tensor=True)
        self.fc = QuantLinear(4 * 4 * 4, 10, **EXACT)

    def forward(self, x):
        return self.fc(self.function(self.relu(self.conv(self.quant(x))).flatten(1)))


SHAPE_OP_NETWORKS = {
    "token_mixer_lerp_psa": (lambda: TokenMixer(QuantLerpPSA(8, channel_dim=-1, bit_width=4)), (8, 4)),
    "token_mixer_kan": (lambda: TokenMixer(QuantKANLinear(8, 8, bit_width=4)), (8, 4)),
    "permuted_bspline": (PermutedBank, (3, 4, 4)),
    "pool_cnn": (PoolCNN, (1, 8, 8)),
    "flattened_mlp": (FlattenedMLP, (4, 4)),
    "cat_fan_out": (CatFanOut, (4,)),
    "cat_fan_out_quant_tensor": (lambda: CatFanOut(quant_tensor=True), (4,)),
    "expand_fan_out": (ExpandFanOut, (4,)),
    "repeating_concat": (RepeatingConcat, (4,)),
    "channel_cat_cnn": (ChannelCatCNN, (1, 8, 8)),
    "per_channel_flatten_cnn": (PerChannelFlattenCNN, (1, 4, 4)),
    "two_scale_cat": (TwoScaleCat, (4,)),
    "two_scale_cat_cnn": (TwoScaleCatCNN, (1, 8, 8)),
}


def _calibrated(name, seed=0):
    factory, shape = SHAPE_OP_NETWORKS[name]
    torch.manual_seed(seed)
    model = factory().train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, *shape))
    return model.eval(), shape


def _execute(model, x):
    model = model.transform(ChangeBatchSize(len(x))).transform(InferShapes())
    return execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]


def _lowered(model):
    model = model.transform(RequantizeAfterShapeOps()).transform(LowerKANLinear()).transform(InferShapes())
    model, report = lower_quantized_functions(model, "auto")
    return model, report


@pytest.mark.parametrize("name", SHAPE_OP_NETWORKS)
def test_a_quant_tensor_through_a_shape_op_exports_and_lowers_bit_exactly(name, tmp_path):
    model, shape = _calibrated(name)
    path = export_qonnx(model, torch.randn(1, *shape), tmp_path / f"{name}.onnx")  # refused before the mend
    exported = ModelWrapper(str(path))
    x = (torch.randn(SAMPLES, *shape) * 2).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    expected = getattr(expected, "value", expected).numpy()
    np.testing.assert_array_equal(_execute(exported, x), expected)
    lowered, report = _lowered(exported)
    assert all(entry.form not in KEPT_FORMS for entry in report if entry.ops != ["Relu"]), report
    remaining = {node.op_type for node in lowered.graph.node}
    assert not remaining & {LERP_PSA_OP, "KANLinear", "Expand", "Unsqueeze"}, remaining
    assert all(len(set(node.input)) == len(node.input) for node in lowered.graph.node if node.op_type == "Concat")
    np.testing.assert_array_equal(_execute(lowered, x), expected)


def test_the_learned_functions_report_sweeps_a_function_read_through_a_transpose(tmp_path):
    model, shape = _calibrated("token_mixer_lerp_psa")
    exported = ModelWrapper(str(export_qonnx(model, torch.randn(1, *shape), tmp_path / "mixer.onnx")))
    sweep = sweep_lerp_psa_node(exported, lerp_psa_nodes(exported)[0])  # refused before: no Quant before the node
    assert sweep.codes.tolist() == list(range(-8, 8))
    np.testing.assert_array_equal(sweep.outputs["full"], sweep.outputs["exported"])


def test_the_requantizer_after_a_transpose_permutes_a_per_channel_scale():
    """Quant (scale per channel on axis 1 of [1, 3, 2]) -> Transpose [0, 2, 1] -> LerpPSA (channels last) -> Quant:
    the requantizer holds the scale as [1, 1, 3], and the graph computes the same; a per-channel quantizer before a
    Reshape cannot move and gets none."""
    scale = np.array([0.25, 0.5, 0.125], dtype=np.float32).reshape(1, 3, 1)
    table = np.random.default_rng(0).uniform(-2, 2, (3, 64)).astype(np.float32)

    def quant(source, scale_name, output):
        return helper.make_node("Quant", [source, scale_name, "zero", "bits"], [output],
                                domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND")

    def model_with(shape_node, inner_shape):
        nodes = [quant("x", "s", "q"), shape_node,
                 helper.make_node(LERP_PSA_OP, ["t", "table"], ["f"], domain=OPS_DOMAIN, grid_range=4.0),
                 quant("f", "out_s", "y")]
        return graph_model(nodes, [("x", [1, 3, 2])], [("y", inner_shape)],
                           [("s", scale), ("zero", 0.0), ("bits", 4.0), ("out_s", 0.25), ("table", table)])

    transposed = model_with(helper.make_node("Transpose", ["q"], ["t"], perm=[0, 2, 1]), [1, 2, 3])
    x = np.random.default_rng(1).uniform(-2, 2, (1, 3, 2)).astype(np.float32)
    before = execute_onnx(transposed, {"x": x})["y"]
    after = transposed.transform(RequantizeAfterShapeOps())
    requant = after.find_producer(after.graph.node[-2].input[0])
    assert is_quant_node(requant) and requant.name.endswith("_before_" + after.graph.node[-2].name)
    np.testing.assert_array_equal(after.get_initializer(requant.input[1]), scale.reshape(1, 1, 3))
    np.testing.assert_array_equal(execute_onnx(after, {"x": x})["y"], before)

    reshaped = model_with(helper.make_node("Reshape", ["q", "shape"], ["t"]), [1, 2, 3])
    reshaped.set_initializer("shape", np.array([1, 2, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="LerpPSA node .* reads Quant node .* through Reshape node .* per-tensor "
                                         "quantizer before the Reshape"):  # the scale would vary on two axes
        reshaped.transform(InferShapes()).transform(RequantizeAfterShapeOps())


def test_the_requantizer_after_a_flatten_repeats_a_per_channel_scale():
    """Quant (scale per channel on axis 1 of [1, 3, 2]) -> Flatten -> LerpPSA (6 channels) -> Quant: the requantizer
    holds each scale twice, [1, 6], and the graph computes the same, bit for bit."""
    scale = np.array([0.25, 0.5, 0.125], dtype=np.float32).reshape(1, 3, 1)
    table = np.random.default_rng(0).uniform(-2, 2, (6, 64)).astype(np.float32)
    nodes = [helper.make_node("Quant", ["x", "s", "zero", "bits"], ["q"], domain="qonnx.custom_op.general", signed=1,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node("Flatten", ["q"], ["t"], axis=1),
             helper.make_node(LERP_PSA_OP, ["t", "table"], ["f"], domain=OPS_DOMAIN, grid_range=4.0),
             helper.make_node("Quant", ["f", "out_s", "zero", "bits"], ["y"], domain="qonnx.custom_op.general",
                              signed=1, narrow=0, rounding_mode="ROUND")]
    model = graph_model(nodes, [("x", [1, 3, 2])], [("y", [1, 6])],
                        [("s", scale), ("zero", 0.0), ("bits", 4.0), ("out_s", 0.25), ("table", table)])
    x = np.random.default_rng(1).uniform(-2, 2, (1, 3, 2)).astype(np.float32)
    before = execute_onnx(model, {"x": x})["y"]
    after = model.transform(RequantizeAfterShapeOps())
    requant = after.find_producer(after.graph.node[-2].input[0])
    np.testing.assert_array_equal(after.get_initializer(requant.input[1]), scale.repeat(2).reshape(1, 6))
    np.testing.assert_array_equal(execute_onnx(after, {"x": x})["y"], before)


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "XILINX_VIVADO")}
    return subprocess.run([sys.executable, "build.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


def _build_summary(model_path, out):
    result = _cli("build", "--model", str(model_path), "--config", str(ROOT / "build_configs" / "unrolled.yaml"),
                  "--out", str(out), "--stop-step", "step_generate_estimate_reports")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["token_mixer_lerp_psa", "token_mixer_kan", "pool_cnn", "cat_fan_out",
                                  "expand_fan_out", "channel_cat_cnn", "repeating_concat", "two_scale_cat",
                                  "two_scale_cat_cnn"])
def test_a_quant_tensor_through_a_shape_op_builds_onto_the_hardware_exactly(name, tmp_path):
    model, shape = _calibrated(name)
    path = export_qonnx(model, torch.randn(1, *shape), tmp_path / f"{name}.onnx")
    summary = _build_summary(path, tmp_path / "build")
    assert summary["all_nodes_on_hw"] and summary["off_hw_nodes"] == []
    verification = summary["verification"]
    assert verification["max_abs_diff"] == 0.0 and verification["mismatch"] is None
    layers = [layer["op_type"].rsplit("_", 1)[0] for layer in summary["layers"]]
    assert ("KANLinear" if name == "token_mixer_kan" else "PerChannelLUT") in layers
    if name.endswith("fan_out"):  # input thresholds, the 0/1 fan-out, the functions, the QuantLinear
        assert layers == ["Thresholding", "MVAU", "PerChannelLUT", "MVAU"]
    if name == "repeating_concat":  # the two quantizers, [a, b] once, the 0/1 fan-out
        assert layers[:5] == ["DuplicateStreams", "Thresholding", "Thresholding", "StreamingConcat", "MVAU"]
    if name.startswith("two_scale_cat"):  # off the hardware before (exit 1: "nodes left off the hardware: Concat_0")
        assert "StreamingConcat" in layers


@pytest.mark.parametrize("name", ["per_channel_flatten_cnn", "flattened_mlp"])
def test_a_function_read_through_a_flatten_is_refused_before_the_build(name, tmp_path, capsys):
    model, shape = _calibrated(name)
    path = export_qonnx(model, torch.randn(1, *shape), tmp_path / f"{name}.onnx")
    previous = fake_build(tmp_path / "build")
    before = snapshot(previous)
    expect_error(capsys, 2, "build", "--model", path, "--config", UNROLLED, "--out", previous,
                 names=[f"{name}.onnx", "LerpPSA node 'LerpPSA_0'", "through Flatten node 'Flatten_0'",
                        "apply the function before the Flatten"])  # before: exit 1 after the whole build
    assert snapshot(previous) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", f"{name}.onnx"]  # no build.failed/


def test_a_concat_of_differently_scaled_codes_joins_the_codes_and_scales_after_it():
    """MultiThreshold (INT4) * 0.5 and MultiThreshold (INT6) (scale 1: no Mul) -> Concat on the last axis: the
    Concat joins both INT6 codes, one Mul [0.5, 0.5, 1, 1, 1] after it, the same values."""
    thresholds_a = np.arange(-7.5, 7.5).reshape(1, 15).repeat(2, 0)
    thresholds_b = np.arange(-31.5, 31.5).reshape(1, 63).repeat(3, 0)
    nodes = [helper.make_node("MultiThreshold", ["x", "ta"], ["a"], domain="qonnx.custom_op.general",
                              out_dtype="INT4", out_bias=-8.0),
             helper.make_node("Mul", ["a", "half"], ["a_scaled"]),
             helper.make_node("MultiThreshold", ["x3", "tb"], ["b"], domain="qonnx.custom_op.general",
                              out_dtype="INT6", out_bias=-32.0),
             helper.make_node("Concat", ["a_scaled", "b"], ["y"], axis=1)]
    model = graph_model(nodes, [("x", [4, 2]), ("x3", [4, 3])], [("y", [4, 5])],
                        [("ta", thresholds_a), ("tb", thresholds_b), ("half", 0.5)])
    rng = np.random.default_rng(0)
    feed = {"x": rng.uniform(-9, 9, (4, 2)).astype(np.float32), "x3": rng.uniform(-33, 33, (4, 3)).astype(np.float32)}
    before = execute_onnx(model, feed)["y"]
    after = model.transform(MoveScalesPastConcat())
    concat = next(node for node in after.graph.node if node.op_type == "Concat")
    assert [str(after.get_tensor_datatype(name)) for name in [*concat.input, concat.output[0]]] == ["INT6"] * 3
    scales = after.find_consumer(concat.output[0])
    assert scales.op_type == "Mul" and after.get_initializer(scales.input[1]).tolist() == [[0.5, 0.5, 1, 1, 1]]
    np.testing.assert_array_equal(execute_onnx(after, feed)["y"], before)


# ------------------------------------------------------------------------- 16: a residual join of float-scaled branches

def test_a_residual_cnn_with_a_float_scaled_relu_branch_is_refused_before_the_build(tmp_path, capsys):
    torch.manual_seed(0)
    model = ResidualCNN()
    model.act2 = QuantReLU(return_quant_tensor=True)  # Brevitas' default: a learned float scale
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, 1, 8, 8) * 2 - 1)
    path = export_qonnx(model.eval(), torch.rand(1, 1, 8, 8), tmp_path / "residual_relu.onnx")
    previous = fake_build(tmp_path / "build")
    before = snapshot(previous)
    expect_error(capsys, 2, "build", "--model", path, "--config", ROOT / "build_configs" / "unrolled.yaml",
                 "--out", previous, names=["residual_relu.onnx", "Add node 'Add_0'", "not an integer",
                                          "QuantReLU(act_quant=psa_finn.nn.quantizers.UnsignedActQuant)"])
    assert snapshot(previous) == before  # refused before finn-plus ran: the previous build as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "residual_relu.onnx"]  # no build.failed/


# ------------------------------------------------------------------------- re-trial: weights that quantize to zero

def common_weight_cnn(cnv_init):
    """[N, 1, 8, 8] -> 2-bit CommonActQuant -> two QuantConv2d and a QuantLinear with brevitas_examples'
    CommonWeightQuant 2-bit weights (a fixed scale of 1.0), CNV-style; `cnv_init`: the weights drawn from
    uniform(-1, 1) as brevitas_examples' CNV does, else PyTorch's default initialisation (|w| < 0.34 here)."""
    from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant

    weights = dict(weight_quant=CommonWeightQuant, weight_bit_width=2, bias=False)
    torch.manual_seed(0)
    model = nn.Sequential(
        QuantIdentity(act_quant=CommonActQuant, bit_width=2, return_quant_tensor=True),
        QuantConv2d(1, 8, 3, **weights), QuantIdentity(act_quant=CommonActQuant, bit_width=2, return_quant_tensor=True),
        QuantConv2d(8, 8, 3, **weights), QuantIdentity(act_quant=CommonActQuant, bit_width=2, return_quant_tensor=True),
        nn.Flatten(), QuantLinear(8 * 4 * 4, 10, **weights))
    if cnv_init:
        for layer in model:
            if isinstance(layer, (QuantConv2d, QuantLinear)):
                nn.init.uniform_(layer.weight.data, -1, 1)
    return model.eval()


@pytest.mark.parametrize("command", ["build", "lower"])
def test_weights_that_all_quantize_to_zero_are_named_before_the_build(tmp_path, capsys, command):
    path = export_qonnx(common_weight_cnn(cnv_init=False), torch.rand(1, 1, 8, 8), tmp_path / "cnn.onnx")
    previous = fake_build(tmp_path / "build")
    before = snapshot(previous)
    args = ["--config", UNROLLED, "--out", previous] if command == "build" else ["--out", tmp_path / "l.onnx"]
    expect_error(capsys, 2, command, "--model", path, *args,  # before: exit 2 "AssertionError: Factor and x are <= 0"
                 names=["cnn.onnx", "Conv node 'Conv_0'", "quantizes to 0", "scale 1", "nn.init.uniform_"])
    assert snapshot(previous) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "cnn.onnx"]  # no build.failed/, no l.onnx


@pytest.mark.slow
def test_the_same_cnn_initialised_as_cnv_builds_exactly(tmp_path):
    path = export_qonnx(common_weight_cnn(cnv_init=True), torch.rand(1, 1, 8, 8), tmp_path / "cnn.onnx")
    summary = _build_summary(path, tmp_path / "build")
    assert summary["all_nodes_on_hw"] and summary["verification"]["max_abs_diff"] == 0.0
