"""RoundHalfEvenThresholds: a quantizer's MultiThreshold rounds ties half-to-even, as the QONNX Quant it came from."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_round_half_even_thresholds")

from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN  # noqa: E402
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds  # noqa: E402
from finn.transformation.streamline.streamline_plus import StreamlinePlus  # noqa: E402

from psa_finn.build_configs.steps import step_streamline_with_luts  # noqa: E402
from psa_finn.transforms.lean_composed import apply_lean  # noqa: E402
from psa_finn.transforms.round_half_even_thresholds import RoundHalfEvenThresholds, input_grid  # noqa: E402

INT8_INPUTS = np.arange(-128, 128, dtype=np.float32)
INT16_INPUTS = np.arange(-520, 520, dtype=np.float32)


def _model(nodes, initializers, input_dtype="INT8", width=1):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="test"))
    for name, value in initializers.items():
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    model.set_tensor_datatype("x", DataType[input_dtype])
    model = model.transform(InferShapes())
    return model.transform(InferDataTypes())


def _threshold_model(thresholds, out_bias=0.0, out_scale=1.0, add=None, input_dtype="INT8", width=1):
    """x [1, width] -> MultiThreshold(thresholds [1, N]) [-> Add(add)] -> y."""
    mt_out = "y" if add is None else "n"
    nodes = [helper.make_node("MultiThreshold", ["x", "t"], [mt_out], domain="qonnx.custom_op.general",
                              out_dtype="INT8", out_bias=out_bias, out_scale=out_scale)]
    initializers = {"t": [thresholds]}
    if add is not None:
        nodes.append(helper.make_node("Add", ["n", "b"], ["y"]))
        initializers["b"] = add
    return _model(nodes, initializers, input_dtype, width)


def _thresholds(model):
    return model.get_initializer(model.graph.node[0].input[1]).ravel().tolist()


def _outputs(model, inputs):
    """The model's outputs on inputs [width], one input per channel."""
    feed = {model.graph.input[0].name: np.asarray(inputs, dtype=np.float32)[None]}
    return execute_onnx(model, feed)[model.graph.output[0].name][0]


def test_unsigned_ties_move_up_below_an_even_code_and_down_below_an_odd_one():
    # Quant(x / 2), unsigned 2 bits: ties at x = 1, 3, 5 between codes 0|1, 1|2, 2|3
    model = _threshold_model([1.0, 3.0, 5.0], width=8).transform(RoundHalfEvenThresholds())
    assert _thresholds(model) == [1.5, 2.5, 5.5]
    # x = 1 -> 0.5 -> 0, x = 3 -> 1.5 -> 2, x = 5 -> 2.5 -> 2
    assert _outputs(model, np.arange(8)).tolist() == [0, 0, 1, 2, 2, 2, 3, 3]


@pytest.mark.parametrize("bias_as", ["out_bias", "pending Add"])
def test_odd_first_code_of_a_narrow_range_quantizer(bias_as):
    # Quant(x / 2), signed narrow 3 bits (codes -3..3), its minimum code as out_bias or as the Add FINN inserts
    thresholds = [-5.0, -3.0, -1.0, 1.0, 3.0, 5.0]
    model = (_threshold_model(thresholds, out_bias=-3.0, width=17) if bias_as == "out_bias"
             else _threshold_model(thresholds, add=-3.0, width=17))
    model = model.transform(RoundHalfEvenThresholds())
    assert _thresholds(model) == [-5.5, -2.5, -1.5, 1.5, 2.5, 5.5]
    x = np.arange(-8, 9, dtype=np.float32)
    assert np.array_equal(_outputs(model, x), np.clip(np.round(x / 2), -3, 3))


def test_signed_int8_quantizer_with_rounding_equals_np_round():
    # Quant(x / 4), signed 8 bits: thresholds 4k + 2 between codes k and k + 1, k = -128..126 (-128 is even)
    model = _threshold_model((np.arange(255) - 127.5) * 4, out_bias=-128.0, input_dtype="INT16",
                             width=len(INT16_INPUTS))
    stock = model.transform(RoundAndClipThresholds())
    fixed = model.transform(RoundHalfEvenThresholds()).transform(RoundAndClipThresholds())
    expected = np.clip(np.round(INT16_INPUTS / 4), -128, 127)
    assert np.array_equal(_outputs(fixed, INT16_INPUTS), expected)
    assert not np.array_equal(_outputs(stock, INT16_INPUTS), expected)  # the stock thresholds round the ties up
    assert _thresholds(fixed)[:3] == [-509.0, -506.0, -501.0]  # ties -510 (code -128), -506 (-127), -502 (-126)


def test_non_ties_and_non_quantizer_thresholds_are_left_alone():
    cases = [
        _threshold_model([-2.5, 0.5, 3.5]),  # halfway between integer inputs (lowered tables): never a tie
        _threshold_model([1.0, 2.5, 3.0], input_dtype="FLOAT32"),  # float input, not a quantizer's even spacing
        _threshold_model([1.0, 3.0], out_scale=2.0),  # not a quantizer's code count
        _threshold_model([3.0, 1.0]),  # not ascending
        _threshold_model([1.0, 3.0], out_bias=0.5),  # codes not integers
    ]
    for model in cases:
        before = _thresholds(model)
        model, modified = RoundHalfEvenThresholds().apply(model)
        assert not modified and _thresholds(model) == before


def test_float_input_quantizer_ties_round_half_even():
    """The network's input quantizer reads float values: each of its thresholds (k + 0.5) * scale is a tie; the one
    below an even code moves up one ulp (found by the build's verification on tie inputs: 42 codes off before)."""
    # Quant(x / 0.25), signed 3 bits: codes -4..3, ties at -3.5 .. 2.5 (times 0.25)
    thresholds = (np.arange(7) - 3.5) * 0.25
    model = _threshold_model(thresholds, out_bias=-4.0, input_dtype="FLOAT32", width=64)
    x = (np.arange(64) - 32) * 0.0625  # every quarter and eighth of the scale: ties and non-ties
    expected = np.clip(np.round(x / 0.25), -4, 3)
    assert not np.array_equal(_outputs(model, x), expected)  # the stock thresholds round ties up
    fixed, modified = RoundHalfEvenThresholds().apply(model)
    assert modified and np.array_equal(_outputs(fixed, x), expected)
    assert not RoundHalfEvenThresholds().apply(fixed)[1]  # idempotent


def test_idempotent():
    once = _threshold_model([1.0, 3.0, 5.0]).transform(RoundHalfEvenThresholds())
    _, modified = RoundHalfEvenThresholds().apply(once)
    assert not modified


def _quant_model():
    """x (INT8) -> Mul(1/4) -> Quant(scale 1/2, 4 bits signed, ROUND) -> y: code round(x / 2), ties at odd x."""
    nodes = [helper.make_node("Mul", ["x", "m"], ["xm"]),
             helper.make_node("Quant", ["xm", "s", "z", "bw"], ["y"], domain="qonnx.custom_op.general",
                              signed=1, narrow=0, rounding_mode="ROUND")]
    return _model(nodes, {"m": 0.25, "s": 0.5, "z": 0.0, "bw": 4.0}, width=len(INT8_INPUTS))


def test_streamlining_step_matches_the_qonnx_quant_bit_for_bit():
    qonnx_model = _quant_model()
    expected = _outputs(qonnx_model, INT8_INPUTS)
    finn_model = qonnx_model.transform(ConvertQONNXtoFINN())
    stock = apply_lean(finn_model, StreamlinePlus())
    assert not np.array_equal(_outputs(stock, INT8_INPUTS), expected)  # half up: x = 1 -> 1, not 0
    streamlined = step_streamline_with_luts(finn_model, None)
    assert [n.op_type for n in streamlined.graph.node] == ["MultiThreshold", "Mul"]
    assert np.array_equal(_outputs(streamlined, INT8_INPUTS), expected)


def _residual_model(scale_a, scale_b):
    """a (INT8) * scale_a + b (UINT8) * scale_b -> Quant(scale 1/8, signed 8 bits, ROUND): a residual join of two
    branches with different quantizer scales; every (a, b) pair is one input position."""
    a, b = np.meshgrid(INT8_INPUTS, np.arange(0, 256, dtype=np.float32))
    width = a.size
    nodes = [helper.make_node("Mul", ["a", "sa"], ["fa"]), helper.make_node("Mul", ["b", "sb"], ["fb"]),
             helper.make_node("Add", ["fa", "fb"], ["sum"]),
             helper.make_node("Quant", ["sum", "s", "z", "bw"], ["y"], domain="qonnx.custom_op.general",
                              signed=1, narrow=0, rounding_mode="ROUND")]
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, width])
                                                  for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="test"))
    for name, value in {"sa": scale_a, "sb": scale_b, "s": 0.125, "z": 0.0, "bw": 8.0}.items():
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    model.set_tensor_datatype("a", DataType["INT8"])
    model.set_tensor_datatype("b", DataType["UINT8"])
    return model.transform(InferShapes()).transform(InferDataTypes()), (a.reshape(1, -1), b.reshape(1, -1))


def test_residual_join_of_two_power_of_two_grids_rounds_like_the_qonnx_quant():
    # the sum lies on the 1/16 grid, half a step of the quantizer's 1/8: ties wherever a is odd
    qonnx_model, inputs = _residual_model(1 / 16, 1 / 4)

    def run(model):  # streamlining renames the graph's inputs: feed them by position
        feed = {tensor.name: value for tensor, value in zip(model.graph.input, inputs, strict=True)}
        return execute_onnx(model, feed)[model.graph.output[0].name]

    expected = run(qonnx_model)
    finn_model = qonnx_model.transform(ConvertQONNXtoFINN())
    assert not np.array_equal(run(apply_lean(finn_model, StreamlinePlus())), expected)  # ties rounded up
    assert np.array_equal(run(step_streamline_with_luts(finn_model, None)), expected)


def test_input_grid_of_scaled_integer_branches():
    model, _ = _residual_model(1 / 16, 1 / 4)
    assert input_grid(model, "a") == 1.0 and input_grid(model, "fa") == 1 / 16 and input_grid(model, "sum") == 1 / 16
    float_scaled, _ = _residual_model(1 / 16, 0.036)  # no common grid: unknown, nothing is moved
    assert input_grid(float_scaled, "sum") is None
