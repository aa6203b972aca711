"""The channel axis of LerpPSA and PerChannelLUT (attribute `channel_axis`, default -1) on NC, NCW, NCHW, NHWC and NTC
tensors, and the lowering of Quant -> LerpPSA -> Quant in each layout: bit-exact on every input code."""

from copy import deepcopy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from qonnx.custom_op.registry import getCustomOp

from psa_finn.custom_ops.domain import HW_DOMAIN
from psa_finn.custom_ops.lut_tables import table_entries
from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions
from quantized_graphs import LAYOUTS, chain_model, channel_shaped, every_code_input, quantizer, run

LAYOUT_EXAMPLES = 25


def op_model(op_type, shape, table, **attributes):
    """x [shape] -> one LerpPSA (grid range 2) or PerChannelLUT node -> y (between Identity nodes)."""
    from onnx import TensorProto
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    from quantized_graphs import OPSETS

    if op_type == "LerpPSA":
        attributes.setdefault("grid_range", 2.0)
    node = helper.make_node(op_type, ["x", "table"], ["y"], domain="psa_finn.custom_ops", name="op", **attributes)
    graph = helper.make_graph([node], "op", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=OPSETS))
    model.set_initializer("table", np.asarray(table, dtype=np.float32))
    return model


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_channel_gets_its_own_function_in_every_layout(layout):
    shape_of, axis = LAYOUTS[layout]
    shape = shape_of(3, 6)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=shape).astype(np.float32)
    # LerpPSA: row c is the constant c + 1 (5 grid points); PerChannelLUT: row c maps code k to 10 c + k
    y = run(op_model("LerpPSA", shape, np.arange(1.0, 4.0)[:, None].repeat(5, 1), channel_axis=axis), x)
    np.testing.assert_array_equal(y, np.broadcast_to(channel_shaped([1, 2, 3], shape, axis), shape))
    codes = rng.integers(-2, 2, size=shape).astype(np.float32)
    lut = op_model("PerChannelLUT", shape, 10 * np.arange(3)[:, None] + np.arange(4), channel_axis=axis,
                   inputDataType="INT2", outputDataType="UINT5")
    np.testing.assert_array_equal(run(lut, codes), codes + 2 + channel_shaped([0, 10, 20], shape, axis))


def test_negative_and_non_negative_axes_agree_and_the_default_is_the_last_axis():
    shape = [2, 3, 4]
    x = np.random.default_rng(1).uniform(-3, 3, size=shape).astype(np.float32)
    table = np.random.default_rng(2).normal(size=(3, 7))
    table_last = np.random.default_rng(2).normal(size=(4, 7))
    np.testing.assert_array_equal(run(op_model("LerpPSA", shape, table, channel_axis=1), x),
                                  run(op_model("LerpPSA", shape, table, channel_axis=-2), x))
    np.testing.assert_array_equal(run(op_model("LerpPSA", shape, table_last), x),
                                  run(op_model("LerpPSA", shape, table_last, channel_axis=2), x))


def test_a_shared_lut_row_serves_every_channel():
    shape = [1, 3, 2, 2]
    codes = np.random.default_rng(3).integers(0, 4, size=shape).astype(np.float32)
    lut = op_model("PerChannelLUT", shape, [[5, 6, 7, 8]], channel_axis=1, inputDataType="UINT2",
                   outputDataType="UINT4")
    np.testing.assert_array_equal(run(lut, codes), codes + 5)


ROWS_MISMATCH = "(channels \\(rows\\) for its {n} entries|one row per channel) on channel_axis {axis}"


@pytest.mark.parametrize("op_type, attributes, table", [
    ("LerpPSA", {}, np.zeros((3, 5))),
    ("PerChannelLUT", {"inputDataType": "INT2", "outputDataType": "INT2"}, np.zeros((3, 4))),
])
@pytest.mark.parametrize("axis, table_rows, message", [
    (4, 3, "channel_axis 4 is out of range for an input of rank 4 \\(use -4 .. 3\\)"),
    (-5, 3, "channel_axis -5 is out of range"),
    (3, 3, ROWS_MISMATCH.format(n=5, axis=3)),
    (1, 2, ROWS_MISMATCH.format(n=3, axis=1)),
])
def test_bad_axes_and_row_counts_are_errors_naming_the_node(op_type, attributes, table, axis, table_rows, message):
    model = op_model(op_type, [1, 3, 2, 5], table[:table_rows], channel_axis=axis, **attributes)
    with pytest.raises(ValueError, match="node 'op'.*" + message):
        run(model, np.zeros((1, 3, 2, 5), dtype=np.float32))


@pytest.mark.parametrize("op_type", ["LerpPSA", "PerChannelLUT"])
def test_verify_node_names_a_channel_axis_that_is_not_an_int(op_type):
    node = helper.make_node(op_type, ["x", "table"], ["y"], domain="psa_finn.custom_ops", name="op_v",
                            grid_range=1.0, inputDataType="INT2", outputDataType="INT2", channel_axis=1.5)
    messages = getCustomOp(node).verify_node()
    assert any("op_v" in m and "channel_axis must be an int" in m for m in messages)


@st.composite
def layout_case(draw, layout):
    """A LerpPSA chain in `layout`: table, grid range, quantizers (per tensor or per channel, signed or not)."""
    channels = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = draw(st.lists(st.sampled_from(["rising", "falling", "random"]), min_size=channels, max_size=channels))
    steps = np.abs(rng.normal(size=(channels, 64)))
    sign = np.array([{"rising": 1.0, "falling": -1.0, "random": 0.0}[k] for k in kinds])[:, None]
    table = np.cumsum(np.where(sign != 0, sign * steps, rng.normal(size=steps.shape)), axis=1) / 8
    grid_range = draw(st.floats(0.5, 4.0))

    def q(span):
        bits = draw(st.integers(2, 8))
        signed = draw(st.booleans())
        per_channel = draw(st.booleans())
        levels = 2 ** (bits - 1) if signed else 2**bits - 1
        scale = rng.uniform(0.5, 1.5, channels if per_channel else 1) * span / levels
        zeropt = 0.0 if signed or not per_channel else rng.integers(0, 2**bits, channels).astype(np.float64)
        return quantizer(bits, signed, scale, zeropt, narrow=draw(st.booleans())), per_channel

    qin, qin_per_channel = q(grid_range * draw(st.floats(0.5, 2.0)))
    qout, qout_per_channel = q(float(np.abs(table).max() + 1e-3) * draw(st.floats(0.3, 1.5)))
    return table.astype(np.float32), grid_range, (qin, qin_per_channel), (qout, qout_per_channel)


def lerp_psa_chain(layout, case, positions):
    table, grid_range, (qin, qin_pc), (qout, qout_pc) = case
    shape_of, axis = LAYOUTS[layout]
    channels = table.shape[0]
    shape = shape_of(channels, positions)
    qin, qout = dict(qin), dict(qout)
    for q, per_channel in ((qin, qin_pc), (qout, qout_pc)):
        for part in ("scale", "zeropt"):
            value = np.broadcast_to(q[part].reshape(-1), channels) if per_channel else q[part].reshape(())
            q[part] = channel_shaped(value, shape, axis) if per_channel else value
    node = helper.make_node("LerpPSA", ["xq", "table"], ["f"], domain="psa_finn.custom_ops", name="psa",
                            grid_range=float(grid_range), channel_axis=axis - len(shape))  # negative axis on purpose
    return chain_model(shape, [node], qin, qout, {"table": table}), shape, axis, qin, qout


def check_layout(layout, case):
    positions = 2 ** case[2][0]["bits"] + 4
    model, shape, axis, qin, qout = lerp_psa_chain(layout, case, positions)
    x = every_code_input(shape, axis, qin, np.random.default_rng(0))
    expected = run(model, x)
    for mode in ("auto", "full", "threshold", "lerp64"):
        try:
            lowered, report = lower_quantized_functions(deepcopy(model), mode)
        except ValueError as err:  # threshold of a non-rising table, lerp64 of 2-bit codes: refused by design
            assert (mode == "threshold" and "non-decreasing" in str(err)) or \
                (mode == "lerp64" and qin["bits"] < 3 and "at least 3 bits" in str(err))
            continue
        entry = report[0]
        produced = run(lowered, x)
        if mode == "lerp64":
            assert entry.form == "PerChannelLUT lerp64"
            assert entry.entries_per_channel == table_entries("lerp64", qin["bits"])
            step = np.broadcast_to(qout["scale"], shape)
            assert np.rint(np.abs(produced - expected) / step).max() <= entry.lerp64_max_abs_error
            continue
        np.testing.assert_array_equal(produced, expected)
        lowered_ops = {n.op_type: n for n in lowered.graph.node}
        per_channel = entry.channel_axis is not None
        if "PerChannelLUT" in lowered_ops:
            attrs = {a.name: helper.get_attribute_value(a) for a in lowered_ops["PerChannelLUT"].attribute}
            assert attrs.get("channel_axis") == (axis if per_channel else None)
        if "MultiThreshold" in lowered_ops and per_channel:
            attrs = {a.name: helper.get_attribute_value(a) for a in lowered_ops["MultiThreshold"].attribute}
            assert attrs["data_layout"].decode().index("C") == axis


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_lowering_is_bit_exact_on_every_input_code_in_every_layout(layout):
    @settings(max_examples=LAYOUT_EXAMPLES, deadline=None)
    @given(case=layout_case(layout))
    def check(case):
        check_layout(layout, case)

    check()


def test_the_hardware_conversion_takes_channels_last_tables_and_repeats_a_shared_row():
    from qonnx.transformation.infer_shapes import InferShapes

    from psa_finn.transforms.convert_to_hw_per_channel_lut import InferPerChannelLUTLayer

    attributes = {"inputDataType": "UINT2", "outputDataType": "UINT4"}
    channels_first = op_model("PerChannelLUT", [1, 3, 2, 2], np.zeros((3, 4)), channel_axis=1, **attributes)
    with pytest.raises(ValueError, match="op: channel_axis 1 of input \\[1, 3, 2, 2\\] is not the last axis"):
        channels_first.transform(InferShapes()).transform(InferPerChannelLUTLayer())
    shared = op_model("PerChannelLUT", [1, 2, 3], [[5, 6, 7, 8]], channel_axis=1, **attributes)
    converted = shared.transform(InferShapes()).transform(InferPerChannelLUTLayer())
    assert converted.graph.node[0].domain == HW_DOMAIN
    np.testing.assert_array_equal(converted.get_initializer("table"), [[5, 6, 7, 8]] * 3)
