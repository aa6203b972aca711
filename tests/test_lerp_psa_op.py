"""The qonnx LerpPSA op: hand-computed values, extrapolation, in_scale/in_bias, shape/datatype inference, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from psa_finn import custom_ops
from psa_finn.custom_ops.lerp_psa import lerp_psa_numpy
from psa_finn.common.grid import grid_points

# grid_points(5, 2.0) = [-2, -1, 0, 1, 2]
TABLE = np.array([[4.0, 1.0, 0.0, 1.0, 4.0],   # x^2 sampled
                  [1.0, 2.0, 3.0, 2.0, 1.0]], dtype=np.float32)


def lerp_model(shape, table, grid_range, in_scale=None, in_bias=None, name="psa0"):
    inputs = ["x", "table"] + (["in_scale", "in_bias"] if in_scale is not None else [])
    node = helper.make_node("LerpPSA", inputs, ["y"], domain="psa_finn.custom_ops", grid_range=float(grid_range),
                            name=name)
    graph = helper.make_graph([node], "lerp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                                helper.make_opsetid("psa_finn.custom_ops", 1)]))
    model.set_initializer("table", np.asarray(table, dtype=np.float32))
    if in_scale is not None:
        model.set_initializer("in_scale", np.asarray(in_scale, dtype=np.float32))
        model.set_initializer("in_bias", np.asarray(in_bias, dtype=np.float32))
    return model


def run(model, x):
    return execute_onnx(model, {"x": np.asarray(x, dtype=np.float32)})["y"]


def test_registered_in_custom_ops_domain():
    node = lerp_model([1, 2], TABLE, 2.0).graph.node[0]
    assert isinstance(getCustomOp(node), custom_ops.LerpPSA)


def test_hand_computed_values_inside_the_grid():
    x = [[0.5, 0.25], [-1.5, -1.0], [2.0, 2.0], [-2.0, 0.0]]
    expected = [[0.5, 2.75], [2.5, 2.0], [4.0, 1.0], [4.0, 3.0]]
    np.testing.assert_allclose(run(lerp_model([4, 2], TABLE, 2.0), x), expected, rtol=0, atol=1e-6)


def test_linear_extrapolation_with_edge_slopes():
    x = [[3.0, -2.5], [-3.0, 4.0]]
    # channel 0: slope 3 at both edges; channel 1: slope +1 on the left, -1 on the right
    expected = [[7.0, 0.5], [7.0, -1.0]]
    np.testing.assert_allclose(run(lerp_model([2, 2], TABLE, 2.0), x), expected, rtol=0, atol=1e-6)


def test_in_scale_and_in_bias_apply_before_the_lookup():
    model = lerp_model([1, 1, 2], TABLE, 2.0, in_scale=[2.0, -1.0], in_bias=[0.5, 0.0])
    # channel 0: 2*0 + 0.5 = 0.5 -> 0.5; channel 1: -1*1 + 0 = -1 -> 2
    np.testing.assert_allclose(run(model, [[[0.0, 1.0]]]), [[[0.5, 2.0]]], rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(grid_size=st.integers(2, 70), grid_range=st.floats(0.25, 16.0),
       x=st.lists(st.floats(-100.0, 100.0), min_size=1, max_size=12))
def test_table_on_the_grid_points_is_the_identity_everywhere(grid_size, grid_range, x):
    table = np.stack([grid_points(grid_size, grid_range), 2 * grid_points(grid_size, grid_range)])
    x = np.array(x)[:, None].repeat(2, axis=1)
    y = lerp_psa_numpy(x, table, grid_range)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x * [1.0, 2.0], rtol=1e-5, atol=1e-4)


def test_shape_and_datatype_inference():
    model = lerp_model([3, 5, 2], TABLE, 2.0).transform(InferShapes()).transform(InferDataTypes())
    assert model.get_tensor_shape("y") == [3, 5, 2]
    assert model.get_tensor_datatype("y") == DataType["FLOAT32"]


def test_verify_node_accepts_a_valid_node_and_names_problems():
    good = getCustomOp(lerp_model([1, 2], TABLE, 2.0).graph.node[0]).verify_node()
    assert good == ["The number of inputs is correct", "All necessary attributes exist"]
    node = helper.make_node("LerpPSA", ["x", "table", "in_scale"], ["y"], domain="psa_finn.custom_ops", grid_range=-1.0,
                            name="bad_psa")
    messages = getCustomOp(node).verify_node()
    assert any("bad_psa" in m and "inputs" in m for m in messages)
    assert any("bad_psa" in m and "grid_range" in m for m in messages)


@pytest.mark.parametrize("what", ["table", "in_scale", "in_bias"])
def test_non_finite_parameters_are_an_error_naming_the_node(what):
    model = lerp_model([1, 2], TABLE, 2.0, in_scale=[1.0, 1.0], in_bias=[0.0, 0.0], name="psa_bad")
    value = model.get_initializer(what).copy()
    value.flat[0] = np.nan
    model.set_initializer(what, value)
    with pytest.raises(ValueError, match=f"psa_bad.*{what}.*non-finite"):
        run(model, [[0.0, 0.0]])


def test_channel_mismatch_is_an_error_naming_the_node():
    with pytest.raises(ValueError, match="psa_wide.*table has 2 channels"):
        run(lerp_model([1, 3], TABLE, 2.0, name="psa_wide"), [[0.0, 0.0, 0.0]])


def test_half_given_affine_is_an_error():
    with pytest.raises(ValueError, match="together"):
        lerp_psa_numpy(np.zeros((1, 2)), TABLE, 2.0, in_scale=np.ones(2))
