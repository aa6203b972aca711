"""Biases on the accumulator grid (nn.quantizers.AccumulatorBiasQuant): the exported bias is an integer times
input scale * weight scale, so every Linear/Conv of the QONNX graph computes its sum exactly in float32 (what FINN's
integer thresholds compute), and torch equals the graph bit for bit; a float bias is not exact."""

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from psa_finn.export import export_qonnx
from psa_finn.nn import QuantLerpPSA
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant


def network(bias_quant):
    q = dict(weight_quant=ChannelWeightQuant, bias_quant=bias_quant)
    return torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                               QuantConv2d(1, 6, 3, **q), QuantIdentity(act_quant=SignedActQuant,
                                                                        return_quant_tensor=True),
                               torch.nn.Flatten(), QuantLinear(6 * 6 * 6, 12, **q),
                               QuantLerpPSA(12, return_quant_tensor=True), QuantLinear(12, 10, **q))


def trained(model, seed=0):
    return trained_on(model, (32, 1, 8, 8), seed)


def trained_on(model, shape, seed=0):
    """`model` after three SGD steps on random inputs of `shape` (quantizer ranges collected), in eval mode."""
    torch.manual_seed(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for _ in range(3):
        loss = model(torch.randn(shape)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def upstream_quant(model, tensor):
    """The Quant node `tensor` comes from (through shape-only nodes such as Flatten)."""
    node = model.find_producer(tensor)
    while node.op_type != "Quant":
        node = model.find_producer(node.input[0])
    return node


def layer_sums(model, context):
    """[(node, float32 output, float64 recomputation)] of every Gemm / Conv of the executed graph."""
    sums = []
    for node in model.graph.node:
        if node.op_type == "Gemm":
            x, w, b = (context[name].astype(np.float64) for name in node.input)
            sums.append((node.name, context[node.output[0]], x @ w.T + b))
        elif node.op_type == "Conv":
            x, w, b = (torch.from_numpy(context[name].astype(np.float64)) for name in node.input)
            sums.append((node.name, context[node.output[0]], torch.nn.functional.conv2d(x, w, b).numpy()))
    return sums


def test_biases_sit_on_the_accumulator_grid_and_sum_exactly(tmp_path):
    model = trained(network(AccumulatorBiasQuant))
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    onnx_model = ModelWrapper(str(export_qonnx(model, x, tmp_path / "m.onnx", tolerance=0.0)))
    layers = [n for n in onnx_model.graph.node if n.op_type in ("Gemm", "Conv")]
    assert len(layers) == 3
    for layer in layers:
        x_quant, w_quant, quant = (upstream_quant(onnx_model, name) for name in layer.input)
        scale = onnx_model.get_initializer(quant.input[1])
        assert np.array_equal(scale, onnx_model.get_initializer(x_quant.input[1]) *
                              onnx_model.get_initializer(w_quant.input[1]).reshape(-1))
        codes = onnx_model.get_initializer(quant.input[0]) / scale
        assert int(onnx_model.get_initializer(quant.input[3])) == 32 and np.all(np.log2(scale) % 1 == 0)
        assert np.any(np.abs(codes - np.round(codes)) > 0)  # the float bias is off the grid; the Quant snaps it
    context = execute_onnx(onnx_model, {"global_in": x.numpy()}, return_full_exec_context=True)
    sums = layer_sums(onnx_model, context)
    assert len(sums) == 3
    for name, float32, exact in sums:
        assert np.array_equal(float32.astype(np.float64), exact), name
    with torch.no_grad():
        assert np.array_equal(model(x).numpy(), context["global_out"])


def test_float_biases_are_not_exact(tmp_path):
    model = trained(network(None))
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    onnx_model = ModelWrapper(str(export_qonnx(model, x, tmp_path / "m.onnx")))
    context = execute_onnx(onnx_model, {"global_in": x.numpy()}, return_full_exec_context=True)
    assert any(not np.array_equal(float32.astype(np.float64), exact)
               for _, float32, exact in layer_sums(onnx_model, context))


def test_a_bias_quantized_on_the_accumulator_grid_is_a_constant_of_the_function_after_it(tmp_path):
    """QuantLinear(bias_quant=AccumulatorBiasQuant) -> QuantSigmoid on tokens [N, T, C] (MatMul, then Add of the
    quantized bias): S = Add(Quant(bias)) -> Sigmoid reads one variable tensor, the accumulator, so it is lowered to
    thresholds; a ReLU after such a Linear is left to FINN."""
    from brevitas.nn import QuantReLU, QuantSigmoid

    from psa_finn.transforms.lower_quantized_functions import LEFT_TO_FINN, MULTITHRESHOLD, lower_quantized_functions

    for activation, op, form in ((QuantSigmoid(), "Sigmoid", MULTITHRESHOLD), (QuantReLU(), "Relu", LEFT_TO_FINN)):
        model = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                                    QuantLinear(6, 4, weight_quant=ChannelWeightQuant,
                                                bias_quant=AccumulatorBiasQuant), activation)
        x = torch.randn(16, 3, 6, generator=torch.Generator().manual_seed(2))
        exported = ModelWrapper(str(export_qonnx(trained_on(model, (32, 3, 6)), x, tmp_path / "m.onnx")))
        assert [n.op_type for n in exported.graph.node][-4:-1] == ["MatMul", "Add", op]
        lowered, report = lower_quantized_functions(ModelWrapper(str(tmp_path / "m.onnx")), "auto")
        assert [entry.form for entry in report] == [form]
        feed = {"global_in": x.numpy()}
        assert np.array_equal(execute_onnx(lowered, feed)["global_out"], execute_onnx(exported, feed)["global_out"])
