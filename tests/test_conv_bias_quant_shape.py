"""A QuantConv2d with a quantized bias (AccumulatorBiasQuant, as the README's CNN) through FINN's QONNX conversion:
qonnx's ExtractBiasFromConv fails on the exported rank-0 zero point; ConvBiasQuantScalarsAsVectors gives it shape
[1] without changing what the graph computes, and the conversion then computes what the export computes."""

from copy import deepcopy

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from psa_finn.build_configs import finn_shims
from psa_finn.export import export_qonnx
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant, TensorWeightQuant

finn_shims.boot_finn("/tmp/psa_finn_test_conv_bias_quant_shape")

from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN  # noqa: E402

from psa_finn.transforms.conv_bias_quant_shape import ConvBiasQuantScalarsAsVectors  # noqa: E402


def exported_conv(path, weight_quant):
    """QuantIdentity -> QuantConv2d(2, 3, 3) with its bias on the accumulator grid, exported with export_qonnx."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                                QuantConv2d(2, 3, 3, padding=1, weight_quant=weight_quant,
                                            bias_quant=AccumulatorBiasQuant))
    with torch.no_grad():
        model[1].bias.uniform_(-1, 1)
    return ModelWrapper(str(export_qonnx(model, torch.randn(1, 2, 5, 5), path)))


def bias_quant(model):
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    return model.find_producer(conv.input[2])


def run(model, x):
    return execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]


@pytest.mark.parametrize("weight_quant", [ChannelWeightQuant, TensorWeightQuant])
def test_quantized_conv_bias_converts_to_finn_computing_the_same(tmp_path, weight_quant):
    exported = exported_conv(tmp_path / "conv.onnx", weight_quant)
    scalars = [name for name in bias_quant(exported).input[1:3] if exported.get_initializer(name).ndim == 0]
    assert scalars, "the export no longer holds a rank-0 bias scale or zero point"
    with pytest.raises(ValueError, match="cannot reshape"):
        deepcopy(exported).transform(ConvertQONNXtoFINN())

    fixed = deepcopy(exported).transform(ConvBiasQuantScalarsAsVectors())
    for name in bias_quant(fixed).input[1:3]:
        assert fixed.get_initializer(name).ndim == 1
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 5)).astype(np.float32)
    expected = run(exported, x)
    np.testing.assert_array_equal(run(fixed, x), expected)
    converted = fixed.transform(ConvertQONNXtoFINN())
    assert "Conv" in {node.op_type for node in converted.graph.node}
    np.testing.assert_array_equal(run(converted, x), expected)
    _, changed = ConvBiasQuantScalarsAsVectors().apply(fixed)
    assert not changed
