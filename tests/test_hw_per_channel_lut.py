"""The PerChannelLUT hardware layer: shapes, folding, estimates, Python execution, registration, specialisation and
HLS code generation (custom_ops/fpgadataflow, transforms/convert_to_hw_per_channel_lut.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

import psa_finn.custom_ops  # noqa: F401
import psa_finn.custom_ops.fpgadataflow  # noqa: F401
from psa_finn.custom_ops.domain import HLS_DOMAIN, HW_DOMAIN
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import bram18_count, bram18_read_mux_luts, lutrom_luts
from psa_finn.custom_ops.lut_tables import table_entries
from psa_finn.transforms.convert_to_hw_per_channel_lut import InferPerChannelLUTLayer
from psa_finn.transforms.fold_channel_layers import FoldChannelLayers

ROOT = Path(__file__).resolve().parents[1]
PART = "xcu50-fsvh2104-2-e"


def lowered_model(mode, channels=8, tokens=3, idt="INT8", odt="INT8", table=None, seed=0):
    """One lowered custom_ops.PerChannelLUT node on x [1, tokens, channels] with a random (or given) table."""
    rng = np.random.default_rng(seed)
    out_type = DataType[odt]
    if table is None:
        entries = table_entries(mode, DataType[idt].bitwidth())
        table = rng.integers(out_type.min(), out_type.max() + 1, size=(channels, entries))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, channels])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, channels])
    node = helper.make_node("PerChannelLUT", ["x", "table"], ["y"], domain="psa_finn.custom_ops", name="lut0",
                            inputDataType=idt, outputDataType=odt, mode=mode)
    model = ModelWrapper(qonnx_make_model(helper.make_graph([node], "lut", [x], [y])))
    model.set_initializer("table", np.asarray(table, dtype=np.float32))
    model.set_tensor_datatype("x", DataType[idt])
    return model


def hw_layer(mode="lerp64", channels=96, pe=1, vectors=(1, 64), idt="INT8", odt="INT8", ram_style="auto"):
    """A PerChannelLUT hardware node instance (no graph needed for shapes and estimates)."""
    node = helper.make_node("PerChannelLUT", ["x", "table"], ["y"], domain=HW_DOMAIN,
                            backend="fpgadataflow", name="lut_hw", NumChannels=channels, PE=pe,
                            inputDataType=idt, outputDataType=odt, numInputVectors=list(vectors), mode=mode,
                            ram_style=ram_style)
    return getCustomOp(node)


def all_codes(idt, channels, tokens):
    """Input [1, tokens, channels] covering every code of idt on every channel (tokens >= 2^b)."""
    dt = DataType[idt]
    codes = np.arange(dt.min(), dt.max() + 1)
    grid = np.stack([np.roll(np.resize(codes, tokens), c) for c in range(channels)], axis=-1)
    return grid[None].astype(np.float32)


# ---- shapes, folding ----------------------------------------------------------------------------------------------

def test_shapes_widths_and_cycles_follow_the_folding():
    layer = hw_layer(mode="full", channels=8, pe=2, vectors=(1, 3), idt="INT8", odt="UINT4")
    assert layer.get_normal_input_shape() == (1, 3, 8)
    assert layer.get_normal_output_shape() == (1, 3, 8)
    assert layer.get_normal_input_shape(1) == (8, 256)
    assert layer.get_folded_input_shape() == (1, 3, 4, 2)
    assert layer.get_folded_output_shape() == (1, 3, 4, 2)
    assert layer.get_instream_width(0) == 16 and layer.get_instream_width(1) == 0
    assert layer.get_outstream_width() == 8
    assert layer.get_exp_cycles() == 3 * 8 // 2
    assert layer.get_number_output_values() == 12
    assert layer.get_input_datatype(1) == DataType["UINT4"]


def test_pe_that_does_not_divide_the_channels_is_a_clear_error():
    layer = hw_layer(channels=96, pe=5)
    with pytest.raises(ValueError, match=r"lut_hw: PE=5 does not divide NumChannels=96.*\[1, 2, 3, 4, 6, 8"):
        layer.get_folded_input_shape()
    assert any("PE=5" in message for message in layer.verify_node())


def test_lerp64_needs_three_input_bits():
    with pytest.raises(ValueError, match="at least 3 bits"):
        hw_layer(mode="lerp64", idt="INT2").get_entries()


def test_fold_channel_layers_picks_the_smallest_pe_meeting_the_target():
    model = lowered_model("lerp64", channels=96, tokens=64).transform(InferPerChannelLUTLayer())
    layer = getCustomOp(model.graph.node[0])
    # 64 tokens x 96 channels = 6144 cycles at PE=1: meets the paper's 6240-cycle (32,051 FPS at 5 ns) budget
    model = model.transform(FoldChannelLayers(6240))
    assert layer.get_nodeattr("PE") == 1
    # 3000 cycles: PE=2 gives 3072 (too slow), PE=3 gives 2048
    model = model.transform(FoldChannelLayers(3000))
    assert getCustomOp(model.graph.node[0]).get_nodeattr("PE") == 3
    # unreachable target: fully parallel
    model = model.transform(FoldChannelLayers(10))
    assert getCustomOp(model.graph.node[0]).get_nodeattr("PE") == 96
    with pytest.raises(ValueError, match="positive"):
        FoldChannelLayers(0)


# ---- estimates ----------------------------------------------------------------------------------------------------

def test_memory_primitive_counts():
    # 24576 x 8: 16Kx1 -> 2*8=16, 8Kx2 -> 3*4=12, 4Kx4 -> 6*2=12, 2Kx9 -> 12*1=12, 1Kx18 -> 24, 512x36 -> 48
    assert bram18_count(24576, 8) == 12
    assert bram18_count(33, 8) == 1
    # 4096 x 40: one ratio needs 10 (4K x 4 x 10 or 2K x 9 x 2 x 5); four columns of 2K x 9 (2 deep) and one
    # 4K x 4 need 9, as yosys maps a KANLinear lane ROM of 4 x 10-bit entries; the 2K x 9 columns need a 2:1 mux
    assert bram18_count(4096, 40) == 9
    assert bram18_read_mux_luts(4096, 40) == 36
    assert lutrom_luts(32, 8) == 4  # LUT6_2: 32 x 2 per LUT
    assert lutrom_luts(33, 8) == 8  # 64 x 1 per LUT
    assert lutrom_luts(256, 8) == 32  # 4 LUT6 per bit + free MUXF7/F8
    assert lutrom_luts(1024, 8) == 8 * (16 + 1)  # 4 groups of 256 need one 4:1 mux LUT per bit
    assert bram18_read_mux_luts(6144, 8) == 8  # 3 x (2K x 9) stacked: a 3:1 mux per bit (yosys: 8 LUT5 per lane)
    assert bram18_read_mux_luts(3072, 8) == 0  # 2 x (4K x 4) side by side: no mux
    assert bram18_read_mux_luts(24576, 8) == 8  # 12 RAMB18 either way; 8K x 2 stacks 3 deep (2K x 9 would stack 12)


def test_estimates_full_table_folded_to_one_lane():
    layer = hw_layer(mode="full", channels=96, pe=1)
    # one bank 96 x 256 = 24576 deep, 8 wide -> block RAM (auto), 12 RAMB18 (see above)
    assert layer.get_lane_banks() == [(24576, 8)]
    assert layer.get_resolved_ram_style() == "block"
    assert layer.bram_estimation(PART) == 12
    # LUTs: the 7-bit fold counter (power-of-two depth per channel: address {t, k} is free) + the read mux over
    # 3 RAMB18 of 8K x 2 stacked in depth: one 3:1 mux LUT per output bit
    assert layer.lut_estimation(PART) == 7 + 8
    assert layer.dsp_estimation(PART) == 0 and layer.uram_estimation(PART) == 0
    assert layer.get_exp_cycles() == 6144
    assert layer.bram_efficiency_estimation(PART) == pytest.approx(24576 * 8 / (12 * 18432))


def test_estimates_lerp64_one_lane_in_block_ram():
    layer = hw_layer(mode="lerp64", channels=96, pe=1)
    # banks: even 96 x 33 = 3168, odd 96 x 32 = 3072 entries of 8 bits; 2 RAMB18 each (2Kx9 or 4Kx4)
    assert layer.get_lane_banks() == [(3168, 8), (3072, 8)]
    assert layer.bram_estimation(PART) == 4
    # 7 (fold counter) + 49 (lerp: swap 8 + sub 9 + mul 10 + round 9 + add 8 + even address 5)
    # + 12 (even-bank address adder t*33 + i over a 3168-deep bank)
    assert layer.lut_estimation(PART) == 7 + 49 + 12
    assert layer.bram_efficiency_estimation(PART) == pytest.approx((3168 + 3072) * 8 / (4 * 18432))


def test_estimates_lerp64_fully_parallel_in_luts():
    layer = hw_layer(mode="lerp64", channels=96, pe=96)
    # per lane: 33 x 8 ROM = 8 LUT6, 32 x 8 ROM = 4 LUT6_2, lerp datapath 49; no counter, no address adders
    assert layer.get_resolved_ram_style() == "distributed"
    assert layer.lut_estimation(PART) == 96 * (8 + 4 + 49)
    assert layer.bram_estimation(PART) == 0 and layer.get_exp_cycles() == 64


def test_estimates_follow_an_explicit_ram_style():
    assert hw_layer(mode="full", ram_style="ultra").uram_estimation(PART) == 6  # 24576 / 4096 deep, 8 <= 72 wide
    distributed = hw_layer(mode="full", ram_style="distributed")
    # 24576 deep: 384 LUT6 per bit + ceil(95 / 3) = 32 mux LUTs per bit, 8 bits, + 7-bit counter
    assert distributed.lut_estimation(PART) == 8 * (384 + 32) + 7
    assert distributed.bram_estimation(PART) == 0
    assert hw_layer(mode="lerp64", pe=96, ram_style="block").bram_estimation(PART) == 96 * 2


def test_op_and_param_counts():
    assert hw_layer(mode="lerp64").get_op_and_param_counts() == {
        "op_table_lookup_8b": 64 * 96, "op_lerp_8b": 64 * 96, "param_table_8b": 96 * 65}
    assert hw_layer(mode="full", idt="UINT4", odt="INT8").get_op_and_param_counts() == {
        "op_table_lookup_4b": 64 * 96, "param_table_8b": 96 * 16}


# ---- Python execution ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,idt,odt", [("full", "INT8", "INT8"), ("lerp64", "INT8", "INT8"),
                                          ("full", "UINT4", "INT3"), ("lerp64", "UINT6", "UINT8")])
def test_python_execution_equals_the_lowered_op_for_every_code_and_pe(mode, idt, odt):
    channels = 12
    tokens = 2 ** DataType[idt].bitwidth()
    lowered = lowered_model(mode, channels=channels, tokens=tokens, idt=idt, odt=odt, seed=3)
    x = all_codes(idt, channels, tokens)
    expected = execute_onnx(lowered, {"x": x})["y"]
    model = lowered.transform(InferPerChannelLUTLayer())
    node = model.graph.node[0]
    assert (node.domain, node.op_type) == (HW_DOMAIN, "PerChannelLUT")
    assert model.get_tensor_datatype("y") == DataType[odt]
    for pe in (1, 3, 12):
        getCustomOp(node).set_nodeattr("PE", pe)
        assert np.array_equal(execute_onnx(model, {"x": x})["y"], expected)


def test_lerp64_rounds_half_up_on_hand_computed_values():
    # INT5 input -> 2^3 + 1 = 9 entries; channel 0 rises by 8 per segment, channel 1 alternates 0, 2, 0, -2, ...
    table = np.array([[-32, -24, -16, -8, 0, 8, 16, 24, 31], [0, 2, 0, -2, 0, 2, 0, -2, 0]])
    model = lowered_model("lerp64", channels=2, tokens=4, idt="INT5", odt="INT6", table=table)
    model = model.transform(InferPerChannelLUTLayer())
    # codes -16, -15, -13, -11: k = 0, 1, 3, 5
    x = np.array([[[-16, -16], [-15, -15], [-13, -13], [-11, -11]]], dtype=np.float32)
    y = execute_onnx(model, {"x": x})["y"]
    # ch0: k=0 -> -32; k=1 -> -32 + (8+2)>>2 = -30; k=3 -> -32 + (24+2)>>2 = -26; k=5 (seg 1, f 1) -> -24 + 2 = -22
    # ch1: k=1 -> 0 + (2+2)>>2 = 1 (+0.5 up); k=3 -> 0 + (6+2)>>2 = 2; k=5 (seg 1: 2 -> 0) -> 2 + (-2+2)>>2 = 2
    #      (-0.5 rounds up to 0)
    assert y[0, :, 0].tolist() == [-32, -30, -26, -22]
    assert y[0, :, 1].tolist() == [0, 1, 2, 2]


def test_python_execution_rejects_codes_outside_the_input_type():
    model = lowered_model("full", channels=2, tokens=1, idt="UINT4").transform(InferPerChannelLUTLayer())
    model.set_tensor_datatype("x", DataType["FLOAT32"])  # so that execute_onnx passes the bad code through
    with pytest.raises(ValueError, match="lut0: input must be integer codes of UINT4"):
        execute_onnx(model, {"x": np.array([[[3, 16]]], dtype=np.float32)})


def test_conversion_errors_name_the_node():
    model = lowered_model("full", channels=4)
    model.graph.initializer.pop()
    model.graph.input.append(helper.make_tensor_value_info("table", TensorProto.FLOAT, [4, 256]))
    with pytest.raises(ValueError, match="lut0: the table input table is not an initializer"):
        model.transform(InferPerChannelLUTLayer())
    bad = lowered_model("full", channels=4, table=np.zeros((4, 255)))
    with pytest.raises(ValueError, match=r"lut0: table has shape \(4, 255\), expected \(4, 256\)"):
        bad.transform(InferPerChannelLUTLayer())
    mislabelled = lowered_model("full", channels=4)
    mislabelled.set_tensor_datatype("x", DataType["INT4"])
    with pytest.raises(ValueError, match="lut0: input x is annotated INT4 but the table was built for .*INT8"):
        mislabelled.transform(InferPerChannelLUTLayer())
    out_of_range = lowered_model("full", channels=1, odt="UINT2", table=np.full((1, 256), 4))
    with pytest.raises(ValueError, match="integers of UINT2"):
        out_of_range.transform(InferPerChannelLUTLayer())


# ---- registration, specialisation, code generation ---------------------------------------------------------------

def test_registration_in_a_fresh_process():
    script = f"""
import psa_finn.custom_ops.fpgadataflow
from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from finn.custom_op.fpgadataflow import custom_op as hw
from finn.custom_op.fpgadataflow.hls import custom_op as hls
from finn.util.basic import getHWCustomOp
assert hw["PerChannelLUT"].__module__ == "psa_finn.custom_ops.fpgadataflow.per_channel_lut"
assert hls["PerChannelLUT_hls"].__module__ == "psa_finn.custom_ops.fpgadataflow.hls.per_channel_lut_hls"
for domain, op in [("{HW_DOMAIN}", "PerChannelLUT"), ("{HLS_DOMAIN}", "PerChannelLUT_hls"),
                   ("psa_finn.custom_ops.fpgadataflow", "PerChannelLUT"),
                   ("psa_finn.custom_ops.fpgadataflow.hls", "PerChannelLUT_hls")]:
    node = helper.make_node(op, ["x", "t"], ["y"], domain=domain, NumChannels=4, PE=2, inputDataType="INT8",
                            outputDataType="INT8", numInputVectors=[1, 3], mode="lerp64")
    print(domain, type(getHWCustomOp(node)).__name__, getCustomOp(node).get_exp_cycles())
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("finn.", "psa_finn."))]
    assert lines == [
        f"{HW_DOMAIN} PerChannelLUT 6",
        f"{HLS_DOMAIN} PerChannelLUT_hls 6",
        "psa_finn.custom_ops.fpgadataflow PerChannelLUT 6",
        "psa_finn.custom_ops.fpgadataflow.hls PerChannelLUT_hls 6",
    ]


@pytest.fixture
def finn_build_dir(tmp_path, monkeypatch):
    """finn-plus settings and FINN_BUILD_DIR under tmp_path (the build engineer's Vivado-less boot)."""
    from psa_finn.build_configs.finn_shims import boot_finn

    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "finn_tmp"))
    return boot_finn(tmp_path)


def specialised_hls(mode, channels=8, pe=2, ram_style="auto"):
    """Lowered -> HW layer -> SpecializeLayers with preferred_impl_style=hls; returns (lowered, specialised)."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    lowered = lowered_model(mode, channels=channels, tokens=4)
    model = lowered.transform(InferPerChannelLUTLayer())
    layer = getCustomOp(model.graph.node[0])
    layer.set_nodeattr("PE", pe)
    layer.set_nodeattr("preferred_impl_style", "hls")
    layer.set_nodeattr("ram_style", ram_style)
    return lowered, model.transform(SpecializeLayers(PART))


def test_specialize_layers_picks_the_hls_backend_and_analyses_see_it(finn_build_dir):
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.op_and_param_counts import op_and_param_counts
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    lowered, model = specialised_hls("lerp64")
    node = model.graph.node[0]
    assert (node.domain, node.op_type) == (HLS_DOMAIN, "PerChannelLUT_hls")
    x = all_codes("INT8", 8, 4)
    assert np.array_equal(execute_onnx(model, {"x": x})["y"], execute_onnx(lowered, {"x": x})["y"])
    layer = getCustomOp(node)
    assert model.analysis(exp_cycles_per_layer) == {node.name: 4 * 8 // 2}
    assert model.analysis(lambda m: res_estimation(m, PART))[node.name] == layer.node_res_estimation(PART)
    assert model.analysis(op_and_param_counts)[node.name]["param_table_8b"] == 8 * 65


@pytest.mark.parametrize("mode,arrays", [("full", ["lut_table[2][4][256]"]),
                                         ("lerp64", ["lut_even[2][4][33]", "lut_odd[2][4][32]"])])
def test_hls_code_generation_writes_kernel_tables_and_tcl(finn_build_dir, mode, arrays):
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP

    _, model = specialised_hls(mode, ram_style="block")
    model = model.transform(PrepareIP(PART, 5))
    layer = getCustomOp(model.graph.node[0])
    name = model.graph.node[0].name
    code_dir = Path(layer.get_nodeattr("code_gen_dir_ipgen"))
    assert code_dir.parent == finn_build_dir
    assert sorted(p.name for p in code_dir.iterdir()) == sorted(
        [f"top_{name}.cpp", f"hls_syn_{name}.tcl", "lut_table.h", "per_channel_lut.hpp"])
    top = (code_dir / f"top_{name}.cpp").read_text()
    assert f"psa_finn::per_channel_lut_{mode}<TMEM, PE, ENTRIES, TI, TO>" in top
    assert f"void {name}(hls::stream<ap_uint<16>> &in0_V, hls::stream<ap_uint<16>> &out0_V)" in top
    assert "impl=bram" in top and "ap_ctrl_none" in top
    tables = (code_dir / "lut_table.h").read_text()
    for array in arrays:
        assert f"static const ap_int<8> {array}" in tables
    assert "finn-hlslib" not in (code_dir / "per_channel_lut.hpp").read_text()
    tcl = (code_dir / f"hls_syn_{name}.tcl").read_text()
    assert f'set config_toplevelfxn "{name}"' in tcl and f'set config_proj_part "{PART}"' in tcl


def test_lut_table_header_holds_the_lane_layout(finn_build_dir, tmp_path):
    lowered, model = specialised_hls("full", channels=4, pe=2)
    layer = getCustomOp(model.graph.node[0])
    layer.generate_params(model, tmp_path)
    table = lowered.get_initializer("table")
    text = (tmp_path / "lut_table.h").read_text()
    body = text[text.index("{"):text.rindex("}") + 1]
    values = np.array([int(v) for v in body.replace("{", " ").replace("}", " ").replace(",", " ").split()])
    # [lane p][fold t][entry]: lane 0 holds channels 0, 2; lane 1 holds channels 1, 3
    assert np.array_equal(values.reshape(2, 2, 256), table[[0, 2, 1, 3]].reshape(2, 2, 256))


def test_uram_tables_need_a_versal_part(finn_build_dir):
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP

    _, model = specialised_hls("full", ram_style="ultra")
    with pytest.raises(ValueError, match="ram_style=ultra needs a Versal part"):
        model.transform(PrepareIP(PART, 5))
