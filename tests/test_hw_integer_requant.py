"""IntegerRequant: the conversion of uniform MultiThresholds (exact on every input code, python mode), what stays a
threshold, datatype following, the resource estimates, and the generated Verilog simulated (Icarus / Verilator)
bit-exact against the Python execution with random stalls."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_datatypes import InferDataTypes
from requant_graphs import multithreshold_model, quantizer_thresholds

from psa_finn.custom_ops.domain import RTL_DOMAIN
import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the layer and its backends)
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import simulate_axis_stream, simulator_available
from psa_finn.custom_ops.fpgadataflow.rtl.integer_requant_verilog import PIPELINE_LATENCY
from psa_finn.transforms.convert_to_hw_integer_requant import InferIntegerRequantLayer
from psa_finn.transforms.fold_channel_layers import FoldChannelLayers
from psa_finn.transforms.identity_requantizers import RemoveIdentityRequantizers, is_identity_requantizer

FPGA_PART = "xcu50-fsvh2104-2-e"
needs_simulator = pytest.mark.skipif(not (simulator_available("iverilog") or simulator_available("verilator")),
                                     reason="no RTL simulator: install Debian's iverilog or verilator")


def every_code(input_dt, channels):
    """[codes, channels]: every value of the input type in every channel."""
    dt = DataType[input_dt]
    return np.repeat(np.arange(dt.min(), dt.max() + 1, dtype=np.float32)[:, None], channels, axis=1)


def requant_case(input_dt="INT12", output_dt="INT8", scale=2.0 ** -5, channels=8, shared=False, seed=0):
    """(MultiThreshold model over every input code, its input): a quantizer y = clip(round(scale * x + b)) with
    half-integer biases (rounding ties) per channel, or one shared row."""
    rng = np.random.default_rng(seed)
    odt, idt = DataType[output_dt], DataType[input_dt]
    rows = 1 if shared else channels
    dyadic = np.log2(scale) == np.round(np.log2(scale))
    biases = rng.integers(-6, 6, rows) / 2 if dyadic else rng.normal(0, 3, rows)
    thresholds = quantizer_thresholds(scale, biases, int(odt.min()), int(odt.max()), int(idt.min()), int(idt.max()))
    x = every_code(input_dt, channels)
    return multithreshold_model(thresholds, input_dt, output_dt, odt.min(), list(x.shape), "NC"), x


@pytest.mark.parametrize("input_dt,output_dt,scale,shared", [
    ("INT12", "INT8", 2.0 ** -5, False),  # ties, half-even
    ("INT8", "UINT4", 2.0 ** -3, False),
    ("UINT8", "INT4", 2.0 ** -4, True),  # one shared threshold row
    ("INT12", "INT8", 0.0371, False),  # a scale that is not a power of two: a multiplier
    ("INT16", "UINT8", 2.0 ** -8, False),
])
def test_uniform_thresholds_become_an_exact_requantizer(input_dt, output_dt, scale, shared):
    model, x = requant_case(input_dt, output_dt, scale, shared=shared)
    expected = execute_onnx(model, {"x": x})["y"]
    converted = model.transform(InferIntegerRequantLayer())
    assert [n.op_type for n in converted.graph.node] == ["IntegerRequant"]
    assert converted.get_initializer("thresholds") is None
    layer = getCustomOp(converted.graph.node[0])
    assert layer.get_nodeattr("NumChannels") == 8 and layer.get_nodeattr("Rounding") == "half_even"
    assert np.array_equal(execute_onnx(converted, {"x": x})["y"], expected)  # every input code, every channel
    assert layer.is_multiplier_free() == (scale in (2.0 ** -5, 2.0 ** -3, 2.0 ** -4, 2.0 ** -8))
    assert converted.get_tensor_datatype("y") == DataType[output_dt]


def test_low_bit_and_non_uniform_thresholds_stay():
    two_bits, _ = requant_case("INT8", "INT2", 2.0 ** -4)
    assert two_bits.transform(InferIntegerRequantLayer()).graph.node[0].op_type == "MultiThreshold"
    assert two_bits.transform(InferIntegerRequantLayer(min_output_bits=2)).graph.node[0].op_type == "IntegerRequant"
    bent, _ = requant_case("INT8", "INT4", 2.0 ** -3)
    thresholds = bent.get_initializer("thresholds").copy()
    thresholds[2, 9] += 3  # one step of 8 inputs becomes 11, the next 5
    bent.set_initializer("thresholds", thresholds)
    assert bent.transform(InferIntegerRequantLayer()).graph.node[0].op_type == "MultiThreshold"


def test_requantizer_follows_a_narrower_input_type_and_refuses_a_wider_one():
    model, _ = requant_case("INT12", "INT8")
    model = model.transform(InferIntegerRequantLayer())
    model.set_tensor_datatype("x", DataType["INT9"])
    layer = getCustomOp(model.graph.node[0])
    layer.infer_node_datatype(model)
    assert layer.get_nodeattr("inputDataType") == "INT9"
    model.set_tensor_datatype("x", DataType["INT16"])
    with pytest.raises(ValueError, match="mt: input x is annotated INT16, wider than inputDataType=INT9"):
        layer.infer_node_datatype(model)


def test_resource_estimates_follow_the_datapath():
    free, _ = requant_case("INT12", "INT8", 2.0 ** -5)
    free = free.transform(InferIntegerRequantLayer())
    scaled, _ = requant_case("INT12", "INT8", 0.0371)
    scaled = scaled.transform(InferIntegerRequantLayer())
    a, b = getCustomOp(free.graph.node[0]), getCustomOp(scaled.graph.node[0])
    assert a.dsp_estimation(FPGA_PART) == 0 and b.dsp_estimation(FPGA_PART) == 1  # 12 x (m + 1) bits: one DSP48E2
    # per lane: W = 13-bit M x + B, S = 5, n = 8: 13 + 2 + 1 + 8 + 2 * 3 + 8 = 38; one lane serving 8 channels
    # adds the 8-word bias ROM (LUT6_2: 2 bits per LUT) and a 3-bit fold counter
    assert a.accumulator_bits() == 13 and a.get_nodeattr("Shift") == 5
    assert a.lut_estimation(FPGA_PART) == 38 + (a.bias_bits() + 1) // 2 + 3
    free = free.transform(FoldChannelLayers(1))  # fully parallel: 8 lanes, constants wired
    assert a.get_nodeattr("PE") == 1 and getCustomOp(free.graph.node[0]).get_nodeattr("PE") == 8
    assert getCustomOp(free.graph.node[0]).lut_estimation(FPGA_PART) == 8 * 38
    assert a.bram_estimation(FPGA_PART) == 0 and a.uram_estimation(FPGA_PART) == 0


def rtl_case(tmp_path, input_dt, output_dt, scale, pe, vectors=2):
    """(specialised RTL model with its Verilog generated, python-mode model, input of every code)."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    model, x = requant_case(input_dt, output_dt, scale)
    x = np.concatenate([x] * vectors)
    model = model.transform(InferIntegerRequantLayer())
    getCustomOp(model.graph.node[0]).set_nodeattr("PE", pe)
    model.set_tensor_shape("x", list(x.shape))
    model.set_tensor_shape("y", list(x.shape))
    getCustomOp(model.graph.node[0]).set_nodeattr("numInputVectors", [x.shape[0]])
    hw = model.transform(SpecializeLayers(FPGA_PART))
    node = hw.graph.node[0]
    assert (node.op_type, node.domain) == ("IntegerRequant_rtl", RTL_DOMAIN)
    layer = getCustomOp(node)
    layer.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    layer.generate_hdl(hw, FPGA_PART, 5.0)
    return hw, model, x


@needs_simulator
@pytest.mark.parametrize("input_dt,output_dt,scale,pe", [
    ("INT12", "INT8", 2.0 ** -5, 2),  # 4 channels per lane: bias ROM on the fold counter, half-even ties
    ("INT8", "UINT4", 2.0 ** -3, 8),  # one channel per lane: constants
    ("UINT8", "INT8", 0.37, 4),  # a multiplier per channel
])
def test_rtl_simulation_equals_python_execution(tmp_path, input_dt, output_dt, scale, pe):
    hw, reference, x = rtl_case(tmp_path, input_dt, output_dt, scale, pe)
    layer = getCustomOp(hw.graph.node[0])
    layer.set_nodeattr("exec_mode", "rtlsim")
    produced = execute_onnx(hw, {"x": x})["y"]
    assert np.array_equal(produced, execute_onnx(reference, {"x": x})["y"])
    words = x.size // pe
    assert layer.get_nodeattr("cycles_rtlsim") == words + PIPELINE_LATENCY


@needs_simulator
def test_rtl_simulation_with_stalls(tmp_path):
    from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy

    hw, reference, x = rtl_case(tmp_path, "INT12", "INT8", 2.0 ** -5, pe=2, vectors=1)
    layer = getCustomOp(hw.graph.node[0])
    g = layer.get_geometry()
    words = npy_to_rtlsim_input(x.reshape(layer.get_folded_input_shape(0)), layer.get_input_datatype(0),
                                g.in_stream_bits)
    result = simulate_axis_stream(layer.get_rtl_file_list(abspath=True), layer.get_nodeattr("gen_top_module"),
                                  g.in_stream_bits, g.out_stream_bits, words, len(words), tmp_path / "stalls",
                                  valid_stall=0.3, ready_stall=0.4, seed=5)
    y = rtlsim_output_to_npy(result.out_words, None, layer.get_output_datatype(), layer.get_folded_output_shape(0),
                             g.out_stream_bits, layer.get_output_datatype().bitwidth())
    expected = execute_onnx(reference, {"x": x})["y"]
    assert np.array_equal(np.asarray(y).reshape(expected.shape), expected)
    assert result.cycles > len(words) + PIPELINE_LATENCY


def identity_case(input_dt, output_dt, scale=1.0, out_range=None):
    """A converted requantizer of y = clip(round(scale * x)) whose input is then typed `input_dt` (as finn's
    step_minimize_bit_width narrows an accumulator)."""
    odt = DataType[output_dt]
    low, high = out_range or (int(odt.min()), int(odt.max()))
    thresholds = quantizer_thresholds(scale, [0.0] * 4, low, high, -2**15, 2**15 - 1)
    model = multithreshold_model(thresholds, "INT16", output_dt, low, [3, 4], "NC")
    model = model.transform(InferIntegerRequantLayer())
    model.set_tensor_datatype("x", DataType[input_dt])
    return model.transform(InferDataTypes())


@pytest.mark.parametrize("input_dt,output_dt,scale,out_range,identity", [
    ("INT8", "INT8", 1.0, None, True),  # a 0/1 selection of INT8 codes, narrowed to INT8: y = x
    ("INT16", "INT8", 1.0, None, False),  # the clip acts on the wider input
    ("INT8", "INT8", 0.5, None, False),  # another grid
    ("UINT4", "UINT4", 1.0, None, True),
    ("INT8", "INT8", 1.0, (-127, 127), False),  # narrow range: -128 is clipped
])
def test_identity_requantizers_are_removed(input_dt, output_dt, scale, out_range, identity):
    model = identity_case(input_dt, output_dt, scale, out_range)
    node = model.graph.node[0]
    assert is_identity_requantizer(model, node) is identity
    dt = DataType[input_dt]
    x = np.random.default_rng(0).integers(dt.min(), dt.max() + 1, (3, 4)).astype(np.float32)
    x[0] = [dt.min(), dt.max(), 0, dt.max()]
    # a consumer for the bypass to re-point: y -> Neg -> z
    model.graph.node.append(helper.make_node("Neg", ["y"], ["z"], name="consumer"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 4]))
    model.set_tensor_shape("y", [3, 4])
    expected = execute_onnx(model, {"x": x})["z"]
    removed = model.transform(RemoveIdentityRequantizers())
    assert [n.op_type for n in removed.graph.node] == (["Neg"] if identity else ["IntegerRequant", "Neg"])
    assert np.array_equal(execute_onnx(removed, {"x": x})["z"], expected)


def test_identity_thresholding_layer_is_removed():
    """finn-plus's Thresholding (requantizers kept as thresholds) is recognised the same way."""
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import InferThresholdingLayer

    thresholds = quantizer_thresholds(1.0, [0.0] * 4, -8, 7, -2**15, 2**15 - 1)
    model = multithreshold_model(thresholds, "INT16", "INT4", -8, [3, 4], "NC")
    model = model.transform(InferThresholdingLayer())
    assert model.graph.node[0].op_type == "Thresholding"
    assert not is_identity_requantizer(model, model.graph.node[0])  # INT16 input: the clip acts
    model.set_tensor_datatype("x", DataType["INT4"])
    model = model.transform(InferDataTypes())
    assert is_identity_requantizer(model, model.graph.node[0])
