"""The lowered forms never feed FINN a pattern its streamlining loops on: a LerpPSA bank with falling channels
between 2-bit layers (the TFC pattern that hung the build when falling channels became MultiThreshold -> per-channel
+-scale Mul) lowers to a table, and finn-plus's QONNX conversion + StreamlinePlus finish on it."""

import subprocess
import sys

import numpy as np
from onnx import helper

from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions
from quantized_graphs import OPSETS

STREAMLINE = """
import sys
from qonnx.core.modelwrapper import ModelWrapper
from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
from finn.transformation.streamline.streamline_plus import StreamlinePlus
import psa_finn.custom_ops
model = ModelWrapper(sys.argv[1]).transform(ConvertQONNXtoFINN()).transform(StreamlinePlus())
print(" ".join(node.op_type for node in model.graph.node))
"""
STREAMLINE_TIMEOUT_S = 120  # it takes about 2 s; the old form never finished


def quant(tensor, output, scale, bits, signed, name):
    return helper.make_node("Quant", [tensor, scale, "zero", bits], [output], domain="qonnx.custom_op.general",
                            name=name, signed=int(signed), narrow=0, rounding_mode="ROUND")


def two_bit_layers_with_a_falling_bank(channels=6):
    """x -> Quant -> MatMul -> ReLU -> Quant (2 bit) -> LerpPSA (odd channels falling) -> Quant (2 bit) -> MatMul
    -> ReLU -> Quant: brevitas_examples' TFC pattern with a learnable function after the activation."""
    from onnx import TensorProto
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    rng = np.random.default_rng(0)
    grid = np.linspace(-2, 2, 64)
    nodes = [quant("x", "xq", "s_x", "b4", True, "quant_x"), helper.make_node("MatMul", ["xq", "w1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), quant("r1", "h", "s_a", "b2", False, "quant_act"),
             helper.make_node("LerpPSA", ["h", "table"], ["f"], domain="psa_finn.custom_ops", name="psa",
                              grid_range=2.0),
             quant("f", "g", "s_f", "b2", True, "quant_psa"), helper.make_node("MatMul", ["g", "w2"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]), quant("r2", "y", "s_a", "b2", False, "quant_y")]
    graph = helper.make_graph(nodes, "tfc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=OPSETS))
    for name, value in {"s_x": 0.25, "zero": 0.0, "b4": 4.0, "b2": 2.0, "s_a": 0.5, "s_f": 0.5,
                        "w1": rng.integers(-2, 3, (8, channels)), "w2": rng.integers(-2, 3, (channels, 4)),
                        "table": np.stack([grid if c % 2 == 0 else -grid for c in range(channels)])}.items():
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return model.transform(InferShapes())


def test_a_falling_bank_lowers_to_a_table_that_finn_streamlines_to_the_end(tmp_path):
    lowered, report = lower_quantized_functions(two_bit_layers_with_a_falling_bank(), "auto")
    psa = next(entry for entry in report if entry.node == "psa")
    assert (psa.form, psa.rising_channels, psa.falling_channels) == ("PerChannelLUT full", 3, 3)
    assert "FactorOutMulSignMagnitude" in psa.reason
    assert not [n for n in lowered.graph.node if n.op_type == "Mul" and
                np.any(lowered.get_initializer(n.input[1]) < 0)], "no sign Mul"
    lowered.save(str(tmp_path / "lowered.onnx"))
    done = subprocess.run([sys.executable, "-c", STREAMLINE, str(tmp_path / "lowered.onnx")], capture_output=True,
                          text=True, timeout=STREAMLINE_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["MultiThreshold", "MatMul", "MultiThreshold", "PerChannelLUT", "MatMul",
                                   "MultiThreshold", "Mul"]
