"""psa_finn.nn: QuantLerpPSA / QuantBSpline behave as Brevitas activation layers on every layout, equal their exported
`Quant -> LerpPSA -> Quant` graph bit for bit, start QAT from a float module, and refuse wrong layouts clearly."""

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant_tensor import QuantTensor
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from psa_finn.custom_ops.domain import LERP_PSA_OP, is_op
from psa_finn.export import export_qonnx
from psa_finn.nn import PSA, BSpline, LerpPSA, QuantBSpline, QuantLerpPSA, ResPSA
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant

CHANNELS = 5
EXACT = dict(weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)  # power-of-two scales: exact


def quant_input():
    return QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True)


def layout_model(layout, function=QuantLerpPSA):
    """(model, input shape, channel axis) of a small network whose learnable function sees `layout`."""
    if layout == "NC":
        return torch.nn.Sequential(quant_input(), QuantLinear(6, CHANNELS, **EXACT), function(CHANNELS)), (16, 6), 1
    if layout == "NCW":
        return (torch.nn.Sequential(quant_input(), QuantConv1d(2, CHANNELS, 3, **EXACT), function(CHANNELS)),
                (4, 2, 9), 1)
    if layout == "NCHW":
        return (torch.nn.Sequential(quant_input(), QuantConv2d(1, CHANNELS, 3, **EXACT), function(CHANNELS)),
                (4, 1, 6, 6), 1)
    if layout == "NHWC":
        return torch.nn.Sequential(function(CHANNELS, channel_dim=-1)), (4, 3, 3, CHANNELS), -1
    if layout == "NTC":
        return (torch.nn.Sequential(quant_input(), QuantLinear(6, CHANNELS, **EXACT),
                                    function(CHANNELS, channel_dim=-1)), (4, 3, 6), -1)
    raise ValueError(layout)


def trained(model, shape, seed=0, steps=3):
    """`model` after a few SGD steps on random data (quantizer ranges collected, functions moved), in eval mode."""
    torch.manual_seed(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        out = model(torch.randn(shape) * 2)
        (getattr(out, "value", out) ** 2).mean().backward()
        optimiser.step()
    return model.eval()


LAYOUTS = ("NC", "NCW", "NCHW", "NHWC", "NTC")


@pytest.mark.parametrize("function", [QuantLerpPSA, QuantBSpline])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_equals_the_exported_graph_bit_for_bit(layout, function, seed, tmp_path):
    model, shape, axis = layout_model(layout, function)
    model = trained(model, shape, seed)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 10)) * 3  # beyond the grid too
    path = export_qonnx(model, x, tmp_path / "m.onnx", tolerance=0.0)
    onnx_model = ModelWrapper(str(path))
    with torch.no_grad():
        expected = model(x).numpy()
    produced = execute_onnx(onnx_model, {"global_in": x.numpy()})["global_out"]
    assert np.array_equal(produced, expected)
    functions = [n for n in onnx_model.graph.node if is_op(n, LERP_PSA_OP)]
    assert len(functions) == 1
    node = functions[0]
    assert onnx_model.find_producer(node.input[0]).op_type == "Quant"
    assert [c.op_type for c in onnx_model.find_consumers(node.output[0])] == ["Quant"]
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["channel_axis"] == axis
    assert onnx_model.get_tensor_shape(node.output[0]) == onnx_model.get_tensor_shape(node.input[0])
    layer = model[-1]
    with torch.no_grad():
        assert np.array_equal(onnx_model.get_initializer(node.input[1]), layer.table().numpy())


def test_exported_output_is_typed_without_a_shape_inference_warning(tmp_path, recwarn, capfd):
    model, shape, _ = layout_model("NTC")
    export_qonnx(trained(model, shape), torch.randn(shape), tmp_path / "m.onnx")
    assert "shape inference of psa_finn.custom_ops::LerpPSA" not in capfd.readouterr().err
    assert not [w for w in recwarn if "LerpPSA" in str(w.message)]


def test_a_quant_tensor_input_is_not_quantized_again(tmp_path):
    torch.manual_seed(0)
    layer = QuantLerpPSA(CHANNELS, channel_dim=-1, return_quant_tensor=True)
    model = trained(torch.nn.Sequential(quant_input(), layer), (8, CHANNELS))
    x = torch.randn(8, CHANNELS)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, QuantTensor) and torch.equal(out.scale, layer.act_quant.scale())
    assert layer.input_quant.is_quant_enabled  # enabled, yet a QuantTensor input passes straight to the function
    onnx_model = ModelWrapper(str(export_qonnx(model, x, tmp_path / "m.onnx", tolerance=0.0)))
    assert [n.op_type for n in onnx_model.graph.node] == ["Quant", "LerpPSA", "Quant"]  # a QuantTensor output too
    assert [o.name for o in onnx_model.graph.output] == ["global_out"]


def test_bit_width_sets_both_quantizers_and_input_kwargs_only_the_input():
    layer = QuantLerpPSA(3, bit_width=5, input_bit_width=7)
    assert int(layer.input_quant.bit_width()) == 7 and int(layer.act_quant.bit_width()) == 5
    layer = QuantBSpline(3, bit_width=4)
    assert int(layer.input_quant.bit_width()) == 4 and int(layer.act_quant.bit_width()) == 4
    assert not QuantLerpPSA(3, input_quant=None).input_quant.is_quant_enabled


def test_from_float_equals_the_float_module_up_to_quantization():
    torch.manual_seed(0)
    lerp = LerpPSA(4)
    x = torch.randn(64, 4) * 2
    plain = QuantLerpPSA.from_float(lerp, channel_dim=-1, input_quant=None, act_quant=None).eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), lerp(x), rtol=0, atol=1e-6)  # float64 once rounded vs the float32 kernel
        assert torch.equal(plain.table(), lerp.table())
    quant = QuantLerpPSA.from_float(lerp, channel_dim=-1).train()
    with torch.no_grad():
        quant(x)  # collects the quantizer ranges
        quant.eval()
        in_scale, out_scale = float(quant.input_quant.scale()), float(quant.act_quant.scale())
        slope = float((lerp.table().diff(dim=1).abs() * 63 / 8).max())
        error = (quant(x) - lerp(x)).abs()
    inside = (x.abs() < 4 - in_scale).all(dim=1)  # no clipping of the input codes
    assert float(error[inside].max()) <= slope * in_scale / 2 + out_scale / 2 + 1e-6


def test_from_float_keeps_the_residual_the_exact_psa_and_the_bspline():
    torch.manual_seed(1)
    x = torch.linspace(-5, 5, 101)[:, None].expand(-1, 3)
    res = ResPSA(3, is_in_residual=True)
    layer = QuantLerpPSA.from_float(res, channel_dim=-1, input_quant=None, act_quant=None).eval()
    assert layer.residual
    with torch.no_grad():
        assert torch.allclose(layer(x), res(x), atol=1e-6)
        assert torch.equal(layer.table(), res.table())
    exact = PSA(3)
    layer = QuantLerpPSA.from_float(exact, channel_dim=-1, input_quant=None, act_quant=None).eval()
    with torch.no_grad():
        assert torch.allclose(layer.table(), exact.table(), atol=1e-6)  # the same function, now tabulated
    spline = BSpline(3)
    with torch.no_grad():
        spline._coefficients_vect.normal_()
    layer = QuantBSpline.from_float(spline, channel_dim=-1, input_quant=None, act_quant=None).eval()
    with torch.no_grad():
        assert torch.allclose(layer(x), spline(x), rtol=1e-5, atol=1e-5)  # float32 kernel vs float64 once rounded
        assert torch.equal(layer.tv2(), spline.tv2())
    with pytest.raises(TypeError, match="takes a LerpPSA, PSA or ResPSA, got BSpline"):
        QuantLerpPSA.from_float(spline)


def test_input_affine_is_learned_and_applied_before_the_function():
    torch.manual_seed(2)
    lerp = LerpPSA(3)
    scale, shift = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([0.25, -1.0, 0.0])
    layer = QuantLerpPSA.from_float(lerp, channel_dim=-1, input_quant=None, act_quant=None,
                                    input_affine=(scale, shift))
    x = torch.randn(10, 3)
    with torch.no_grad():
        assert torch.allclose(layer.eval()(x), lerp(x * scale + shift), atol=1e-6)
    layer.train()
    layer(x).sum().backward()
    assert layer.in_scale.grad is not None and layer.in_bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="without an input affine"):
        QuantLerpPSA(3).set_input_affine(scale, shift)


def test_training_moves_the_psa_parameters():
    model, shape, _ = layout_model("NC")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained(model, shape)
    changed = {k for k, v in model.state_dict().items() if k not in before or not torch.equal(v, before[k])}
    assert {"2.function.v_weight", "2.function.q_bias", "2.function.o_weight"} <= changed
    assert {"2.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value",
            "2.input_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value"} <= changed


@pytest.mark.parametrize("shape, channel_dim, message", [
    ((4, 6), 1, r"has 6 entries on axis 1, not 5 channels"),
    ((4, 5, 3), -1, r"has 3 entries on axis -1, not 5 channels"),
    ((4, 5), 2, r"has no axis 2"),
    ((5,), 0, r"has no axis 0"),
])
def test_wrong_channel_count_or_channel_dim_is_refused_clearly(shape, channel_dim, message):
    layer = QuantLerpPSA(CHANNELS, channel_dim=channel_dim)
    with pytest.raises(ValueError, match=r"QuantLerpPSA\(num_channels=5, channel_dim=" + str(channel_dim) + r"\): "
                                         r"an input of shape .*" + message + r".*channel_dim=1 for \[N, C\]"):
        layer(torch.zeros(shape))


def test_export_refuses_a_function_without_an_output_quantizer(tmp_path):
    model = torch.nn.Sequential(QuantLerpPSA(CHANNELS, channel_dim=-1, act_quant=None),
                                torch.nn.Linear(CHANNELS, 2))
    with pytest.raises(ValueError, match=r"LerpPSA node .*output must feed exactly one Quant node"):
        export_qonnx(trained(model, (4, CHANNELS)), torch.randn(4, CHANNELS), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
