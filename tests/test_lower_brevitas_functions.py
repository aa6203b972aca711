"""Brevitas models with a float activation between quantizers (nn.GELU erf and tanh, SiLU, Mish, Hardswish, ELU,
Softplus, Sigmoid, Tanh, torch.sin, GELU written out by hand) and Brevitas' QuantSigmoid / QuantTanh, exported to
QONNX as a user exports them, then lowered: identical outputs on every input code, for 2..8 bits, per-tensor and
per-channel quantizers, signed and unsigned."""

import math
from copy import deepcopy

import numpy as np
import pytest
import torch
from brevitas.export import export_qonnx as brevitas_export_qonnx
from brevitas.nn import QuantIdentity, QuantSigmoid, QuantTanh
from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat
from hypothesis import given, settings
from hypothesis import strategies as st
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.cleanup import cleanup_model

from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions
from quantized_graphs import every_code_input

CHANNELS = 3
SHAPE = (1, CHANNELS, 16, 17)  # 272 positions per channel: every 8-bit code fits
EXAMPLES_PER_FUNCTION = 8


class Sin(torch.nn.Module):
    def forward(self, x):
        return torch.sin(x)


class GeluErfByHand(torch.nn.Module):
    def forward(self, x):
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class GeluTanhByHand(torch.nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


ACTIVATIONS = {
    "nn.GELU": torch.nn.GELU, "nn.GELU(tanh)": lambda: torch.nn.GELU(approximate="tanh"), "nn.SiLU": torch.nn.SiLU,
    "nn.Mish": torch.nn.Mish, "nn.Hardswish": torch.nn.Hardswish, "nn.ELU": torch.nn.ELU,
    "nn.Softplus": torch.nn.Softplus, "nn.Sigmoid": torch.nn.Sigmoid, "nn.Tanh": torch.nn.Tanh,
    "torch.sin": Sin, "GELU erf by hand": GeluErfByHand, "GELU tanh by hand": GeluTanhByHand,
    "QuantSigmoid": QuantSigmoid, "QuantTanh": QuantTanh,
}


def act_quant(signed, per_channel):
    """A Brevitas activation quantizer class: per tensor, or one scale per channel of [N, C, H, W]."""
    base = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    if not per_channel:
        return base
    return type("PerChannel" + base.__name__, (base,), {
        "scaling_per_output_channel": True, "per_channel_broadcastable_shape": (1, CHANNELS, 1, 1),
        "scaling_stats_permute_dims": (1, 0, 2, 3)})


class Chain(torch.nn.Module):
    """QuantIdentity -> activation -> QuantIdentity, or QuantIdentity -> QuantSigmoid/QuantTanh (its own output
    quantizer)."""

    def __init__(self, name, in_quant, out_quant):
        super().__init__()
        quant_layer = name in ("QuantSigmoid", "QuantTanh")
        self.quant_in = QuantIdentity(act_quant=act_quant(*in_quant[1:]), bit_width=in_quant[0],
                                      return_quant_tensor=quant_layer)
        if quant_layer:
            self.act = ACTIVATIONS[name](act_quant=act_quant(*out_quant[1:]), bit_width=out_quant[0])
            self.quant_out = torch.nn.Identity()
        else:
            self.act = ACTIVATIONS[name]()
            self.quant_out = QuantIdentity(act_quant=act_quant(*out_quant[1:]), bit_width=out_quant[0])

    def forward(self, x):
        return self.quant_out(self.act(self.quant_in(x)))


def export(model, path):
    """Export as psa_finn's export_qonnx does (TorchScript QONNX export, qonnx clean-up)."""
    brevitas_export_qonnx(model, args=torch.zeros(SHAPE), export_path=str(path), dynamo=False)
    return cleanup_model(ModelWrapper(str(path)))


def quantizer_of(model, node):
    """The settings of an exported Quant node as quantized_graphs.quantizer writes them."""
    op = getCustomOp(node)
    scale, zeropt, bits = (model.get_initializer(name) for name in node.input[1:])
    return {"bits": int(bits), "signed": bool(op.get_nodeattr("signed")), "narrow": bool(op.get_nodeattr("narrow")),
            "scale": scale, "zeropt": zeropt}


@st.composite
def quantizers(draw):
    def one():
        return draw(st.integers(2, 8)), draw(st.booleans()), draw(st.booleans())

    return one(), one(), draw(st.integers(0, 2**16)), draw(st.floats(1.0, 8.0))


def check(name, case, path):
    in_quant, out_quant, seed, spread = case
    torch.manual_seed(seed)
    model = Chain(name, in_quant, out_quant).train()
    with torch.no_grad():  # calibrate the quantizers' scales on data spread like `spread`
        for _ in range(4):
            model(spread * torch.randn(SHAPE) * (1 + torch.arange(CHANNELS)).reshape(1, -1, 1, 1) / 2)
    exported = export(model.eval(), path)
    quant_in = next(n for n in exported.graph.node if n.op_type == "Quant")
    x = every_code_input(list(SHAPE), 1, quantizer_of(exported, quant_in), np.random.default_rng(seed))
    name_in, name_out = exported.graph.input[0].name, exported.graph.output[0].name
    expected = execute_onnx(exported, {name_in: x})[name_out]
    lowered, report = lower_quantized_functions(deepcopy(exported), "auto")
    assert [entry.form for entry in report] in (["MultiThreshold"], ["PerChannelLUT full"]), report
    assert {n.op_type for n in lowered.graph.node} <= {"Quant", "MultiThreshold", "PerChannelLUT", "Mul", "Add"}
    np.testing.assert_array_equal(execute_onnx(lowered, {name_in: x})[name_out], expected)
    return report[0]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_exported_activation_lowers_bit_exactly_on_every_input_code(name, tmp_path):
    @settings(max_examples=EXAMPLES_PER_FUNCTION, deadline=None)
    @given(case=quantizers())
    def run(case):
        check(name, case, tmp_path / "model.onnx")

    run()


@pytest.mark.parametrize("name", ["nn.GELU", "nn.GELU(tanh)", "nn.SiLU", "nn.Mish", "nn.Hardswish", "torch.sin",
                                  "GELU erf by hand", "GELU tanh by hand"])
def test_non_monotone_exports_at_8_bits_become_tables(name, tmp_path):
    entry = check(name, ((8, True, False), (8, True, True), 0, 4.0), tmp_path / "model.onnx")
    assert (entry.form, entry.monotone, entry.entries_per_channel) == ("PerChannelLUT full", False, 256)
