"""The stream behaviour models against the RTL: each layer's generated Verilog runs in Verilator (Icarus for our
PerChannelLUT) on two frames of a test stream, input always valid and output always ready, and the cycle of every
input and output handshake must be the model's read and write times, all shifted by one constant (the RTL's
pipeline latency, which the models leave out). finn-rtllib's fmpadding.sv (struct initialisers) and the width
converter's vpc.sv (a recursive constant function) do not build in Debian's Verilator 5.006: those models rest on
the RTL source read and finn-plus's cycle formulas only."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from psa_finn.custom_ops.domain import RTL_DOMAIN
import psa_finn.custom_ops.fpgadataflow  # noqa: F401
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import simulate_axis_stream, simulator_available
from psa_finn.dataflow_sim.dataflow_graph import simulate

RTL = RTL_DOMAIN
PART, CLOCK_NS = "xcu50-fsvh2104-2-e", 5.0
FRAMES = 2
needs_verilator = pytest.mark.skipif(not simulator_available("verilator"), reason="verilator is not installed")
pytestmark = pytest.mark.slow  # a Verilator build each (tens of seconds)


def _one_layer(op_type, in_shape, out_shape, **attrs):
    node = helper.make_node(op_type, ["x"], ["y"], name="layer", domain=RTL, backend="fpgadataflow", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    model = ModelWrapper(helper.make_model(graph))
    return model, getCustomOp(model.graph.node[0])


def _model_times(model):
    """Read and write times of the layer's words over FRAMES frames (input always there, output always taken)."""
    result = simulate(model, FRAMES)
    (stream_in,) = [s for s in result.system.streams if s.producer is None]
    (stream_out,) = [s for s in result.system.streams if s.consumer is None]
    return result.stream_times(stream_in)[1], result.stream_times(stream_out)[0]


def _rtl_times(op, model, tmp_path, simulator="verilator", support_files=()):
    """Handshake cycles of the layer's generated RTL on FRAMES frames of random words (generated here unless the
    caller did)."""
    from psa_finn.build_configs.finn_shims import boot_finn

    if not op.get_nodeattr("gen_top_module"):
        boot_finn(tmp_path)
        op.set_nodeattr("code_gen_dir_ipgen", str(tmp_path / "gen"))
        (tmp_path / "gen").mkdir()
        op.generate_hdl(model, PART, CLOCK_NS)
    n_in = int(np.prod(op.get_folded_input_shape()[:-1])) * FRAMES
    n_out = int(np.prod(op.get_folded_output_shape()[:-1])) * FRAMES
    words = np.random.default_rng(0).integers(0, 2 ** min(op.get_instream_width(), 16), size=n_in)
    run = simulate_axis_stream(op.get_rtl_file_list(abspath=True), op.get_nodeattr("gen_top_module"),
                               op.get_instream_width_padded(), op.get_outstream_width_padded(), words, n_out,
                               tmp_path / "sim", support_files=support_files, simulator=simulator)
    return np.asarray(run.in_cycles), np.asarray(run.out_cycles)


def _assert_same_trace(model_times, rtl_times):
    (model_reads, model_writes), (rtl_reads, rtl_writes) = model_times, rtl_times
    assert len(rtl_reads) == len(model_reads) and len(rtl_writes) == len(model_writes)
    shift = rtl_reads[0] - model_reads[0]
    np.testing.assert_array_equal(rtl_reads - shift, model_reads)
    latency = rtl_writes - shift - model_writes
    assert latency.min() == latency.max() >= 0, f"output latency varies from {latency.min()} to {latency.max()}"


@needs_verilator
@pytest.mark.parametrize("kernel, stride, channels, simd, depthwise", [
    (3, 1, 2, 1, 0),  # a 3x3 convolution's window stream
    (2, 2, 4, 2, 1),  # a 2x2 max pool's (depthwise, stride 2)
])
def test_sliding_window_model_matches_the_rtl_trace(tmp_path, kernel, stride, channels, simd, depthwise):
    side = 6
    out_side = (side - kernel) // stride + 1
    model, op = _one_layer("ConvolutionInputGenerator_rtl", [1, side, side, channels],
                           [1, out_side, out_side, kernel * kernel * channels], ConvKernelDim=[kernel, kernel],
                           IFMChannels=channels, IFMDim=[side, side], OFMDim=[out_side, out_side], SIMD=simd,
                           Stride=[stride, stride], Dilation=[1, 1], inputDataType="INT4", outputDataType="INT4",
                           depthwise=depthwise)
    _assert_same_trace(_model_times(model), _rtl_times(op, model, tmp_path))


@pytest.mark.skipif(not simulator_available("iverilog"), reason="iverilog is not installed")
@pytest.mark.parametrize("mode, pe", [("lerp64", 4)])
def test_per_channel_lut_model_matches_the_rtl_trace(tmp_path, mode, pe):
    from test_rtlsim_per_channel_lut import rtl_model

    model, op, _ = rtl_model(tmp_path / "gen", mode, pe, num_vectors=(3, 2))
    _assert_same_trace(_model_times(model), _rtl_times(op, model, tmp_path, simulator="iverilog",
                                                       support_files=op.get_all_meminit_filenames(abspath=True)))


@needs_verilator
@pytest.mark.parametrize("channels, pe", [(4, 2)])
def test_thresholding_model_matches_the_rtl_trace(tmp_path, channels, pe):
    steps = 3
    thresholds = np.sort(np.random.default_rng(1).integers(-8, 8, size=(channels, steps)), axis=1)
    node = helper.make_node("Thresholding_rtl", ["x", "t"], ["y"], name="layer", domain=RTL, backend="fpgadataflow",
                            NumChannels=channels, PE=pe, numSteps=steps, inputDataType="INT4",
                            weightDataType="INT4", outputDataType="UINT2", numInputVectors=[1, 3], ActVal=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, channels])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, channels])],
                              [helper.make_tensor("t", TensorProto.FLOAT, [channels, steps],
                                                  thresholds.astype(np.float32).ravel())])
    model = ModelWrapper(helper.make_model(graph))
    _assert_same_trace(_model_times(model), _rtl_times(getCustomOp(model.graph.node[0]), model, tmp_path))
