"""The KANLinear HW layer: Python execution against the KANLUT op, the lane table layout and the resource model by
hand, the folding for a target, the HLS code's C++ simulation (g++, ap_types headers) and the RTL's simulation
(Icarus / Verilator, with stalls) bit-exact, and yosys synthesis of the RTL against the estimate."""

import numpy as np
import pytest
from qonnx.core.datatype import DataType
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the layer and its backends)
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
from hls_cppsim import cppsim_available, random_lut_input, run_hls_cppsim

from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import simulate_axis_stream, simulator_available
from psa_finn.custom_ops.fpgadataflow.rtl.kan_linear_verilog import PIPELINE_LATENCY
from psa_finn.custom_ops.kan_lut import kan_lut_numpy
from psa_finn.hardware_checks.kan_layer_models import make_kan_layer_model
from psa_finn.hardware_checks.lut_layer_models import DEFAULT_FPGA_PART
from psa_finn.hardware_checks.synth_check import synth_check_layer
from psa_finn.hardware_checks.yosys_synth import yosys_available
from psa_finn.transforms.convert_to_hw_kan_linear import FoldKANLinear

FOLDS = [(1, 1), (2, 3), (6, 1), (3, 6), (6, 6)]


@pytest.mark.parametrize("simd,pe", FOLDS)
@pytest.mark.parametrize("input_dt", ["INT4", "UINT3"])
def test_python_execution_equals_the_kanlut_op(simd, pe, input_dt):
    model = make_kan_layer_model(6, 6, simd, pe, input_dt=input_dt, num_vectors=(3, 2))
    x = random_lut_input(model, seed=simd * pe)
    expected = kan_lut_numpy(x.astype(np.int64), model.get_initializer("tables"), DataType[input_dt])
    assert np.array_equal(execute_onnx(model, {"x": x})["y"], expected)


def test_lane_tables_by_hand():
    model = make_kan_layer_model(6, 6, 2, 3)
    layer = getCustomOp(model.graph.node[0])
    tables = model.get_initializer("tables")
    lanes = layer.get_lane_tables(tables)
    assert lanes.shape == (2, 2 * 3, 16, 3)  # SIMD, NF * SF, 2^b, PE
    # lane s=1, output group nf=1, input word sf=2, code 5, entry p=2: edge (j = 1 * 3 + 2, i = 2 * 2 + 1)
    assert lanes[1, 1 * 3 + 2, 5, 2] == tables[5, 5, 5]
    assert lanes[0, 0, 7, 1] == tables[1, 0, 7]


def test_resource_model_by_hand():
    model = make_kan_layer_model(6, 6, 2, 3, input_dt="INT4", table_dt="INT6", num_vectors=(2,))
    layer = getCustomOp(model.graph.node[0])
    acc_bits = layer.get_output_datatype().bitwidth()
    assert layer.get_lane_rom() == (2 * 3 * 16, 3 * 6)
    assert layer.get_exp_cycles() == 2 * 3 * 2
    # LUT ROM 2 x 18 x ceil(96 / 64); per output the flat sum of 2 entries and the accumulator: 2 x A for the
    # accumulator's clear and carry chain + ceil(0.4 x 2 x 6) for the carry-save tree; input buffer and its select
    # (2 + 1) x 2 x 4; counters sf (3 words: 2 bits), nf (2 groups: 1 bit), fold (6: 3 bits); their comparisons
    # with constants: sf = 0 and sf = 2 (1 LUT6 each), nf = 0 and nf = 1 (1 each), fold = 5 (2)
    control = 24 + (2 + 1 + 3) + (1 + 1 + 1 + 1 + 2)
    assert layer.lut_estimation("") == 2 * 18 * 2 + 3 * (2 * acc_bits + 5) + control
    assert layer.bram_estimation("") == 0 and layer.dsp_estimation("") == 0
    layer.set_nodeattr("ram_style", "block")
    assert layer.bram_estimation("") == 2  # one 1K x 18 RAMB18 per input lane
    assert layer.lut_estimation("") == 3 * (2 * acc_bits + 5) + control


def test_folding_meets_the_target_with_the_least_parallelism():
    model = make_kan_layer_model(64, 16, 1, 1, num_vectors=(1,))
    layer = getCustomOp(model.graph.node[0])
    model = model.transform(FoldKANLinear(1024))
    assert (layer.get_nodeattr("SIMD"), layer.get_nodeattr("PE")) == (1, 1)
    model = model.transform(FoldKANLinear(300))
    layer = getCustomOp(model.graph.node[0])
    assert layer.get_nodeattr("SIMD") * layer.get_nodeattr("PE") == 4 and layer.get_exp_cycles() <= 300
    model = model.transform(FoldKANLinear(1))
    layer = getCustomOp(model.graph.node[0])
    assert (layer.get_nodeattr("SIMD"), layer.get_nodeattr("PE")) == (64, 16)


def test_bad_folding_is_named():
    model = make_kan_layer_model(6, 6, 4, 1)
    with pytest.raises(ValueError, match=r"SIMD=4 does not divide MW=6; choose SIMD from \[1, 2, 3, 6\]"):
        execute_onnx(model, {"x": random_lut_input(make_kan_layer_model(6, 6, 1, 1))})


@pytest.fixture
def finn_build_dir(tmp_path, monkeypatch):
    """finn-plus settings and FINN_BUILD_DIR under tmp_path (HLS code generation reads the settings)."""
    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "finn_tmp"))


@pytest.mark.skipif(not cppsim_available(), reason="C++ simulation needs g++ and the hls4ml==1.3.0 ap_types headers")
@pytest.mark.parametrize("simd,pe,input_dt", [
    (2, 3, "INT4"), (1, 1, "UINT3"),
    pytest.param(6, 6, "INT4", marks=pytest.mark.slow), pytest.param(3, 2, "UINT3", marks=pytest.mark.slow)])
def test_hls_cppsim_equals_python(tmp_path, finn_build_dir, simd, pe, input_dt):
    model = make_kan_layer_model(6, 6, simd, pe, input_dt=input_dt, impl_style="hls", num_vectors=(3,))
    assert model.graph.node[0].op_type == "KANLinear_hls"
    x = random_lut_input(model, seed=pe)
    produced = run_hls_cppsim(getCustomOp(model.graph.node[0]), model, x, tmp_path / "cppsim")
    expected = kan_lut_numpy(x.astype(np.int64), model.get_initializer("tables"), DataType[input_dt])
    assert np.array_equal(produced, expected)


needs_simulator = pytest.mark.skipif(not (simulator_available("iverilog") or simulator_available("verilator")),
                                     reason="no RTL simulator: install Debian's iverilog or verilator")


@needs_simulator
@pytest.mark.parametrize("simd,pe,input_dt", [
    (2, 3, "UINT3"), (1, 1, "INT4"),
    pytest.param(6, 6, "INT4", marks=pytest.mark.slow), pytest.param(3, 6, "UINT3", marks=pytest.mark.slow)])
def test_rtlsim_equals_python_with_the_expected_cycles(tmp_path, simd, pe, input_dt):
    model = make_kan_layer_model(6, 6, simd, pe, input_dt=input_dt, impl_style="rtl", num_vectors=(3,))
    layer = getCustomOp(model.graph.node[0])
    assert model.graph.node[0].op_type == "KANLinear_rtl"
    layer.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    layer.generate_hdl(model, DEFAULT_FPGA_PART, 5.0)
    layer.set_nodeattr("exec_mode", "rtlsim")
    x = random_lut_input(model, seed=simd + pe)
    expected = kan_lut_numpy(x.astype(np.int64), model.get_initializer("tables"), DataType[input_dt])
    assert np.array_equal(execute_onnx(model, {"x": x})["y"], expected)
    assert layer.get_nodeattr("cycles_rtlsim") == layer.get_exp_cycles() + PIPELINE_LATENCY


@needs_simulator
def test_rtl_stalls_keep_the_stream_exact(tmp_path):
    model = make_kan_layer_model(6, 4, 2, 2, impl_style="rtl", num_vectors=(5,))
    layer = getCustomOp(model.graph.node[0])
    layer.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    layer.generate_hdl(model, DEFAULT_FPGA_PART, 5.0)
    x = random_lut_input(model, seed=3)
    geometry = layer.get_geometry()
    words = npy_to_rtlsim_input(x.reshape(layer.get_folded_input_shape(0)), layer.get_input_datatype(0),
                                geometry.in_stream_bits)
    result = simulate_axis_stream(layer.get_rtl_file_list(abspath=True), layer.get_nodeattr("gen_top_module"),
                                  geometry.in_stream_bits, geometry.out_stream_bits, words,
                                  layer.get_number_output_values(), tmp_path / "stalls",
                                  support_files=layer.get_all_meminit_filenames(abspath=True), valid_stall=0.3,
                                  ready_stall=0.3)
    odt = layer.get_output_datatype()
    y = rtlsim_output_to_npy(result.out_words, None, odt, layer.get_folded_output_shape(0), geometry.out_stream_bits,
                             odt.bitwidth())
    expected = kan_lut_numpy(x.astype(np.int64), model.get_initializer("tables"), DataType["INT4"])
    assert np.array_equal(np.asarray(y).reshape(expected.shape), expected)


@pytest.mark.skipif(not yosys_available(), reason="yosys is not installed")
def test_yosys_synthesises_the_rtl_with_the_estimated_block_rams(tmp_path):
    model = make_kan_layer_model(64, 16, 1, 1, input_dt="INT4", table_dt="INT7", num_vectors=(1,))
    entry = synth_check_layer(model, model.graph.node[0], DEFAULT_FPGA_PART, tmp_path)
    assert entry["attributes"]["resolved_ram_style"] == "block"
    assert entry["bram18"] == entry["estimate"]["bram18"] == 7  # 16384 x 7 bits: 7 RAMB18 of 16K x 1
    assert entry["dsp"] == entry["estimate"]["dsp"] == 0
    assert 0 < entry["lut"] <= 4 * entry["estimate"]["lut"]
