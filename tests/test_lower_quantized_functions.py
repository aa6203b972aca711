"""LowerQuantizedFunctions on hand-built ONNX graphs: every elementwise function between quantizers (unary ops, binary
ops with a constant, a per-channel constant or the same tensor, multi-node GELU), bit-exact on every input code;
monotone functions of an accumulator as inverted thresholds; what cannot be lowered stays, with the reason."""

import json
import math
import re
from copy import deepcopy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from psa_finn.build import main
from psa_finn.transforms.lower_quantized_functions import LowerQuantizedFunctions, lower_quantized_functions
from quantized_graphs import LAYOUTS, chain_model, channel_shaped, every_code_input, quantizer, run

EXAMPLES_PER_FUNCTION = 12


def node(op_type, inputs, output, **attributes):
    return helper.make_node(op_type, inputs, [output], name=f"{op_type}_{output}", **attributes)


def unary(op_type, **attributes):
    return lambda channels: ([node(op_type, ["xq"], "f", **attributes)], {})


def gelu_erf(channels):
    """x * 0.5 * (1 + erf(x / sqrt 2)), as torch writes GELU by hand."""
    return ([node("Div", ["xq", "sqrt2"], "d"), node("Erf", ["d"], "e"), node("Add", ["e", "one"], "a"),
             node("Mul", ["xq", "half"], "h"), node("Mul", ["h", "a"], "f")],
            {"sqrt2": math.sqrt(2.0), "one": 1.0, "half": 0.5})


def gelu_tanh(channels):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return ([node("Pow", ["xq", "three"], "cube"), node("Mul", ["cube", "k"], "kc"), node("Add", ["xq", "kc"], "s"),
             node("Mul", ["s", "c"], "sc"), node("Tanh", ["sc"], "t"), node("Add", ["t", "one"], "a"),
             node("Mul", ["xq", "a"], "xa"), node("Mul", ["xa", "half"], "f")],
            {"three": 3.0, "k": 0.044715, "c": math.sqrt(2 / math.pi), "one": 1.0, "half": 0.5})


def silu(channels):
    """x * sigmoid(x): a binary op whose inputs are both the quantized tensor (through a Sigmoid)."""
    return [node("Sigmoid", ["xq"], "s"), node("Mul", ["xq", "s"], "f")], {}


def softplus_where(channels):
    """torch's softplus as exported: where(x > 20, x, softplus(x))."""
    return ([node("Softplus", ["xq"], "sp"), node("Greater", ["xq", "twenty"], "big"),
             node("Where", ["big", "xq", "sp"], "f")], {"twenty": 1.0})


def per_channel_affine_tanh(channels):
    """tanh(w_c x) + w_c: per-channel constants (signs mixed) around a unary op."""
    w = np.linspace(-1.5, 2.0, channels) if channels > 1 else np.array([0.7])
    return [node("Mul", ["xq", "w"], "m"), node("Tanh", ["m"], "t"), node("Add", ["t", "w"], "f")], {"w": w}


def prelu(channels):
    slope = np.linspace(-0.5, 0.5, channels) if channels > 1 else np.array([0.25])
    return [node("PRelu", ["xq", "slope"], "f")], {"slope": slope}


def square_minus(channels):
    """x * x - max(x, 0.5): a product of the tensor with itself and a variadic max with a constant."""
    return [node("Mul", ["xq", "xq"], "sq"), node("Max", ["xq", "half"], "m"), node("Sub", ["sq", "m"], "f")], \
        {"half": 0.5}


# name -> (builder, input codes must be non-negative (log, sqrt))
FUNCTIONS = {
    "Relu": (unary("Relu"), False), "Sigmoid": (unary("Sigmoid"), False), "Tanh": (unary("Tanh"), False),
    "Erf": (unary("Erf"), False), "Exp": (unary("Exp"), False), "Log": (unary("Log"), True),
    "Sqrt": (unary("Sqrt"), True), "Softplus": (unary("Softplus"), False), "Sin": (unary("Sin"), False),
    "Cos": (unary("Cos"), False), "Abs": (unary("Abs"), False),
    "Neg -> Exp": (lambda c: ([node("Neg", ["xq"], "n"), node("Exp", ["n"], "f")], {}), False),
    "Clip": (lambda c: ([node("Clip", ["xq", "lo", "hi"], "f")], {"lo": -0.5, "hi": 0.75}), False),
    "HardSigmoid": (unary("HardSigmoid", alpha=0.3, beta=0.4), False), "HardSwish": (unary("HardSwish"), False),
    "Mish": (unary("Mish"), False), "Elu": (unary("Elu", alpha=0.8), False), "Selu": (unary("Selu"), False),
    "Celu": (unary("Celu", alpha=1.3), False), "LeakyRelu": (unary("LeakyRelu", alpha=0.1), False),
    "Softsign": (unary("Softsign"), False), "Gelu": (unary("Gelu"), False),
    "Gelu(tanh)": (unary("Gelu", approximate="tanh"), False), "Reciprocal": (unary("Reciprocal"), False),
    "Floor": (lambda c: ([node("Mul", ["xq", "three"], "m"), node("Floor", ["m"], "f")], {"three": 3.0}), False),
    "GELU erf form": (gelu_erf, False), "GELU tanh form": (gelu_tanh, False), "SiLU x*sigmoid(x)": (silu, False),
    "Softplus where form": (softplus_where, False), "per-channel Mul-Tanh-Add": (per_channel_affine_tanh, False),
    "PRelu per channel": (prelu, False), "x*x - max(x, 0.5)": (square_minus, False),
}


@st.composite
def function_case(draw, nonnegative):
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    channels = draw(st.integers(1, 3))
    bits = draw(st.integers(2, 8))
    signed = False if nonnegative else draw(st.booleans())
    per_channel = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    span = draw(st.floats(0.5, 6.0))
    levels = 2 ** (bits - 1) if signed else 2**bits - 1
    qin = dict(bits=bits, signed=signed, scale=rng.uniform(0.5, 1.5, channels if per_channel else 1) * span / levels,
               per_channel=per_channel)
    out_bits = draw(st.integers(2, 8))
    out_signed = draw(st.booleans())
    qout = dict(bits=out_bits, signed=out_signed, per_channel=draw(st.booleans()),
                scale=rng.uniform(0.5, 1.5, channels) * draw(st.floats(0.3, 3.0)) / 2 ** (out_bits - 1))
    return layout, channels, qin, qout, draw(st.booleans())


def build_case(function, case):
    layout, channels, qin_spec, qout_spec, narrow = case
    shape_of, axis = LAYOUTS[layout]
    shape = shape_of(channels, 2 ** qin_spec["bits"] + 3)

    def q(spec, narrow_range):
        scale = spec["scale"] if spec["per_channel"] else spec["scale"][:1]
        scale = channel_shaped(scale, shape, axis) if spec["per_channel"] else scale.reshape(())
        return quantizer(spec["bits"], spec["signed"], scale, narrow=narrow_range)

    nodes, constants = FUNCTIONS[function][0](channels)
    constants = {name: channel_shaped(np.asarray(v), shape, axis) if np.size(v) > 1 else np.asarray(v)
                 for name, v in constants.items()}
    qin, qout = q(qin_spec, narrow), q(qout_spec, False)
    return chain_model(shape, nodes, qin, qout, constants), shape, axis, qin


def check_function(function, case):
    model, shape, axis, qin = build_case(function, case)
    x = every_code_input(shape, axis, qin, np.random.default_rng(1))
    expected = run(model, x)
    lowered, report = lower_quantized_functions(deepcopy(model), "auto")
    assert len(report) == 1, report
    entry = report[0]
    assert entry.form in ("MultiThreshold", "PerChannelLUT full"), entry
    assert {n.op_type for n in lowered.graph.node} <= {"Quant", "MultiThreshold", "PerChannelLUT", "Mul", "Add"}
    assert [n.name for n in lowered.graph.node if n.op_type == "Quant"] == ["quant_in"]
    np.testing.assert_array_equal(run(lowered, x), expected)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_lowers_bit_exactly_on_every_input_code(function):
    @settings(max_examples=EXAMPLES_PER_FUNCTION, deadline=None)
    @given(case=function_case(FUNCTIONS[function][1]))
    def check(case):
        check_function(function, case)

    check()


def accumulator_model(function_nodes, constants, qout, rows=1, channels=4, matmul=False):
    """An accumulator (x [rows, C] itself, or x [rows, 3] @ W [3, C]) -> Add bias -> function nodes (reading 'xq',
    writing 'f') -> Quant 'quant_out' -> y: no input quantizer."""
    from onnx import TensorProto
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    from quantized_graphs import OPSETS

    rng = np.random.default_rng(5)
    inits = {"bias": rng.normal(size=channels), **constants,
             "s_out": qout["scale"], "z_out": qout["zeropt"], "b_out": qout["bits"]}
    nodes = [node("Add", ["x", "bias"], "xq")]
    if matmul:
        inits["W"] = rng.normal(size=(3, channels))
        nodes = [node("MatMul", ["x", "W"], "acc"), node("Add", ["acc", "bias"], "xq")]
    nodes += [*function_nodes, helper.make_node("Quant", ["f", "s_out", "z_out", "b_out"], ["y"], name="quant_out",
                                                domain="qonnx.custom_op.general", signed=int(qout["signed"]),
                                                narrow=0, rounding_mode="ROUND")]
    graph = helper.make_graph(nodes, "acc", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           [rows, 3 if matmul else channels])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, channels])])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=OPSETS))
    for name, value in inits.items():
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return model.transform(InferShapes())


RISING_ON_ACCUMULATORS = {
    "Sigmoid": ([node("Sigmoid", ["xq"], "f")], {}, quantizer(4, False, 1 / 15)),
    "Tanh": ([node("Tanh", ["xq"], "f")], {}, quantizer(5, True, 1 / 15)),
    "Erf": ([node("Erf", ["xq"], "f")], {}, quantizer(3, True, 1 / 3)),
    "Softplus": ([node("Softplus", ["xq"], "f")], {}, quantizer(4, False, 0.25)),
    "Elu": ([node("Elu", ["xq"], "f", alpha=1.0)], {}, quantizer(4, True, 0.25)),
    "HardSigmoid": ([node("HardSigmoid", ["xq"], "f")], {}, quantizer(3, False, 1 / 7)),
    "Exp": ([node("Exp", ["xq"], "f")], {}, quantizer(6, False, 0.125)),
    "-2 x -> Neg -> Sigmoid": ([node("Mul", ["xq", "m2"], "m"), node("Neg", ["m"], "n"), node("Sigmoid", ["n"], "f")],
                               {"m2": -2.0}, quantizer(4, False, 1 / 15)),
    "per-channel w -> Tanh": ([node("Mul", ["xq", "w"], "m"), node("Tanh", ["m"], "f")],
                              {"w": [0.5, 1.0, 2.0, 0.0]}, quantizer(4, True, 1 / 7)),
}


@pytest.mark.parametrize("function", sorted(RISING_ON_ACCUMULATORS))
def test_monotone_functions_of_an_accumulator_become_thresholds_exact_at_every_float32_boundary(function):
    nodes, constants, qout = RISING_ON_ACCUMULATORS[function]
    lowered, report = lower_quantized_functions(accumulator_model(nodes, constants, qout, matmul=True), "auto")
    assert report[0].form == "MultiThreshold" and report[0].input_datatype is None
    assert [n.op_type for n in lowered.graph.node][:2] == ["MatMul", "MultiThreshold"]
    # the accumulator is the graph input here: per channel each threshold, the float32 just below it, random values
    exact = accumulator_model(nodes, constants, qout, rows=1)
    small = lower_quantized_functions(deepcopy(exact), "auto")[0]
    thresholds = small.get_initializer(small.graph.node[0].input[1])
    rng = np.random.default_rng(0)
    columns = [np.concatenate([row[np.isfinite(row)], np.nextafter(row[np.isfinite(row)], np.float32(-np.inf)),
                               rng.normal(scale=4, size=64).astype(np.float32)]) for row in thresholds]
    x = np.stack([np.resize(column, max(c.size for c in columns)) for column in columns], axis=1)
    exact = accumulator_model(nodes, constants, qout, rows=x.shape[0])
    np.testing.assert_array_equal(run(lower_quantized_functions(deepcopy(exact), "auto")[0], x), run(exact, x))


@pytest.mark.parametrize("function, message", [
    ([node("Gelu", ["xq"], "f")], "Gelu node 'Gelu_f' reads the unquantized tensor 'acc' from MatMul.*not "
                                  "monotone.*QuantIdentity"),
    ([node("Sigmoid", ["xq"], "s"), node("Mul", ["xq", "s"], "f")], "Sigmoid node.*not monotone"),
    ([node("Neg", ["xq"], "n"), node("Sigmoid", ["n"], "f")], "Sigmoid node 'Sigmoid_f'.*decreasing"),
])
def test_functions_of_an_accumulator_that_are_not_rising_need_an_input_quantizer(function, message):
    with pytest.raises(ValueError, match=message):
        lower_quantized_functions(accumulator_model(function, {}, quantizer(4, True, 0.25), matmul=True), "auto")


def test_relu_of_an_accumulator_is_left_to_finn():
    model = accumulator_model([node("Relu", ["xq"], "f")], {}, quantizer(4, False, 0.25))
    lowered, report = lower_quantized_functions(deepcopy(model), "auto")
    assert [(e.node, e.form) for e in report] == [("Relu_f", "left to FINN")]
    assert [n.op_type for n in lowered.graph.node] == [n.op_type for n in model.graph.node]


def two_input_model(second, constants=None):
    """x -> Quant -> sigmoid(xq * other) -> Quant; the `second` nodes compute 'other'."""
    shape = [1, 3, 4, 4]
    nodes = second + [node("Mul", ["xq", "other"], "p"), node("Sigmoid", ["p"], "f")]
    return chain_model(shape, nodes, quantizer(4, True, 0.25), quantizer(4, True, 0.25), constants)


@pytest.mark.parametrize("variant, reason", [
    ("two variable inputs", "S reads 2 different variable tensors.*graph input 'x'"),
    ("ReduceMean inside", "S reads 2 different variable tensors.*from ReduceMean"),
    ("constant varying along H and C", "constants vary along 2 axes"),
    ("13-bit non-monotone", "13-bit input codes is too wide"),
    ("NaN of signed log", "S gives NaN at input code -8 of channel 0"),
])
def test_what_cannot_be_lowered_stays_in_place_with_the_reason(variant, reason):
    if variant == "two variable inputs":
        model = two_input_model([node("Sigmoid", ["x"], "other")])
    elif variant == "ReduceMean inside":
        model = two_input_model([node("ReduceMean", ["xq"], "other", keepdims=1)])
    elif variant == "constant varying along H and C":
        model = two_input_model([node("Sigmoid", ["w"], "other")],
                                {"w": np.arange(12.0).reshape(1, 3, 4, 1)})
    elif variant == "13-bit non-monotone":
        model = chain_model([1, 2], [node("Sin", ["xq"], "f")], quantizer(13, True, 0.001), quantizer(8, True, 0.01))
    else:
        model = chain_model([1, 2], [node("Log", ["xq"], "f")], quantizer(4, True, 0.25), quantizer(4, True, 0.25))
    lowered, report = lower_quantized_functions(deepcopy(model), "auto")
    assert [e.form for e in report] == ["left in place"]
    assert re.search(reason, report[0].reason), report[0].reason
    assert [n.op_type for n in lowered.graph.node] == [n.op_type for n in model.graph.node]


def test_a_function_without_output_quantizer_is_reported():
    model = chain_model([1, 2], [node("Sigmoid", ["xq"], "f")], quantizer(4, True, 0.25), quantizer(4, True, 0.25))
    model.graph.node.insert(2, node("Tanh", ["f"], "g"))
    _, report = lower_quantized_functions(deepcopy(model), "auto")
    assert [(e.node, e.form) for e in report] == [("Sigmoid_f", "left in place"), ("Tanh_g", "left in place")]
    assert "no Quant reads its output" in report[1].reason


def test_consecutive_chains_share_a_quantizer_and_lowering_is_a_fixed_point():
    nodes = [node("Sigmoid", ["xq"], "s"),
             helper.make_node("Quant", ["s", "s_mid", "z_mid", "b_mid"], ["sq"], domain="qonnx.custom_op.general",
                              name="quant_mid", signed=0, narrow=0, rounding_mode="ROUND"),
             node("Cos", ["sq"], "f")]
    qin, qout, mid = quantizer(5, True, 0.25), quantizer(4, True, 1 / 7), {"s_mid": 1 / 31, "z_mid": 0.0, "b_mid": 5.0}
    model = chain_model([40, 2], nodes, qin, qout, mid)
    x = every_code_input([40, 2], 1, qin, np.random.default_rng(0))
    lowered = deepcopy(model).transform(LowerQuantizedFunctions())
    assert {n.op_type for n in lowered.graph.node} == {"Quant", "MultiThreshold", "Mul", "PerChannelLUT"}
    assert [n.name for n in lowered.graph.node if n.op_type == "Quant"] == ["quant_in"]
    np.testing.assert_array_equal(run(lowered, x), run(model, x))
    assert LowerQuantizedFunctions().apply(deepcopy(lowered))[1] is False
    assert [e.form for e in lower_quantized_functions(model, "auto")[1]] == ["MultiThreshold", "PerChannelLUT full"]


def test_cli_lists_every_chain_the_form_and_why(tmp_path, capsys):
    nodes = [node("Sigmoid", ["xq"], "s"), node("Mul", ["xq", "s"], "f")]
    model = chain_model([1, 3], nodes, quantizer(4, True, 0.25), quantizer(6, True, 1 / 64))
    model.graph.node.insert(3, node("Tanh", ["y"], "stray"))
    model.save(str(tmp_path / "model.onnx"))
    assert main(["lower", "--model", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "lowered.onnx")]) == 0
    out = capsys.readouterr().out
    assert "lowered 1 of 2 quantized function(s)" in out
    assert "Tanh_stray (Tanh): left in place: no Quant reads its output" in out
    report = json.loads((tmp_path / "lowered.json").read_text())
    assert [(e["node"], e["ops"], e["form"]) for e in report["nodes"]] == [
        ("Sigmoid_s", ["Sigmoid", "Mul"], "PerChannelLUT full"), ("Tanh_stray", ["Tanh"], "left in place")]
    assert report["nodes"][0]["reason"] == "1 channel(s) not monotone (first: [0])"
