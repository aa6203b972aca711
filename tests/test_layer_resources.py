"""analysis.resources: the layer models against hand-computed cases and over parameter sweeps, the FIFO function,
and the analysis over a model (which basis each layer gets; the model is not changed)."""

from math import ceil

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_layer_resources")

import finn.custom_op.fpgadataflow.hls  # noqa: E402,F401  (registers finn-plus's HW layers)
import finn.custom_op.fpgadataflow.rtl  # noqa: E402,F401
from finn.util.resource_models import _fifo_cost  # noqa: E402

from psa_finn.analysis.resources import fifo_resources, layer_resources  # noqa: E402
from psa_finn.analysis.resources.mvau import mvu_geometry  # noqa: E402
from psa_finn.analysis.resources.primitives import adder_tree_luts, memory_resources, mux_luts, sum_width  # noqa
from psa_finn.hardware_checks.lut_layer_models import make_lut_layer_model  # noqa: E402

U50 = "xcu50-fsvh2104-2-e"
RTL, HLS = "finn.custom_op.fpgadataflow.rtl", "finn.custom_op.fpgadataflow.hls"


def _model(nodes, inp, out, in_shape, out_shape, initializers=None, datatypes=None):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)])
    model = ModelWrapper(qonnx_make_model(graph))
    for name, value in (initializers or {}).items():
        model.set_initializer(name, value)
    for name, dtype in (datatypes or {}).items():
        from qonnx.core.datatype import DataType
        model.set_tensor_datatype(name, DataType[dtype])
    return model


def mvau_model(mw, mh, pe, simd, wdt="INT8", idt="INT8", odt="INT24", vectors=(1, 4), op_type="MVAU_rtl", seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-127, 128, size=(mw, mh)).astype(np.float32)
    domain = RTL if op_type.endswith("_rtl") else HLS
    node = helper.make_node(op_type, ["x", "w"], ["y"], domain=domain, backend="fpgadataflow", name="mvau", MW=mw,
                            MH=mh, PE=pe, SIMD=simd, inputDataType=idt, weightDataType=wdt, outputDataType=odt,
                            noActivation=1, mem_mode="internal_decoupled", numInputVectors=list(vectors),
                            resType="dsp" if op_type.endswith("_rtl") else "lut")
    return _model([node], "x", "y", [*vectors, mw], [*vectors, mh], {"w": weights}, {"x": idt, "w": wdt, "y": odt})


def thresholding_model(channels, pe, steps, wdt="INT8", rows=None, act_val=0, op_type="Thresholding_rtl"):
    rows = channels if rows is None else rows
    thresholds = np.sort(np.random.default_rng(0).integers(-100, 100, size=(rows, steps)), axis=1).astype(np.float32)
    domain = RTL if op_type.endswith("_rtl") else HLS
    out_bits = int(np.ceil(np.log2(steps + 1)))
    node = helper.make_node(op_type, ["x", "t"], ["y"], domain=domain, backend="fpgadataflow", name="thr",
                            NumChannels=channels, PE=pe, numSteps=steps, inputDataType=wdt, weightDataType=wdt,
                            outputDataType=f"UINT{out_bits}", ActVal=act_val, numInputVectors=[1, 4])
    return _model([node], "x", "y", [1, 4, channels], [1, 4, channels], {"t": thresholds}, {"x": wdt})


def figures(model, name=None):
    return layer_resources(model, U50)[name or model.graph.node[0].name]


# ---- building blocks -------------------------------------------------------------------------------------------

def test_adder_tree_widths_follow_add_multi():
    # 4 unsigned 8-bit addends: two 9-bit adders, one 10-bit adder
    assert sum_width(2, 8) == 9 and sum_width(4, 8) == 10
    assert adder_tree_luts(4, 8) == 9 + 9 + 10
    assert adder_tree_luts(1, 8) == 0
    # addends in [-1, 1]: 2 of them span [-2, 2] (3 bits), 4 span [-4, 4] (4 bits)
    assert adder_tree_luts(4, 2, -1, 1) == 3 + 3 + 4


def test_mux_and_memory_primitives():
    assert mux_luts(4, 8) == 8 and mux_luts(5, 8) == 16 and mux_luts(2, 8) == 4 and mux_luts(1, 8) == 0
    assert memory_resources(1, 32, "distributed") == {"lut": 0, "bram18": 0, "uram": 0}  # a register
    assert memory_resources(64, 8, "distributed")["lut"] == 8  # one 64 x 1 LUT6 per bit
    assert memory_resources(2048, 9, "block") == {"lut": 0, "bram18": 1, "uram": 0}
    assert memory_resources(4096, 72, "ultra")["uram"] == 1
    # "auto": finn-plus's Vivado-fitted boundary depth^2 x width >= 2^20
    assert memory_resources(128, 16, "auto")["bram18"] == 0 and memory_resources(512, 16, "auto")["bram18"] == 1
    with pytest.raises(ValueError, match="unknown memory style"):
        memory_resources(64, 8, "flash")


# ---- MVAU ------------------------------------------------------------------------------------------------------

def test_mvu_lane_packing_by_hand():
    # 8-bit weights and activations on DSP48E2 (A:D path 27 bits): 2 lanes of >= 15 bits; slack 4 goes to lane 0
    geometry = mvu_geometry(8, 8, 21, 4, 2, narrow_weights=True)
    assert geometry["lanes"] == 2 and geometry["lo_widths"] == [19, 21]
    # lane 0's side band: 1 + clog2(2^(21-19-1) + SIMD) = 1 + clog2(6) = 4; the top lane has none
    assert geometry["hi_widths"] == [4, 0]
    # 4-bit operands: 1 + (27 - 4) / 7 = 4 lanes; 2-bit: 1 + (27 - 2) / 3 = 9 (DSP48E1, 25 bits: 1 + 23 / 3 = 8)
    assert mvu_geometry(4, 4, 16, 8, 2, narrow_weights=True)["lanes"] == 4
    assert mvu_geometry(2, 2, 16, 8, 2, narrow_weights=True)["lanes"] == 9
    assert mvu_geometry(2, 2, 16, 8, 1, narrow_weights=True)["lanes"] == 8


def test_mvau_rtl_by_hand():
    """PE 2 x SIMD 4, 8-bit: one pipe of 2 lanes, 4 DSPs; LUTs summed from the datapath by hand."""
    model = mvau_model(8, 4, 2, 4, odt="INT21")
    geometry = mvu_geometry(8, 8, 21, 4, 2, narrow_weights=True)
    assert geometry["lo_widths"] == [19, 21]
    lane0 = adder_tree_luts(4, 19) + adder_tree_luts(4, 2, -1, 1) + 4 + 21  # lo tree, side band tree + acc, resolve
    lane1 = adder_tree_luts(4, 21) + 2 * 21
    canary = 4 * 1
    wrapper = (1 + 1) + 2 * 21  # SF = 2, NF = 2 counters; output buffer PE x ACCU in SRLs
    # weights: WMEM = 8 x 4 / 8 = 4 words of 64 bits, auto -> finn's BRAM rule (1 x ceil(64 / 36) = 2); replay
    # buffer 2 x 32 bits LUTRAM; address counter 2 bits
    replay = ceil(2 / 32) * ceil(32 / 2) * 5 // 4
    fig = figures(model)
    assert fig["dsp"] == 4 and fig["bram18"] == 2 and fig["basis"] == "psa-finn model"
    assert fig["lut"] == lane0 + lane1 + canary + wrapper + replay + 2


@pytest.mark.parametrize("pe,simd", [(1, 1), (2, 4), (3, 8), (8, 8), (16, 2)])
def test_mvau_rtl_sweep_has_logic_and_dsps_per_lane_pair(pe, simd):
    mw, mh = 8 * simd, 6 * pe if pe != 16 else 16
    fig = figures(mvau_model(mw, mh, pe, simd))
    assert fig["dsp"] == ceil(pe / 2) * simd
    assert fig["lut"] >= pe * 24  # at least the output buffer (PE x ACCU) and the resolve adders
    if simd > 1:
        bigger = figures(mvau_model(2 * mw, mh, pe, 2 * simd))
        assert bigger["lut"] > fig["lut"]


def test_mvau_hls_keeps_finn_plus_finn_r_model():
    model = mvau_model(16, 8, 2, 4, odt="INT24", op_type="MVAU_hls")
    op = getCustomOp(model.graph.node[0])
    fig = figures(model)
    assert fig["basis"] == "finn-plus" and fig["lut"] == op.lut_estimation(U50) > 0


# ---- Thresholding ----------------------------------------------------------------------------------------------

def test_thresholding_rtl_by_hand():
    """C 4, PE 1, N 3 (2 stages), 8-bit: stage memories 4 x 8 and 8 x 8 (LUT ROMs of 4 LUT6), two 8-bit
    comparisons, 2 result LUTs, an output queue of 6 x 2 bits (2 SRLs), the 2-bit fold counter and the 4-bit guard."""
    assert figures(thresholding_model(4, 1, 3))["lut"] == 4 + 8 + 1 + 4 + 8 + 1 + 2 + 2 + 4


def test_thresholding_rtl_shared_row_is_one_channel_per_pe_and_bias_adds():
    own = figures(thresholding_model(8, 1, 15))
    shared = figures(thresholding_model(8, 1, 15, rows=1))
    assert shared["lut"] < own["lut"]  # CF = 1: the first stage is a constant, later ones 8x shallower
    biased = figures(thresholding_model(8, 1, 15, act_val=-8))
    assert biased["lut"] > own["lut"]


@pytest.mark.parametrize("channels,pe,steps,wdt", [(16, 1, 255, "INT20"), (64, 4, 255, "INT16"),
                                                   (192, 2, 255, "INT19"), (8, 8, 15, "INT8")])
def test_thresholding_rtl_sweep_counts_comparators_and_memory(channels, pe, steps, wdt):
    fig = figures(thresholding_model(channels, pe, steps, wdt))
    op = getCustomOp(thresholding_model(channels, pe, steps, wdt).graph.node[0])
    stages = int(np.ceil(np.log2(steps + 1)))
    bits = int(wdt[3:])
    assert fig["lut"] >= pe * (stages - 1) * bits  # one comparison per stage and PE (stage 0 may be constant)
    stored = channels * steps * bits
    assert fig["lut"] * 64 + fig["bram18"] * 18 * 1024 >= stored  # the thresholds are somewhere
    assert fig["lut"] > 0 and op.lut_estimation(U50) >= 0


def test_thresholding_hls_compares_every_threshold():
    fig = figures(thresholding_model(4, 2, 15, op_type="Thresholding_hls"))
    assert fig["lut"] >= 2 * 15 * 8 // 2  # 15 comparisons of 8 bits per PE (constant ones cost half)


# ---- stream layers ---------------------------------------------------------------------------------------------

def test_stream_layers_have_logic():
    dup = helper.make_node("DuplicateStreams_hls", ["x"], ["a", "b"], domain=HLS, backend="fpgadataflow",
                           name="dup", NumChannels=8, PE=2, NumOutputStreams=2, inputDataType="INT8",
                           numInputVectors=[1, 4])
    model = _model([dup], "x", "a", [1, 4, 8], [1, 4, 8])
    # trip counter over 4 x 8 / 2 = 16 words (4 bits) + 3 handshakes
    assert figures(model) == {"lut": 4 + 3, "dsp": 0, "bram18": 0, "uram": 0, "basis": "psa-finn model"}
    gap = helper.make_node("GlobalAccPool_hls", ["x"], ["y"], domain=HLS, backend="fpgadataflow", name="gap",
                           NumChannels=8, PE=2, inputDataType="INT8", numInputVectors=[1, 64])
    gap_model = _model([gap], "x", "y", [1, 64, 8], [1, 1, 8], datatypes={"x": "INT8"})
    assert figures(gap_model)["lut"] > 2 * 14  # two accumulators of 8 + 6 bits, plus the partial-sum memory


def test_inner_shuffle_banks_and_rotations():
    node = helper.make_node("InnerShuffle_rtl", ["x"], ["y"], domain=RTL, backend="fpgadataflow", name="shuf",
                            data_type="INT8", in_shape=[1, 64, 96], transpose_in_shape=[1, 64, 96], SIMD=4)
    fig = figures(_model([node], "x", "y", [1, 64, 96], [1, 96, 64]))
    # 4 banks of 2 x 64 x 96 / 4 = 3072 words x 8 bits: auto -> block RAM, 2 RAMB18 each (2K x 9)
    assert fig["bram18"] == 4 * 2
    assert fig["lut"] >= 4 * mux_luts(4, 8)  # the read permutation at least


# ---- FIFO ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth,width", [(2, 8), (32, 64), (64, 8), (200, 32), (1024, 64), (4096, 128)])
def test_fifo_resources_apply_finn_plus_fitted_model(depth, width):
    fig = fifo_resources(depth, width)
    cost = _fifo_cost(depth, width, fig["ram_style"])
    assert (fig["lut"], fig["bram18"], fig["uram"]) == (cost.lut, cost.bram, cost.uram)
    assert fig["lut"] > 0 and fig["dsp"] == 0


def test_fifo_styles_by_hand_and_bad_input():
    assert fifo_resources(32, 64)["ram_style"] == "srl"  # <= 33 deep is always a shift register
    # 1024 x 64 in block RAM: 1024 rows at the 1K x 18 aspect, 64 bits = 3 x 18 + 10 -> 4 RAMB18
    assert fifo_resources(1024, 64, ram_style="block")["bram18"] == 4
    assert fifo_resources(4096, 128)["ram_style"] == "ultra"
    assert fifo_resources(1024, 64, impl_style="virtual")["lut"] == 0
    assert fifo_resources(1, 64)["lut"] == 0
    with pytest.raises(ValueError, match="impl_style 'vivado'"):
        fifo_resources(64, 8, impl_style="vivado")
    with pytest.raises(ValueError, match="ram_style 'lutram'"):
        fifo_resources(64, 8, ram_style="lutram")


# ---- the analysis over a model ---------------------------------------------------------------------------------

def test_psa_finn_layers_use_their_own_methods_and_the_model_is_unchanged():
    model = make_lut_layer_model(96, 4, mode="lerp64", impl_style="rtl")
    before = model.model.SerializeToString()
    fig = figures(model)
    op = getCustomOp(model.graph.node[0])
    assert fig == {"lut": op.lut_estimation(U50), "dsp": 0, "bram18": op.bram_estimation(U50),
                   "uram": op.uram_estimation(U50), "basis": "psa-finn model"}
    assert model.model.SerializeToString() == before


def test_an_op_without_a_psa_finn_model_keeps_finn_plus_figures():
    node = helper.make_node("ConvolutionInputGenerator_rtl", ["x"], ["y"], domain=RTL, backend="fpgadataflow",
                            name="swg", ConvKernelDim=[3, 3], IFMChannels=4, IFMDim=[6, 6], OFMDim=[4, 4], SIMD=2,
                            Stride=[1, 1], Dilation=[1, 1], inputDataType="INT8", outputDataType="INT8")
    model = _model([node], "x", "y", [1, 6, 6, 4], [1, 4, 4, 36])
    fig = figures(model)
    op = getCustomOp(model.graph.node[0])
    assert fig["basis"] == "finn-plus" and fig["lut"] == op.lut_estimation(U50) > 0


def test_window_layers_have_logic():
    pad = helper.make_node("FMPadding_rtl", ["x"], ["y"], domain=RTL, backend="fpgadataflow", name="pad",
                           ImgDim=[4, 4], Padding=[1, 1, 1, 1], NumChannels=4, SIMD=2, inputDataType="INT8",
                           numInputVectors=1)
    fig = figures(_model([pad], "x", "y", [1, 4, 4, 4], [1, 6, 6, 4]))
    assert fig["basis"] == "psa-finn model" and fig["lut"] >= 16  # the 16-bit output select at least
    for function, per_pe in (("MaxPool", 8 + 4), ("QuantAvgPool", 12)):
        pool = helper.make_node("Pool_hls", ["x"], ["y"], domain=HLS, backend="fpgadataflow", name="pool",
                                Channels=4, PE=4, KernelSize=[2, 2], Function=function, OutImgDims=[2, 2],
                                InputDataType="UINT8", OutputDataType="UINT8", AccumBits=12, Size=2, BatchSize=1)
        fig = figures(_model([pool], "x", "y", [1, 2, 2, 16], [1, 2, 2, 4]))
        assert fig["lut"] >= 4 * per_pe  # one comparison + mux (max) or accumulator (average) per PE


def requant_model(scales, pe=1, bits_in="INT16", bits_out="UINT8"):
    channels = len(scales)
    node = helper.make_node("Requant_rtl", ["x", "s", "b"], ["y"], domain=RTL, backend="fpgadataflow", name="rq",
                            NumChannels=channels, PE=pe, inputDataType=bits_in, outputDataType=bits_out,
                            numInputVectors=[1, 4])
    return _model([node], "x", "y", [1, 4, channels], [1, 4, channels],
                  {"s": np.array(scales, dtype=np.float32), "b": np.zeros(channels, dtype=np.float32)},
                  {"x": bits_in})


def test_requant_rtl_by_hand():
    """One channel fold, one shift (scale 2^-8 everywhere): 1 DSP per PE; per PE an 8-bit clip (8 LUTs) and the OR
    over the product bits above the window; no parameter ROM, no shift mux."""
    fig = figures(requant_model([2.0 ** -8] * 2, pe=2))
    op = getCustomOp(requant_model([2.0 ** -8] * 2, pe=2).graph.node[0])
    params = op.decompose_params(requant_model([2.0 ** -8] * 2, pe=2), 2)
    above = params["s_width"] + params["x_width"] - (params["shift_max"] + 8)
    from psa_finn.analysis.resources.primitives import or_reduce_luts
    assert fig["dsp"] == 2 and fig["bram18"] == 0
    assert fig["lut"] == 2 * (8 + or_reduce_luts(above))
    # channels with different shifts add the shift mux; folded channels add their parameter ROM and counter
    assert figures(requant_model([2.0 ** -8, 2.0 ** -6], pe=2))["lut"] > fig["lut"]
    assert figures(requant_model([2.0 ** -8] * 8, pe=2))["lut"] > fig["lut"]
