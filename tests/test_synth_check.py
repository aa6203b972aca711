"""build.py synth-check: yosys synth_xilinx figures of the LUT layers' RTL beside their estimates in summary.json."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

import build
from psa_finn.hardware_checks.synth_check import run_synth_check, sweep_table_markdown
from psa_finn.hardware_checks.yosys_synth import categorize_cells, synth_family_for_part, yosys_available
from psa_finn.hardware_checks.lut_layer_models import make_lut_layer_model

needs_yosys = pytest.mark.skipif(not yosys_available(),
                                 reason="yosys is not installed (Debian's yosys; scripts/setup.sh installs it)")


@pytest.mark.parametrize("part,family", [("xcu50-fsvh2104-2-e", "xcup"), ("xczu3eg-sbva484-1-e", "xcup"),
                                         ("xcvu9p-flga2104-2L-e", "xcup"), ("xcku040-ffva1156-2-e", "xcu"),
                                         ("xc7z020clg400-1", "xc7")])
def test_family_from_part(part, family):
    assert synth_family_for_part(part) == family


def test_versal_part_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="Versal"):
        synth_family_for_part("xcvc1902-vsva2197-2MP-e-S")


def test_cell_categories():
    cells = {"LUT6": 10, "LUT2": 3, "INV": 2, "MUXF7": 4, "RAM64M": 2, "SRLC32E": 1, "FDRE": 7, "FDSE": 1,
             "RAMB36E2": 3, "RAMB18E2": 1, "CARRY4": 5, "DSP48E2": 2}
    assert categorize_cells(cells) == {"LUT": 15, "LUTRAM": 9, "FF": 8, "BRAM": 7, "URAM": 0, "DSP": 2, "CARRY": 5}


@needs_yosys
def test_synth_check_merges_figures_into_an_existing_summary(tmp_path):
    # 8 channels over 2 lanes, full INT8 table in block RAM: each lane holds 4 x 256 bytes = one RAMB18 (2K x 9)
    model = make_lut_layer_model(8, 2, mode="full", ram_style="block")
    model.save(str(tmp_path / "hw.onnx"))
    (tmp_path / "summary.json").write_text(json.dumps({"fps": 123.0, "fpga_part": "xcu50-fsvh2104-2-e"}))
    record = run_synth_check(tmp_path / "hw.onnx", tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fps"] == 123.0 and summary["synth_check"] == record
    assert record["family"] == "xcup" and record["tool"].startswith("Yosys")
    (layer,) = record["layers"]
    assert layer["bram18"] == 2 and layer["estimate"]["bram18"] == 2
    assert layer["dsp"] == 0 and layer["lutram"] == 0
    assert layer["cells"]["RAMB18E2"] == 2
    assert (tmp_path / "synth_check" / layer["name"] / f"{layer['name']}.v").is_file()
    assert record["totals"]["yosys"]["bram18"] == 2


@needs_yosys
def test_lowered_model_layers_are_checked_at_pe_1_as_distributed_rom(tmp_path):
    # a lowered custom_ops.PerChannelLUT node: becomes the HW layer with PE=1; 2 channels x 32 entries = 64 words,
    # one LUT6 per output bit in LUTs (ram_style auto keeps banks of <= 256 words in LUTs)
    table = np.random.default_rng(0).integers(-8, 8, size=(2, 32)).astype(np.float32)
    node = helper.make_node("PerChannelLUT", ["x", "table"], ["y"], domain="psa_finn.custom_ops", name="lut",
                            inputDataType="INT5", outputDataType="INT4", mode="full")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("table", table)
    model.save(str(tmp_path / "lowered.onnx"))
    (layer,) = run_synth_check(tmp_path / "lowered.onnx", tmp_path / "out")["layers"]
    assert layer["attributes"]["PE"] == 1 and layer["attributes"]["resolved_ram_style"] == "distributed"
    assert layer["bram18"] == 0 and layer["estimate"]["bram18"] == 0
    assert 4 <= layer["lut"] <= 4 * 4  # 4 output bits x one 64 x 1 LUT6, plus the fold counter's few LUTs


@needs_yosys
def test_cli_prints_each_layer_and_writes_the_summary(tmp_path, capsys):
    make_lut_layer_model(4, 4, mode="lerp64").save(str(tmp_path / "hw.onnx"))
    assert build.main(["synth-check", "--model", str(tmp_path / "hw.onnx"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "synth_xilinx -family xcup" in out and "BRAM18" in out
    assert "synth_check" in json.loads((tmp_path / "o" / "summary.json").read_text())


@needs_yosys
def test_model_without_lut_layers_is_a_clear_error(tmp_path, capsys):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    ModelWrapper(qonnx_make_model(graph)).save(str(tmp_path / "relu.onnx"))
    assert build.main(["synth-check", "--model", str(tmp_path / "relu.onnx"), "--out", str(tmp_path / "o")]) == 2
    assert "has no PerChannelLUT or KANLinear layer" in capsys.readouterr().err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_sweep_table_has_one_row_per_entry():
    entry = {"attributes": {"NumChannels": 96, "PE": 4, "mode": "full", "resolved_ram_style": "block"},
             "estimate": {"lut": 7, "bram18": 12, "dsp": 0}, "lut": 39, "bram18": 12, "lutram": 0, "ff": 8,
             "dsp": 0, "carry": 2}
    table = sweep_table_markdown([entry, entry]).splitlines()
    assert len(table) == 4
    assert table[2] == "| 96 | 4 | full | block | 7 | 39 | 12 | 12 | 0 | 8 | 0/0 | 2 |"
