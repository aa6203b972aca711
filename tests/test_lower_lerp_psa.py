"""The lowering of LerpPSA chains and `build.py lower`: Quant -> LerpPSA -> Quant becomes MultiThreshold or
PerChannelLUT (transforms.lower_quantized_functions).

threshold/full/auto must reproduce the unlowered graph bit for bit on every input code; lerp64 must equal a
direct implementation of the paper's 64-entry interpolation, written here independently of custom_ops.lut_tables.
"""

import json
from argparse import Namespace

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

import psa_finn.custom_ops  # noqa: F401  (registers the custom_ops domain)
from psa_finn.build import main
from psa_finn.common.cli_errors import EXIT_BAD_INPUT
from psa_finn.transforms import cli
from psa_finn.transforms.lower_and_report import lower_model_file
from psa_finn.transforms.lower_quantized_functions import LowerQuantizedFunctions, lower_quantized_functions

TOKENS = 3
OPSETS = [helper.make_opsetid("", 13), helper.make_opsetid("psa_finn.custom_ops", 1),
          helper.make_opsetid("qonnx.custom_op.general", 1)]


def quant_node(inputs, output, q, name):
    return helper.make_node("Quant", inputs, [output], domain="qonnx.custom_op.general", name=name,
                            signed=int(q["signed"]), narrow=int(q["narrow"]), rounding_mode="ROUND")


def psa_model(table, grid_range, qin, qout, affine=None, in_quant=True, out_quant=True, residual=False,
              tokens=TOKENS):
    """x [1, tokens, C] -> [Quant qin] -> LerpPSA 'psa' -> [Quant qout] -> y (+ x_q -> Add when residual)."""
    channels = table.shape[0]
    nodes, inits = [], {"table": table}
    psa_in = "x"
    if in_quant:
        nodes.append(quant_node(["x", "s_in", "z_in", "b_in"], "x_q", qin, "quant_in"))
        inits.update(s_in=qin["scale"], z_in=qin["zeropt"], b_in=qin["bits"])
        psa_in = "x_q"
    psa_inputs = [psa_in, "table"] + (["in_scale", "in_bias"] if affine is not None else [])
    if affine is not None:
        inits.update(in_scale=affine[0], in_bias=affine[1])
    nodes.append(helper.make_node("LerpPSA", psa_inputs, ["f"], domain="psa_finn.custom_ops",
                                  grid_range=float(grid_range), name="psa"))
    out = "f"
    if out_quant:
        nodes.append(quant_node(["f", "s_out", "z_out", "b_out"], "f_q", qout, "quant_out"))
        inits.update(s_out=qout["scale"], z_out=qout["zeropt"], b_out=qout["bits"])
        out = "f_q"
    if residual:
        nodes.append(helper.make_node("Add", [out, psa_in], ["sum"], name="residual"))
        out = "sum"
    nodes.append(helper.make_node("Identity", [out], ["y"], name="out"))
    graph = helper.make_graph(nodes, "psa", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           [1, tokens, channels])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=OPSETS))
    for name, value in inits.items():
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return model.transform(InferShapes())


def code_range(q):
    low = -(2 ** (q["bits"] - 1)) if q["signed"] else 0
    high = 2 ** (q["bits"] - 1) - 1 if q["signed"] else 2 ** q["bits"] - 1
    return low + int(q["narrow"] and q["signed"]), high - int(q["narrow"] and not q["signed"])


def dequantize(codes, q):
    return (np.asarray(codes, dtype=np.float32) - np.float32(q["zeropt"]).reshape(-1)) * \
        np.asarray(q["scale"], dtype=np.float32).reshape(-1)


def every_code_input(q, channels, extra):
    """[1, n, C]: the dequantized value of every input code (per channel) plus out-of-range and between-code values."""
    low, high = code_range(q)
    codes = np.arange(low, high + 1)[:, None].repeat(channels, axis=1)
    values = np.concatenate([dequantize(codes, q), np.asarray(extra, dtype=np.float32).reshape(-1, channels)])
    return values[None]


def run(model, x):
    return execute_onnx(model, {"x": np.asarray(x, dtype=np.float32)})["y"]


def lower(model, mode):
    return lower_quantized_functions(ModelWrapper(model.model.__deepcopy__()), mode)


@st.composite
def quantizer(draw, channels, span):
    bits = draw(st.integers(2, 8))
    signed = draw(st.booleans())
    zeropt = 0.0 if signed else float(draw(st.sampled_from([0, 2 ** (bits - 1), 2**bits - 1])))
    levels = 2 ** (bits - 1) if (signed or zeropt) else 2**bits - 1
    factors = draw(st.lists(st.floats(0.3, 2.0), min_size=channels, max_size=channels))
    scale = np.array(factors) * span / levels if draw(st.booleans()) else np.float32(factors[0] * span / levels)
    if np.ndim(scale) and draw(st.booleans()):
        scale = scale.reshape(1, 1, channels)
    return {"bits": bits, "signed": signed, "narrow": draw(st.booleans()), "zeropt": zeropt,
            "scale": np.asarray(scale, dtype=np.float32)}


@st.composite
def psa_case(draw):
    channels = draw(st.integers(1, 4))
    grid_size = draw(st.sampled_from([2, 5, 17, 64, 65]))
    grid_range = draw(st.floats(0.5, 8.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = ["rising", "falling", "constant"] + ([] if draw(st.booleans()) else ["random"] * 3)
    kinds = draw(st.lists(st.sampled_from(shapes), min_size=channels, max_size=channels))
    steps = rng.normal(size=(channels, grid_size))
    sign = np.array([{"rising": 1, "falling": -1, "random": 0, "constant": 0}[k] for k in kinds])[:, None]
    table = np.where(sign != 0, sign * np.abs(steps), steps) * np.array([k != "constant" for k in kinds])[:, None]
    table = np.cumsum(table, axis=1) + rng.normal(size=(channels, 1))
    affine = None
    if draw(st.booleans()):
        affine = (rng.uniform(0.5, 2.0, channels) * rng.choice([-1, 1], channels), rng.uniform(-1, 1, channels))
    qin = draw(quantizer(channels, grid_range * draw(st.floats(0.5, 2.0))))
    qout = draw(quantizer(channels, float(np.abs(table).max() + 1e-3) * draw(st.floats(0.3, 1.5))))
    extra = rng.normal(scale=3 * grid_range, size=(4, channels))
    return table.astype(np.float32), grid_range, affine, qin, qout, extra


def is_monotone(y):
    steps = np.diff(y, axis=0)
    return bool(np.all(np.all(steps >= 0, axis=0) | np.all(steps <= 0, axis=0)))


def is_rising(y):
    return bool(np.all(np.diff(y, axis=0) >= 0))


@settings(max_examples=40, deadline=None)
@given(case=psa_case())
def test_threshold_full_and_auto_are_bit_exact_on_every_input_code(case):
    table, grid_range, affine, qin, qout, extra = case
    x = every_code_input(qin, table.shape[0], extra)
    model = psa_model(table, grid_range, qin, qout, affine, tokens=x.shape[1])
    expected = run(model, x)
    monotone = is_monotone(expected[0, :-extra.shape[0]])
    rising = is_rising(expected[0, :-extra.shape[0]])
    for mode in ("auto", "full", "threshold"):
        if mode == "threshold" and not rising:
            with pytest.raises(ValueError, match="psa.*mode threshold needs every channel's output codes non-decr"):
                lower(model, mode)
            continue
        lowered, report = lower(model, mode)
        assert not [n for n in lowered.graph.node if n.op_type in ("LerpPSA",) or n.name == "quant_out"]
        assert [n.name for n in lowered.graph.node if n.op_type == "Quant"] == ["quant_in"]
        np.testing.assert_array_equal(run(lowered, x), expected)
        assert report[0].monotone == monotone
        event(f"{mode}: {report[0].form}, {report[0].rising_channels} rising, {report[0].falling_channels} falling")
        assert report[0].form == ("MultiThreshold" if mode == "threshold" or (mode == "auto" and rising)
                                  else "PerChannelLUT full")
        assert not [n for n in lowered.graph.node if n.op_type == "Mul" and
                    np.any(lowered.get_initializer(n.input[1]) < 0)], "no sign Mul (FINN loops on it)"


def paper_round_shift(a, s):
    """RS(a, s) = (a >> s) + bit_{s-1}(a): the paper's rounding right shift (round half up)."""
    return (a >> s) + ((a >> (s - 1)) & 1)


def paper_lerp64(entries, k):
    """The paper's decoder: msb = k >> 2, lsb = k & 3, y = y0 + RS((y1 - y0) * lsb, 2)."""
    y0, y1 = entries[k >> 2], entries[(k >> 2) + 1]
    return y0 + paper_round_shift((y1 - y0) * (k & 3), 2)


@settings(max_examples=40, deadline=None)
@given(case=psa_case())
def test_lerp64_equals_the_papers_interpolation_of_every_4th_code(case):
    table, grid_range, affine, qin, qout, extra = case
    channels = table.shape[0]
    x = every_code_input(qin, channels, [])
    model = psa_model(table, grid_range, qin, qout, affine, tokens=x.shape[1])
    if qin["bits"] < 3:  # 2 fraction bits and no segment bit: no lerp64 table (custom_ops.lut_tables)
        with pytest.raises(ValueError, match="psa.*lerp64 needs input codes of at least 3 bits"):
            lower(model, "lerp64")
        return
    dt_min = -(2 ** (qin["bits"] - 1)) if qin["signed"] else 0
    # output codes of LerpPSA -> output Quant at input codes dt_min + 4j, j = 0 .. 2^(b-2) (the last one past the end)
    sample_codes = dt_min + 4 * np.arange(2 ** (qin["bits"] - 2) + 1)
    sampled = run(psa_model(table, grid_range, qin, qout, affine, in_quant=False, tokens=sample_codes.size),
                  dequantize(sample_codes[:, None].repeat(channels, axis=1), qin)[None])[0]
    entries = np.rint(sampled / qout["scale"].reshape(-1) + qout["zeropt"]).astype(np.int64)
    low, high = code_range(qin)
    codes = np.arange(low, high + 1)
    expected_codes = np.array([[paper_lerp64(entries[:, c], int(q - dt_min)) for c in range(channels)]
                               for q in codes])
    expected = (expected_codes.astype(np.float32) - np.float32(qout["zeropt"])) * qout["scale"].reshape(-1)
    lowered, report = lower(model, "lerp64")
    assert report[0].form == "PerChannelLUT lerp64"
    assert report[0].entries_per_channel == 2 ** (qin["bits"] - 2) + 1
    np.testing.assert_array_equal(run(lowered, x)[0], expected)
    exact_codes = np.rint(run(model, x)[0] / qout["scale"].reshape(-1) + qout["zeropt"]).astype(np.int64)
    error = np.abs(expected_codes - exact_codes)
    assert report[0].lerp64_max_abs_error == error.max()
    assert report[0].lerp64_mean_abs_error == pytest.approx(error.mean())


def int_quantizer(bits, signed, scale=1.0, zeropt=0.0, narrow=False):
    return {"bits": bits, "signed": signed, "narrow": narrow, "zeropt": zeropt,
            "scale": np.asarray(scale, dtype=np.float32)}


def identity_table(grid_range=4.0, grid_size=9, sign=1.0):
    return sign * np.linspace(-grid_range, grid_range, grid_size, dtype=np.float32)[None]


def test_rising_table_becomes_multithreshold_with_thresholds_halfway_between_codes():
    # input codes 0..3 (x = 0..3), f(x) = x, output UINT2 scale 1: k = x
    model = psa_model(identity_table(), 4.0, int_quantizer(2, False), int_quantizer(2, False))
    lowered, report = lower(model, "auto")
    assert [n.op_type for n in lowered.graph.node] == ["Quant", "MultiThreshold", "Identity"]
    mt = lowered.graph.node[1]
    np.testing.assert_array_equal(lowered.get_initializer(mt.input[1]), [[0.5, 1.5, 2.5]])
    attributes = {a.name: helper.get_attribute_value(a) for a in mt.attribute}
    assert attributes["out_dtype"] == b"UINT2" and attributes["out_bias"] == 0.0
    assert "data_layout" not in attributes  # one shared row: any layout
    assert report[0].entries_per_channel == 3


def test_falling_table_becomes_a_table_and_threshold_mode_refuses_it():
    # input codes 0..3, f(x) = -x, output INT3 scale 1: k = -x. A MultiThreshold would need a sign Mul after it.
    model = psa_model(identity_table(sign=-1.0), 4.0, int_quantizer(2, False), int_quantizer(3, True), tokens=4)
    with pytest.raises(ValueError, match="'psa': mode threshold.*1 channel.*sign Mul.*loops"):
        lower(model, "threshold")
    lowered, report = lower(model, "auto")
    assert [n.op_type for n in lowered.graph.node] == ["Quant", "PerChannelLUT", "Identity"]
    np.testing.assert_array_equal(lowered.get_initializer(lowered.graph.node[1].input[1]), [[0, -1, -2, -3]])
    assert (report[0].rising_channels, report[0].falling_channels) == (0, 1)
    assert "1 channel(s) fall" in report[0].reason and "FactorOutMulSignMagnitude" in report[0].reason
    x = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    np.testing.assert_array_equal(run(lowered, x), -x)


def test_per_tensor_8_bit_rising_table_is_one_multithreshold_and_one_scalar_mul():
    table = np.tanh(np.linspace(-4, 4, 64, dtype=np.float32))[None].repeat(3, axis=0) * [[1.0], [2.0], [3.0]]
    x = every_code_input(int_quantizer(8, True, 4 / 128), 3, [])
    model = psa_model(table.astype(np.float32), 4.0, int_quantizer(8, True, 4 / 128),
                      int_quantizer(8, True, 3 / 127, narrow=True), tokens=x.shape[1])
    lowered, report = lower(model, "auto")
    assert [n.op_type for n in lowered.graph.node] == ["Quant", "MultiThreshold", "Mul", "Identity"]
    assert lowered.get_initializer(lowered.graph.node[1].input[1]).shape == (3, 254)
    assert lowered.get_initializer(lowered.graph.node[2].input[1]).shape == ()
    assert report[0].entries_per_channel == 254 and report[0].monotone
    np.testing.assert_array_equal(run(lowered, x), run(model, x))


def test_input_quant_stays_and_still_feeds_the_residual_add():
    table = np.sin(np.linspace(-3, 3, 64, dtype=np.float32))[None].repeat(2, axis=0)
    qin = int_quantizer(6, True, [0.1, 0.05])
    x = every_code_input(qin, 2, [[9.0, -9.0]])
    model = psa_model(table, 3.0, qin, int_quantizer(8, True, 1 / 100), residual=True, tokens=x.shape[1])
    lowered, _ = lower(model, "auto")
    quant_in = lowered.graph.node[0]
    assert quant_in.name == "quant_in"
    assert sorted(n.op_type for n in lowered.find_consumers(quant_in.output[0])) == ["Add", "Mul"]
    np.testing.assert_array_equal(run(lowered, x), run(model, x))


def test_lut_forms_use_integer_codes_around_the_lut():
    qin = int_quantizer(4, False, 0.5, zeropt=8.0)
    qout = int_quantizer(5, False, 0.25, zeropt=3.0)
    x = every_code_input(qin, 1, [[100.0], [-100.0]])
    model = psa_model(np.cos(np.linspace(-4, 4, 64, dtype=np.float32))[None], 4.0, qin, qout, tokens=x.shape[1])
    lowered, report = lower(model, "full")
    assert [n.op_type for n in lowered.graph.node] == ["Quant", "Mul", "Add", "PerChannelLUT", "Add", "Mul",
                                                       "Identity"]
    lut = lowered.graph.node[3]
    attributes = {a.name: helper.get_attribute_value(a) for a in lut.attribute}
    assert attributes == {"inputDataType": b"UINT4", "outputDataType": b"UINT5", "mode": b"full"}
    assert lowered.get_initializer(lut.input[1]).shape == (1, 16)
    assert report[0].entries_per_channel == 16
    np.testing.assert_array_equal(run(lowered, x), run(model, x))


GOOD_TABLE = np.linspace(-1, 1, 64, dtype=np.float32)[None]


@pytest.mark.parametrize("variant, message", [
    ({"in_quant": False, "table": np.sin(np.linspace(-4, 4, 64, dtype=np.float32))[None]},
     "'psa' reads the unquantized tensor graph input 'x'.*not monotone.*add an input quantizer"),
    ({"in_quant": False, "table": -GOOD_TABLE}, "'psa' reads the unquantized tensor graph input 'x'.*decreasing"),
    ({"in_quant": False, "mode": "full"}, "'psa': mode full tabulates input codes.*'x'.*QuantIdentity"),
    ({"qin": int_quantizer(13, True, 0.001), "mode": "full"}, "psa.*13-bit.*at most 12"),
    ({"qin": int_quantizer(13, True, 0.001), "mode": "lerp64"}, "psa.*13-bit.*at most 12"),
    ({"qin": int_quantizer(2, True, 0.5), "mode": "lerp64"}, "psa.*lerp64 needs input codes of at least 3 bits"),
    ({"qin": int_quantizer(8, True, [[0.1], [0.2]])}, "psa.*inconsistent scale of Quant node 'quant_in'"),
    ({"qout": int_quantizer(8, True, -0.1)}, "psa.*inconsistent scale of Quant node 'quant_out'"),
    ({"qout": int_quantizer(8, False, 0.1, zeropt=0.5)}, "psa.*inconsistent zero point of Quant node 'quant_out'"),
    ({"table": np.sin(np.linspace(-4, 4, 64, dtype=np.float32))[None], "mode": "threshold"},
     "psa.*mode threshold needs every channel.*first: \\[0\\]"),
    ({"table": np.full((1, 64), np.inf, dtype=np.float32)}, "psa.*table has 64 non-finite"),
])
def test_bad_patterns_are_errors_naming_the_node(variant, message):
    qin = variant.get("qin", int_quantizer(8, True, 0.05))
    qout = variant.get("qout", int_quantizer(8, True, 0.01))
    model = psa_model(variant.get("table", GOOD_TABLE), 4.0, qin, qout, in_quant=variant.get("in_quant", True))
    with pytest.raises(ValueError, match=message):
        lower(model, variant.get("mode", "auto"))


@pytest.mark.parametrize("variant, reason", [
    ({"out_quant": False}, "no Quant reads its output"),
    ({"second_consumer": True}, "no Quant reads its output"),
    ({"qin": int_quantizer(13, True, 0.001), "table": np.sin(np.linspace(-4, 4, 64, dtype=np.float32))[None]},
     "13-bit input codes is too wide"),
])
def test_what_cannot_be_lowered_stays_with_the_reason_in_the_report(variant, reason):
    model = psa_model(variant.get("table", GOOD_TABLE), 4.0, variant.get("qin", int_quantizer(8, True, 0.05)),
                      int_quantizer(8, True, 0.01), out_quant=variant.get("out_quant", True))
    if variant.get("second_consumer"):
        model.graph.node.insert(3, helper.make_node("Identity", ["f"], ["f_copy"], name="second_consumer"))
    lowered, report = lower(model, "auto")
    assert [(entry.node, entry.form) for entry in report] == [("psa", "left in place")]
    assert reason in report[0].reason
    assert [n.op_type for n in lowered.graph.node] == [n.op_type for n in model.graph.node]


def test_a_rising_lerp_psa_on_an_unquantized_input_becomes_thresholds_exact_at_every_float_boundary():
    table = np.tanh(np.linspace(-4, 4, 64, dtype=np.float32))[None].repeat(2, 0) * [[1.0], [2.0]]

    def model(tokens):
        return psa_model(table.astype(np.float32), 4.0, None, int_quantizer(6, True, 1 / 16),
                         affine=([0.5, 1.5], [0.25, -0.5]), in_quant=False, tokens=tokens)

    lowered, report = lower(model(1), "auto")
    assert report[0].form == "MultiThreshold" and report[0].input_datatype is None
    assert [n.op_type for n in lowered.graph.node] == ["MultiThreshold", "Mul", "Identity"]
    finite = np.unique(lowered.get_initializer(lowered.graph.node[0].input[1]))
    finite = finite[np.isfinite(finite)].astype(np.float32)
    # every threshold, the float32 just below it, and values in between: the lowered graph agrees on all of them
    x = np.concatenate([finite, np.nextafter(finite, np.float32(-np.inf)), np.linspace(-9, 9, 301, dtype=np.float32)])
    x = np.stack([x, x], axis=1)[None]
    exact = model(x.shape[1])
    np.testing.assert_array_equal(run(lower(exact, "auto")[0], x), run(exact, x))


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown lowering mode 'fast'"):
        LowerQuantizedFunctions("fast")
    with pytest.raises(ValueError, match="unknown lowering mode 'fast'"):
        lower_quantized_functions(psa_model(GOOD_TABLE, 4.0, int_quantizer(8, True, 0.05),
                                            int_quantizer(8, True, 0.01)), "fast")


def test_cli_writes_the_model_and_the_json_report(tmp_path):
    qin, qout = int_quantizer(8, True, 0.05), int_quantizer(8, True, 0.01)
    psa_model(GOOD_TABLE, 4.0, qin, qout).save(str(tmp_path / "model.onnx"))
    args = Namespace(model=tmp_path / "model.onnx", out=tmp_path / "out" / "lowered.onnx", mode="lerp64")
    assert cli.run(args, "lower") == 0
    report = json.loads((tmp_path / "out" / "lowered.json").read_text())
    assert report["forms"] == {"PerChannelLUT lerp64": 1}
    assert report["lerp64_max_abs_error"] == report["nodes"][0]["lerp64_max_abs_error"]
    assert report["lerp64_mean_abs_error"] == report["nodes"][0]["lerp64_mean_abs_error"]
    assert report["nodes"][0]["node"] == "psa" and report["nodes"][0]["entries_per_channel"] == 65
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lowered.json", "lowered.onnx"]
    lowered = ModelWrapper(str(tmp_path / "out" / "lowered.onnx"))
    assert [n.op_type for n in lowered.graph.node].count("PerChannelLUT") == 1


def test_cli_rejects_a_model_that_is_not_qonnx(tmp_path, capsys):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    ModelWrapper(qonnx_make_model(graph)).save(str(tmp_path / "plain.onnx"))
    (tmp_path / "junk.onnx").write_text("not a model")
    for name, message in (("plain.onnx", "not a QONNX model"), ("junk.onnx", "not an ONNX model"),
                          ("missing.onnx", "no such file")):
        status = main(["lower", "--model", str(tmp_path / name), "--out", str(tmp_path / "lowered.onnx")])
        err = capsys.readouterr().err
        assert status == EXIT_BAD_INPUT
        assert message in err and err.count("\n") == 1 and " lower: error: " in err
    assert not (tmp_path / "lowered.onnx").exists() and not (tmp_path / "lowered.json").exists()


@pytest.fixture(scope="module")
def digits():
    from psa_finn.models.datasets import load_digits_split

    return load_digits_split()


@pytest.mark.slow
@pytest.mark.parametrize("variant, bits", [("relu", 8), ("lerp_psa", 8), ("bspline", 8), ("lerp_psa", 4)])
def test_exported_digits_resmlp_logits_are_unchanged_by_lowering(variant, bits, digits, tmp_path):
    import torch

    from psa_finn.export.onnx_eval import run_onnx
    from psa_finn.export.qat import to_qat_model
    from psa_finn.export.qonnx_export import export_qonnx
    from psa_finn.models import ResMLP
    from psa_finn.models.datasets import DATASET_GEOMETRY

    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = ResMLP(variant, 0.5, embed_dim=16, depth=2, **DATASET_GEOMETRY["digits"].model_kwargs()).eval()
    qat = to_qat_model(model, bits, [x_train[:128], x_train[128:256]])
    export_qonnx(qat, torch.zeros(qat.input_shape), tmp_path / "model.onnx")
    expected = run_onnx(tmp_path / "model.onnx", x_test)
    for mode in ("auto", "full"):
        lowered, report = lower_model_file(tmp_path / "model.onnx", mode)
        lowered_chains = [entry for entry in report if entry.form not in ("left to FINN", "left in place")]
        assert len(lowered_chains) == {"relu": 0, "lerp_psa": 4, "bspline": 4}[variant]
        assert all(entry.form == "left to FINN" and "Relu" in entry.ops for entry in report
                   if entry not in lowered_chains)
        assert not [n for n in lowered.graph.node if n.op_type == "LerpPSA"]
        np.testing.assert_array_equal(run_onnx(lowered, x_test), expected)
