"""What a new user's first hour hit (scripts/fault_trial_newuser.sh, docs/faults.md "A new user's trial"): each case
asserts one line naming the argument, file, node, key or flag and the fix, and the exit code of its kind."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from psa_finn.nn import QuantBSpline, QuantKANLinear, QuantLerpPSA
from psa_finn.transforms.model_file import read_model_file
from test_faults import ESTIMATES, TINY, UNROLLED, config_with, expect_error, run_cli, snapshot


@pytest.mark.parametrize("layer", [lambda b: QuantLerpPSA(16, bit_width=b), lambda b: QuantBSpline(16, bit_width=b),
                                   lambda b: QuantKANLinear(4, 2, bit_width=b)])
@pytest.mark.parametrize("bits", [1, 17])
def test_layer_bit_width_outside_2_to_8_is_refused_at_construction(layer, bits):
    """Before: bit_width=17 exported silently, bit_width=1 failed at export with 'give the layer an input quantizer'
    (Brevitas makes a 1-bit quantizer a BipolarQuant)."""
    with pytest.raises(ValueError, match=rf"bit_width must be from 2 to 8 .*got {bits}; pass e.g. bit_width=8"):
        layer(bits)


def quant_node(name, source, bits=8.0):
    """A qonnx Quant of `source` (scale 1/16, zero point 0, `bits` signed) and its three parameter initializers."""
    params = [helper.make_tensor(f"{name}_{p}", TensorProto.FLOAT, [], [v])
              for p, v in (("scale", 1 / 16), ("zeropt", 0.0), ("bits", bits))]
    node = helper.make_node("Quant", [source, *(t.name for t in params)], [f"{name}_out"], name=name,
                            domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND")
    return node, params


def linear_onnx(path: Path, input_quant: bool, opset: int = 13, input_datatype=None) -> Path:
    """x [1, 8] -> (Quant) -> MatMul with quantized weights [8, 4] -> Quant -> y: a QuantLinear with or without
    the network's input quantizer."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 4], np.linspace(-1, 1, 32, dtype=np.float32))
    w_quant, w_params = quant_node("wq", "w")
    nodes, inits, data = [w_quant], [weight, *w_params], "x"
    if input_quant:
        x_quant, x_params = quant_node("xq", "x")
        nodes, inits, data = nodes + [x_quant], inits + x_params, "xq_out"
    y_quant, y_params = quant_node("yq", "h")
    nodes += [helper.make_node("MatMul", [data, "wq_out"], ["h"], name="MatMul_0"), y_quant]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("yq_out", TensorProto.FLOAT, [1, 4])], inits + y_params)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1)])
    if input_datatype is not None:
        model.graph.quantization_annotation.add(tensor_name="x").quant_parameter_tensor_names.add(
            key="finn_datatype", value=input_datatype)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("command", ["lower", "build"])
def test_a_layer_reading_the_float_input_is_refused_before_the_build(tmp_path, capsys, command):
    """Before: lower exit 0, build ran every step and ended in exit 1 'nodes left off the hardware: MatMul_0'
    without the cause; now exit 2 before any step, naming the node, the input and the fix."""
    model = linear_onnx(tmp_path / "no_input_quant.onnx", input_quant=False)
    out = tmp_path / ("out.onnx" if command == "lower" else "build")
    extra = ["--config", UNROLLED, *ESTIMATES] if command == "build" else []
    expect_error(capsys, 2, command, "--model", model, "--out", out, *extra,
                 names=[model, "MatMul_0", "'x'", "QuantIdentity"])
    assert not out.exists()


def test_an_integer_annotated_input_or_a_quantized_one_is_not_refused(tmp_path):
    """The check is about float inputs only: a quantizer before the layer, or an input typed INT8, reads fine."""
    for name, kwargs in (("quantized", dict(input_quant=True)),
                         ("int8_input", dict(input_quant=False, input_datatype="INT8"))):
        read_model_file(linear_onnx(tmp_path / f"{name}.onnx", **kwargs))


@pytest.mark.parametrize("command", ["lower", "build"])
def test_an_opset_newer_than_onnx_knows_is_refused_before_the_build(tmp_path, capsys, command):
    """Before: lower exit 0; build ran every step, then exit 1 quoting onnxruntime ('ValidateOpsetForDomain')."""
    model = linear_onnx(tmp_path / "opset99.onnx", input_quant=True, opset=99)
    out = tmp_path / ("out.onnx" if command == "lower" else "build")
    extra = ["--config", UNROLLED, *ESTIMATES] if command == "build" else []
    expect_error(capsys, 2, command, "--model", model, "--out", out, *extra,
                 names=[model, "opset 99", f"at most {onnx.defs.onnx_opset_version()}"])
    assert not out.exists()


@pytest.mark.parametrize("flags, names", [(["--grid-size", "1"], ["--grid-size", "at least 2", "got 1"]),
                                          (["--variant", "bspline", "--grid-size", "64"],
                                           ["--grid-size 64", "odd", "B-spline 65"])])
def test_train_grid_size_the_function_cannot_take_names_the_flag(tmp_path, capsys, flags, names):
    """Before: 'grid_size must be at least 2, got 1' / 'BSpline grid_size must be odd', without the flag."""
    out = tmp_path / "run"
    expect_error(capsys, 2, "train", *flags, "--epochs", "1", *TINY, "--out", out, names=names)
    assert not out.exists()


def test_a_misspelt_step_of_ours_gets_the_nearest_name(tmp_path, capsys):
    """Before: '... cannot be resolved (AttributeError); use a finn-plus step name or an importable module.function'
    (the nearest name was looked up among finn-plus's default steps only)."""
    config = config_with(tmp_path, "step_lower_quantized_functions", "step_lower_quantised_functions")
    model = linear_onnx(tmp_path / "linear.onnx", input_quant=True)
    expect_error(capsys, 2, "build", "--model", model, "--config", config, "--out", tmp_path / "build", *ESTIMATES,
                 names=["typo.yaml", "step_lower_quantised_functions", "did you mean 'step_lower_quantized_functions'"])
    assert not (tmp_path / "build").exists()


def test_report_refuses_an_out_holding_files_of_others(tmp_path, capsys):
    """Before: `report BUILD --out OTHER_BUILD` wrote report.md, builds.csv and plots into the other build's folder
    (and removed plots of an earlier report there that no longer apply), exit 0. A report folder is rewritten."""
    from test_reports import layer, write_build

    source = write_build(tmp_path / "cnn", [layer("MVAU_rtl_0", "MVAU_rtl", 64, 100)], fps=1000.0, latency_ns=1e6)
    other = write_build(tmp_path / "mlp", [layer("MVAU_rtl_0", "MVAU_rtl", 32, 50)], fps=2000.0, latency_ns=5e5)
    before = snapshot(other)
    expect_error(capsys, 2, "report", source, "--out", other, names=[other, "summary.json", "--out"])
    assert snapshot(other) == before
    assert run_cli(capsys, "report", source, "--out", tmp_path / "report")[0] == 0
    assert run_cli(capsys, "report", source, other, "--out", tmp_path / "report")[0] == 0


def test_eval_of_a_folder_suggests_a_model_file_it_holds(tmp_path, capsys):
    """Before: `eval --checkpoint BUILD_DIR` suggested BUILD_DIR/model.pt, which a build folder does not hold."""
    from test_faults import fake_build

    build_dir = fake_build(tmp_path / "build")
    message = expect_error(capsys, 2, "eval", "--checkpoint", build_dir, "--device", "cpu", names=[build_dir])
    assert "model.pt" not in str(message).replace("a training run's model.pt", "") and "holds no .pt" in message
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    expect_error(capsys, 2, "eval", "--checkpoint", tmp_path / "run", "--device", "cpu",
                 names=[f"e.g. {tmp_path / 'run' / 'best.pt'}"])
