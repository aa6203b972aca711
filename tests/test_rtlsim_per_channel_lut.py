"""PerChannelLUT_rtl: selection by SpecializeLayers, generated files, and RTL simulation (Icarus / Verilator)
bit-exact against the layer's Python execution, with random ready/valid stalls and the expected cycle counts."""

import json

import numpy as np
import pytest
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the layer and its backends)
from psa_finn.custom_ops.domain import RTL_DOMAIN
from psa_finn.custom_ops.fpgadataflow.rtl.per_channel_lut_verilog import PIPELINE_LATENCY, rom_file_name
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import simulate_axis_stream, simulator_available
from hls_cppsim import random_lut_input
from psa_finn.hardware_checks.lut_layer_models import DEFAULT_FPGA_PART, make_lut_layer_model
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy

HAS_ICARUS = simulator_available("iverilog")
HAS_VERILATOR = simulator_available("verilator")
needs_simulator = pytest.mark.skipif(not (HAS_ICARUS or HAS_VERILATOR),
                                     reason="no RTL simulator: install Debian's iverilog or verilator "
                                            "(scripts/setup.sh does so as root)")
CHANNELS = 8


def rtl_model(tmp_path, mode, pe, input_dt="INT8", output_dt="INT8", num_vectors=(2, 3), ram_style="auto", seed=0):
    """Specialised RTL model with its HDL generated into tmp_path; returns (model, layer, python reference model)."""
    reference = make_lut_layer_model(CHANNELS, pe, input_dt, output_dt, mode, num_vectors, ram_style=ram_style,
                                     seed=seed)
    model = make_lut_layer_model(CHANNELS, pe, input_dt, output_dt, mode, num_vectors, impl_style="rtl",
                                 ram_style=ram_style, seed=seed)
    layer = getCustomOp(model.graph.node[0])
    tmp_path.mkdir(parents=True, exist_ok=True)
    layer.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    layer.generate_hdl(model, DEFAULT_FPGA_PART, 5.0)
    return model, layer, reference


def test_specialize_layers_picks_rtl_from_node_attribute_and_from_config(tmp_path):
    by_attribute = make_lut_layer_model(CHANNELS, 2, impl_style="rtl")
    node = by_attribute.graph.node[0]
    assert (node.op_type, node.domain) == ("PerChannelLUT_rtl", RTL_DOMAIN)

    # what finn-plus's step_specialize_layers does with specialize_layers_config_file
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.general import ApplyConfig
    from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive

    config = tmp_path / "specialize_layers.json"
    for style in ("rtl", "hls"):
        config.write_text(json.dumps({"Defaults": {}, "PerChannelLUT_0": {"preferred_impl_style": style}}))
        model = make_lut_layer_model(CHANNELS, 2).transform(GiveUniqueNodeNamesRecursive())
        model = model.transform(ApplyConfig(str(config))).transform(SpecializeLayers(DEFAULT_FPGA_PART))
        assert model.graph.node[0].op_type == f"PerChannelLUT_{style}"


@pytest.mark.parametrize("mode", ["full", "lerp64"])
def test_generated_memory_files_hold_the_lane_tables(tmp_path, mode):
    model, layer, _ = rtl_model(tmp_path, mode, pe=4, output_dt="INT6")
    top = layer.get_nodeattr("gen_top_module")
    banks = layer.get_lane_tables(model.get_initializer(model.graph.node[0].input[1]))
    names = ("table",) if mode == "full" else ("even", "odd")
    assert sorted(layer.get_all_meminit_filenames()) == sorted(rom_file_name(top, n, p) for n in names
                                                               for p in range(4))
    for name, bank in zip(names, banks):
        for lane in range(4):
            words = [int(w, 16) for w in (tmp_path / rom_file_name(top, name, lane)).read_text().split()]
            signed = [w - 64 if w >= 32 else w for w in words]  # INT6 two's complement
            assert signed == bank[lane].reshape(-1).tolist()
    verilog = (tmp_path / f"{top}.v").read_text()
    for port in ("ap_clk", "ap_rst_n", "in0_V_TDATA", "in0_V_TVALID", "in0_V_TREADY", "out0_V_TDATA",
                 "out0_V_TVALID", "out0_V_TREADY"):
        assert f" {port}" in verilog
    assert layer.get_rtl_file_list(abspath=True) == [f"{tmp_path}/{top}.v"]


@pytest.mark.parametrize("ram_style,attribute", [("block", '(* ram_style = "block" *)'),
                                                 ("distributed", '(* ram_style = "distributed" *)')])
def test_ram_style_reaches_the_verilog(tmp_path, ram_style, attribute):
    _, layer, _ = rtl_model(tmp_path, "full", pe=2, ram_style=ram_style)
    assert attribute in (tmp_path / f"{layer.get_nodeattr('gen_top_module')}.v").read_text()


def test_ultra_ram_style_on_ultrascale_plus_is_refused(tmp_path):
    model = make_lut_layer_model(CHANNELS, 2, impl_style="rtl", ram_style="ultra")
    layer = getCustomOp(model.graph.node[0])
    layer.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    with pytest.raises(ValueError, match="ram_style=ultra needs a Versal part"):
        layer.generate_hdl(model, DEFAULT_FPGA_PART, 5.0)


def test_rtlsim_without_generated_code_names_the_node_and_the_fix():
    model = make_lut_layer_model(CHANNELS, 2, impl_style="rtl")
    getCustomOp(model.graph.node[0]).set_nodeattr("exec_mode", "rtlsim")
    with pytest.raises(ValueError, match=r"PerChannelLUT_rtl_0: no generated Verilog.*PrepareIP"):
        execute_onnx(model, {"x": random_lut_input(model)})


@needs_simulator
@pytest.mark.parametrize("mode", ["full", "lerp64"])
@pytest.mark.parametrize("pe", [1, 2, 4, CHANNELS])
@pytest.mark.parametrize("input_dt,output_dt", [("INT8", "INT8"), ("UINT8", "UINT7"), ("INT4", "UINT8")])
def test_rtlsim_matches_python_execution_and_takes_the_expected_cycles(tmp_path, mode, pe, input_dt, output_dt):
    model, layer, reference = rtl_model(tmp_path, mode, pe, input_dt, output_dt)
    x = random_lut_input(model)
    expected = execute_onnx(reference, {"x": x})["y"]
    layer.set_nodeattr("exec_mode", "rtlsim")
    produced = execute_onnx(model, {"x": x})["y"]
    np.testing.assert_array_equal(produced, expected)
    cycles = getCustomOp(model.graph.node[0]).get_nodeattr("cycles_rtlsim")
    assert cycles == layer.get_exp_cycles() + PIPELINE_LATENCY[mode] == 6 * CHANNELS // pe + PIPELINE_LATENCY[mode]


@needs_simulator
@pytest.mark.parametrize("mode", ["full", "lerp64"])
@pytest.mark.parametrize("input_dt,output_dt", [("UINT3", "INT8"), ("INT3", "INT4"), ("UINT9", "INT9")])
def test_rtlsim_narrow_and_wide_types(tmp_path, mode, input_dt, output_dt):
    model, layer, reference = rtl_model(tmp_path, mode, 2, input_dt, output_dt)
    x = random_lut_input(model)
    layer.set_nodeattr("exec_mode", "rtlsim")
    np.testing.assert_array_equal(execute_onnx(model, {"x": x})["y"], execute_onnx(reference, {"x": x})["y"])


@needs_simulator
def test_prepare_ip_generates_the_rtl_and_finn_analyses_see_the_layer(tmp_path, monkeypatch):
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.prepare_ip import PrepareIP

    from psa_finn.build_configs.finn_shims import boot_finn

    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "finn_tmp"))
    boot_finn(tmp_path)
    reference = make_lut_layer_model(CHANNELS, 4, mode="lerp64")
    model = make_lut_layer_model(CHANNELS, 4, mode="lerp64", impl_style="rtl")
    model = model.transform(PrepareIP(DEFAULT_FPGA_PART, 5.0))
    layer = getCustomOp(model.graph.node[0])
    assert model.analysis(exp_cycles_per_layer) == {"PerChannelLUT_rtl_0": 6 * CHANNELS // 4}
    estimates = res_estimation(model, DEFAULT_FPGA_PART)
    assert estimates["PerChannelLUT_rtl_0"] == layer.node_res_estimation(DEFAULT_FPGA_PART)
    layer.set_nodeattr("exec_mode", "rtlsim")
    x = random_lut_input(model)
    np.testing.assert_array_equal(execute_onnx(model, {"x": x})["y"], execute_onnx(reference, {"x": x})["y"])


def _stream(layer, model, x, tmp_path, **sim):
    """Drive the generated module directly (for stalls); returns (output array, StreamSimResult)."""
    geometry = layer.get_geometry()
    words = npy_to_rtlsim_input(x.reshape(layer.get_folded_input_shape(0)), layer.get_input_datatype(0),
                                geometry.in_stream_bits)
    result = simulate_axis_stream(layer.get_rtl_file_list(abspath=True), layer.get_nodeattr("gen_top_module"),
                                  geometry.in_stream_bits, geometry.out_stream_bits, words, len(words),
                                  tmp_path / "sim", support_files=layer.get_all_meminit_filenames(abspath=True),
                                  **sim)
    odt = layer.get_output_datatype()
    y = rtlsim_output_to_npy(result.out_words, None, odt, layer.get_folded_output_shape(0),
                             geometry.out_stream_bits, odt.bitwidth())
    return np.asarray(y).reshape(x.shape), result


@needs_simulator
@pytest.mark.parametrize("mode", ["full", "lerp64"])
@pytest.mark.parametrize("valid_stall,ready_stall", [(0.5, 0.0), (0.0, 0.5), (0.3, 0.6)])
def test_random_stalls_keep_the_output_bit_exact(tmp_path, mode, valid_stall, ready_stall):
    model, layer, reference = rtl_model(tmp_path, mode, pe=2, input_dt="INT8", output_dt="INT8",
                                        num_vectors=(4, 5))
    x = random_lut_input(model, seed=7)
    expected = execute_onnx(reference, {"x": x})["y"]
    steady, steady_run = _stream(layer, model, x, tmp_path)
    stalled, stalled_run = _stream(layer, model, x, tmp_path, valid_stall=valid_stall, ready_stall=ready_stall,
                                   seed=11)
    np.testing.assert_array_equal(steady, expected)
    np.testing.assert_array_equal(stalled, expected)
    words = layer.get_exp_cycles()
    assert steady_run.cycles == words + PIPELINE_LATENCY[mode]
    # each stall costs at least one cycle; with p = 0.5 fewer than 5/8 of the cycles can move a word
    assert stalled_run.cycles > words * 1.5


@needs_simulator
def test_extreme_neighbouring_entries_interpolate_exactly(tmp_path):
    """Table entries alternating between the type's bounds: the largest y1 - y0 the lerp64 datapath sees."""
    for output_dt in ("INT8", "UINT8"):
        model, layer, reference = rtl_model(tmp_path / output_dt, "lerp64", pe=4, output_dt=output_dt)
        table = model.get_initializer("table")
        odt = layer.get_output_datatype()
        extreme = np.where(np.arange(table.size).reshape(table.shape) % 2 == 0, odt.min(), odt.max())
        for m in (model, reference):
            m.set_initializer("table", extreme.astype(np.float32))
        layer.generate_hdl(model, DEFAULT_FPGA_PART, 5.0)
        x = random_lut_input(model, seed=3)
        layer.set_nodeattr("exec_mode", "rtlsim")
        np.testing.assert_array_equal(execute_onnx(model, {"x": x})["y"], execute_onnx(reference, {"x": x})["y"])


@needs_simulator
def test_cycles_per_vector(tmp_path):
    """One more input vector costs exactly NumChannels / PE cycles (one word per cycle, no bubbles)."""
    cycles = {}
    for vectors in (1, 6):
        model, layer, _ = rtl_model(tmp_path / str(vectors), "lerp64", pe=2, num_vectors=(vectors,))
        _, run = _stream(layer, model, random_lut_input(model), tmp_path / str(vectors))
        cycles[vectors] = run.cycles
    assert cycles[6] - cycles[1] == 5 * CHANNELS // 2


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VERILATOR, reason="verilator is not installed (Debian's verilator; scripts/setup.sh)")
@pytest.mark.parametrize("mode", ["full", "lerp64"])
def test_verilator_run_with_stalls_matches_python_execution(tmp_path, mode):
    model, layer, reference = rtl_model(tmp_path, mode, pe=4, input_dt="INT8", output_dt="INT8")
    x = random_lut_input(model, seed=5)
    produced, run = _stream(layer, model, x, tmp_path, simulator="verilator", valid_stall=0.3, ready_stall=0.3,
                            seed=2)
    assert run.simulator == "verilator"
    np.testing.assert_array_equal(produced, execute_onnx(reference, {"x": x})["y"])
