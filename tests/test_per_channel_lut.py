"""The qonnx PerChannelLUT op and the table layouts of custom_ops.lut_tables: hand-computed lookups (full and
lerp64 with round half up), lerp64 build/decode, datatype inference, errors."""

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
from psa_finn.custom_ops.lut_tables import lerp64_decode, lerp64_table, lut_lookup, table_entries


def lut_model(table, idt, odt, mode, channels, name="lut0"):
    node = helper.make_node("PerChannelLUT", ["x", "table"], ["y"], domain="psa_finn.custom_ops", inputDataType=idt,
                            outputDataType=odt, mode=mode, name=name)
    graph = helper.make_graph([node], "lut", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, channels])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                                helper.make_opsetid("psa_finn.custom_ops", 1)]))
    model.set_initializer("table", np.asarray(table, dtype=np.float32))
    return model


def run(model, x):
    return execute_onnx(model, {"x": np.asarray(x, dtype=np.float32)})["y"]


def test_registered_in_custom_ops_domain():
    node = lut_model(np.zeros((1, 4)), "INT2", "UINT4", "full", 1).graph.node[0]
    assert isinstance(getCustomOp(node), custom_ops.PerChannelLUT)


def test_full_table_indexes_by_code_minus_input_minimum():
    table = [[10, 11, 12, 13], [3, 2, 1, 0]]
    x = [[[-2, -2], [-1, 0], [0, 1], [1, -1]]]
    expected = [[[10, 3], [11, 1], [12, 0], [13, 2]]]
    y = run(lut_model(table, "INT2", "UINT4", "full", 2), x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)


def test_lerp64_interpolates_two_fraction_bits_with_round_half_up():
    # UINT4 input: 16 codes, 5 entries (codes 0, 4, 8, 12 and 16 = one past the end)
    table = [[0, 4, 8, 6, 6], [0, 2, 2, 0, 0]]
    x = [[[5, 1], [11, 5], [14, 2], [2, 9]]]
    # ch0: k=5: 4 + floor((4*1+2)/4) = 5; k=11: 8 + floor((-2*3+2)/4) = 7; k=14: 6; k=2: 0 + floor((4*2+2)/4) = 2
    # ch1: k=1: 0 + floor((2+2)/4) = 1 (0.5 rounds up); k=5: 2; k=2: 0 + floor((2*2+2)/4) = 1;
    #      k=9: 2 + floor((-2+2)/4) = 2 (1.5 rounds up to 2)
    expected = [[[5, 1], [7, 2], [6, 1], [2, 2]]]
    np.testing.assert_array_equal(run(lut_model(table, "UINT4", "UINT4", "lerp64", 2), x), expected)


def test_lerp64_at_8_bits_stores_65_entries_and_reads_the_last_for_the_top_codes():
    assert table_entries("lerp64", 8) == 65
    assert table_entries("full", 8) == 256
    table = np.zeros((1, 65))
    table[0, 64] = 40
    # INT8 codes 124..127 are k = 252..255: segment 63, between entry 63 (0) and entry 64 (40)
    y = run(lut_model(table, "INT8", "UINT8", "lerp64", 1), [[[124], [125], [126], [127]]])
    np.testing.assert_array_equal(y.reshape(-1), [0, 10, 20, 30])


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), slope=st.integers(-3, 3), offset=st.integers(-20, 20), channels=st.integers(1, 3))
def test_lerp64_reconstructs_integer_slope_lines_exactly(bits, slope, offset, channels):
    codes = np.arange(2**bits + 1)
    line = np.tile(offset + slope * codes, (channels, 1))
    compressed = lerp64_table(line[:, :-1], line[:, -1])
    assert compressed.shape == (channels, 2 ** (bits - 2) + 1)
    np.testing.assert_array_equal(compressed, line[:, ::4])
    np.testing.assert_array_equal(lerp64_decode(compressed), line[:, :-1])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), bits=st.integers(2, 8), channels=st.integers(1, 4))
def test_lookup_matches_table_indexing_and_decode(data, bits, channels):
    full = np.array(data.draw(st.lists(st.lists(st.integers(-128, 127), min_size=2**bits, max_size=2**bits),
                                       min_size=channels, max_size=channels)))
    past_end = np.array(data.draw(st.lists(st.integers(-128, 127), min_size=channels, max_size=channels)))
    index = np.array(data.draw(st.lists(st.lists(st.integers(0, 2**bits - 1), min_size=channels,
                                                 max_size=channels), min_size=1, max_size=6)))
    np.testing.assert_array_equal(lut_lookup(full, index, "full"), full[np.arange(channels), index])
    compressed = lerp64_table(full, past_end)
    decoded = lerp64_decode(compressed)
    np.testing.assert_array_equal(lut_lookup(compressed, index, "lerp64"), decoded[np.arange(channels), index])
    np.testing.assert_array_equal(decoded[:, ::4], full[:, ::4])
    low, high = np.minimum(full[:, ::4], compressed[:, 1:]), np.maximum(full[:, ::4], compressed[:, 1:])
    segments = decoded.reshape(channels, -1, 4)
    assert np.all((segments >= low[..., None]) & (segments <= high[..., None]))


def test_datatype_and_shape_inference_use_output_datatype():
    model = lut_model(np.zeros((2, 4)), "INT2", "INT5", "full", 2).transform(InferShapes()).transform(InferDataTypes())
    assert model.get_tensor_datatype("y") == DataType["INT5"]
    assert model.get_tensor_shape("y") == [1, 4, 2]


def test_integer_codes_with_float_noise_are_accepted():
    y = run(lut_model([[10, 11, 12, 13]], "UINT2", "UINT4", "full", 1), [[[0.0004], [0.9996], [2.0], [3.0]]])
    np.testing.assert_array_equal(y.reshape(-1), [10, 11, 12, 13])


@pytest.mark.parametrize("table, idt, odt, mode, x, message", [
    (np.zeros((1, 8)), "UINT2", "UINT4", "full", [[[0]] * 4], r"lut_bad.*table \[C, 4\]"),
    (np.zeros((1, 4)), "UINT2", "UINT4", "lerp64", [[[0]] * 4], r"lut_bad.*lerp64 needs input codes of at least 3"),
    (np.zeros((1, 4)), "UINT3", "UINT4", "lerp64", [[[0]] * 4], r"lut_bad.*table \[C, 3\]"),
    (np.zeros((1, 4)), "UINT2", "UINT4", "full", [[[0.5]] * 4], "lut_bad.*integer codes of UINT2"),
    (np.zeros((1, 4)), "UINT2", "UINT4", "full", [[[4]] * 4], "lut_bad.*integer codes of UINT2"),
    (np.full((1, 4), 16), "UINT2", "UINT4", "full", [[[0]] * 4], "lut_bad.*integers of UINT4"),
    (np.zeros((1, 4)), "FLOAT32", "UINT4", "full", [[[0]] * 4], "lut_bad.*not an integer DataType"),
])
def test_bad_tables_codes_and_attributes_are_errors_naming_the_node(table, idt, odt, mode, x, message):
    with pytest.raises(ValueError, match=message):
        run(lut_model(table, idt, odt, mode, 1, name="lut_bad"), x)


def test_verify_node_names_problems():
    assert getCustomOp(lut_model(np.zeros((1, 4)), "UINT2", "UINT4", "full", 1).graph.node[0]).verify_node() == [
        "The number of inputs is correct", "All necessary attributes exist"]
    node = helper.make_node("PerChannelLUT", ["x"], ["y"], domain="psa_finn.custom_ops", inputDataType="INT1",
                            outputDataType="UINT4", mode="lerp64", name="lut_v")
    messages = getCustomOp(node).verify_node()
    assert any("lut_v" in m and "2 inputs" in m for m in messages)
    assert any("lut_v" in m and "at least 3 bits" in m for m in messages)
