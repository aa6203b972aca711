"""FoldQuantizedConvBias on Brevitas exports of QuantConv1d/QuantConv2d with biases on the accumulator grid: qonnx's
ExtractBiasFromConv (run by finn-plus's step_qonnx_to_finn) fails on their bias Quant; folded, the bias is a plain
initializer, the graph computes the same bits and the extraction works. A bias Quant read elsewhere too stays."""

from copy import deepcopy

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv1d, QuantConv2d, QuantIdentity
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.extract_conv_bias import ExtractBiasFromConv
from qonnx.transformation.infer_shapes import InferShapes

from psa_finn.export import export_qonnx
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant
from psa_finn.transforms.fold_conv_bias_quant import FoldQuantizedConvBias

INPUTS = {QuantConv1d: (3, 12), QuantConv2d: (3, 6, 6)}


def exported_conv(tmp_path, layer):
    torch.manual_seed(0)
    model = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True),
                                layer(3, 5, 3, padding=1, weight_quant=ChannelWeightQuant, weight_bit_width=4,
                                      bias_quant=AccumulatorBiasQuant))
    with torch.no_grad():
        model[1].bias.normal_()
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *INPUTS[layer]))
    return ModelWrapper(str(export_qonnx(model.eval(), torch.randn(1, *INPUTS[layer]), tmp_path / "conv.onnx")))


def run(model, x):
    return execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]


@pytest.mark.parametrize("layer", sorted(INPUTS, key=lambda c: c.__name__))
def test_quantized_conv_bias_becomes_its_constant_and_the_graph_computes_the_same(tmp_path, layer):
    model = exported_conv(tmp_path, layer)
    (conv,) = model.get_nodes_by_op_type("Conv")
    assert model.find_producer(conv.input[2]).op_type == "Quant"
    with pytest.raises(ValueError, match="cannot reshape array of size 1"):
        deepcopy(model).transform(ExtractBiasFromConv())
    folded = model.transform(FoldQuantizedConvBias()).transform(InferShapes())
    (conv,) = folded.get_nodes_by_op_type("Conv")
    assert folded.find_producer(conv.input[2]) is None and folded.get_initializer(conv.input[2]) is not None
    assert len(folded.get_nodes_by_op_type("Quant")) == 2   # the input's and the weights'
    x = np.random.default_rng(0).normal(size=(1, *INPUTS[layer])).astype(np.float32)
    expected = run(model, x)
    assert np.array_equal(run(folded, x), expected)
    assert np.array_equal(run(folded.transform(ExtractBiasFromConv()).transform(InferShapes()), x), expected)


def test_a_bias_quant_that_another_node_reads_stays(tmp_path):
    model = exported_conv(tmp_path, QuantConv2d)
    (conv,) = model.get_nodes_by_op_type("Conv")
    model.graph.node.append(helper.make_node("Identity", [conv.input[2]], ["bias_copy"]))
    before = [node.op_type for node in model.graph.node]
    assert [node.op_type for node in model.transform(FoldQuantizedConvBias()).graph.node] == before
