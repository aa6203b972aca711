"""LowerKANLinear: Quant -> KANLinear -> Quant becomes integer per-edge tables (KANLUT) bit-exact to the exported
graph; the tables by hand on a tiny node; clear errors where the edge grid is missing."""

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, KAN_LUT_OP, OPS_DOMAIN, is_op
from psa_finn.export import export_qonnx
from psa_finn.nn import QuantKANLinear
from psa_finn.transforms.lower_kan_linear import LowerKANLinear, integer_datatype


@pytest.mark.parametrize("function,affine", [("bspline", False), ("lerp_psa", True)])
def test_lowered_network_equals_the_exported_one(tmp_path, function, affine):
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        QuantKANLinear(6, 5, bit_width=4, function=function, input_affine=affine, return_quant_tensor=True),
        QuantKANLinear(5, 3, bit_width=4, function=function, input_quant=None))
    if affine:
        model[0].set_input_affine(torch.linspace(0.5, 1.5, 6), torch.linspace(-0.5, 0.5, 6))
    x = torch.randn(256, 6) * 2
    model.train()
    for _ in range(3):
        model(x)
    model.eval()
    exported = ModelWrapper(str(export_qonnx(model, x[:1], tmp_path / "kan.onnx")))
    lowered = exported.transform(LowerKANLinear()).transform(InferShapes())
    assert not any(is_op(n, KAN_LINEAR_OP) for n in lowered.graph.node)
    assert sum(is_op(n, KAN_LUT_OP) for n in lowered.graph.node) == 2
    for sample in x.numpy()[:, None]:
        expected = execute_onnx(exported, {"global_in": sample})["global_out"]
        assert np.array_equal(execute_onnx(lowered, {"global_in": sample})["global_out"], expected)


def _tiny_model(edge_scale):
    """Quant (INT2, scale 1: codes -2..1) -> KANLinear(1 -> 1, grid [-2, 2], table 0.3 * x^2) -> Quant."""
    tables = (0.3 * np.linspace(-2, 2, 5) ** 2).reshape(1, 1, 5).astype(np.float32)
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b2"], ["q"], domain="qonnx.custom_op.general", signed=1,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node(KAN_LINEAR_OP, ["q", "tables"], ["k"], domain=OPS_DOMAIN, grid_range=2.0,
                              edge_scale=edge_scale, name="kan"),
             helper.make_node("Quant", ["k", "s", "z", "b8"], ["y"], domain="qonnx.custom_op.general", signed=1,
                              narrow=0, rounding_mode="ROUND")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    for name, value in (("s", 1.0), ("z", 0.0), ("b2", 2.0), ("b8", 8.0), ("tables", tables)):
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return model.transform(InferShapes())


def test_integer_tables_by_hand():
    lowered = _tiny_model(0.25).transform(LowerKANLinear())
    kan = next(n for n in lowered.graph.node if is_op(n, KAN_LUT_OP))
    # codes -2, -1, 0, 1 -> 0.3 x^2 = 1.2, 0.3, 0, 0.3 -> / 0.25 rounded half to even: 5 (4.8), 1 (1.2), 0, 1
    assert lowered.get_initializer(kan.input[1]).reshape(-1).tolist() == [5, 1, 0, 1]
    assert lowered.get_tensor_datatype(kan.input[1]) == DataType["UINT3"]
    for code in (-2, -1, 0, 1):
        x = np.array([[code]], dtype=np.float32)
        assert execute_onnx(lowered, {"x": x})["y"] == execute_onnx(_tiny_model(0.25), {"x": x})["y"]


def test_missing_edge_grid_is_refused():
    with pytest.raises(ValueError, match="kan.*power of two"):
        _tiny_model(0.0).transform(LowerKANLinear())
    with pytest.raises(ValueError, match="power of two"):
        _tiny_model(0.3).transform(LowerKANLinear())


def test_integer_datatype_is_the_smallest():
    assert integer_datatype(0, 7) == DataType["UINT3"]
    assert integer_datatype(-8, 7) == DataType["INT4"]
    assert integer_datatype(-9, 7) == DataType["INT5"]
    assert integer_datatype(-1, 8) == DataType["INT5"]
