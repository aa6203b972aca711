"""`python build.py build` on models that cannot map fully to hardware: non-zero exit naming the nodes left off."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(1)


def _tiny_model(path, unsupported_in_middle):
    """in [1,4,8] -> MultiThreshold -> MatMul -> (Sin) -> MultiThreshold -> MatMul (-> Sin) -> out."""
    thresholds = np.arange(-127.5, 128, 1.0, dtype=np.float32)[None]
    acc_thresholds = np.arange(-127.5, 128, 1.0, dtype=np.float32)[None] * 8
    first = [helper.make_node("MultiThreshold", ["x", "t0"], ["q0"], domain="qonnx.custom_op.general",
                              out_dtype="INT8", out_bias=-128.0, name="quant_in"),
             helper.make_node("MatMul", ["q0", "w0"], ["acc0"], name="mm0")]
    second = [helper.make_node("MultiThreshold", ["a1", "t1"], ["q1"], domain="qonnx.custom_op.general",
                               out_dtype="INT8", out_bias=-128.0, name="requant"),
              helper.make_node("MatMul", ["q1", "w1"], ["acc1"], name="mm1")]
    if unsupported_in_middle:
        nodes = first + [helper.make_node("Sin", ["acc0"], ["a1"], name="unmappable_sin")] + second
        nodes[-1].output[0] = "y"
    else:
        nodes = first + [helper.make_node("Identity", ["acc0"], ["a1"], name="keep")] + second
        nodes.append(helper.make_node("Sin", ["acc1"], ["y"], name="unmappable_sin"))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="test"))
    model.set_initializer("t0", thresholds)
    model.set_initializer("t1", acc_thresholds)
    for name in ("w0", "w1"):
        model.set_initializer(name, RNG.integers(-8, 8, size=(8, 8)).astype(np.float32))
        model.set_tensor_datatype(name, DataType["INT8"])
    model.save(str(path))


def _build(model_path, out_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "XILINX_VIVADO")}
    return subprocess.run([sys.executable, "build.py", "build", "--model", str(model_path), "--config",
                           "build_configs/unrolled.yaml", "--out", str(out_dir), "--stop-step",
                           "step_generate_estimate_reports"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_unmappable_node_between_layers_exits_nonzero_naming_it(tmp_path):
    _tiny_model(tmp_path / "middle.onnx", unsupported_in_middle=True)
    result = _build(tmp_path / "middle.onnx", tmp_path / "out")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    # step_tidy_up gives every node FINN's own name (<op_type>_<index>)
    assert "build.py build: error: nodes left off the hardware: Sin_0 (Sin)" in result.stderr
    assert not (tmp_path / "out" / "summary.json").exists()
    assert (tmp_path / "out" / "build_dataflow.log").is_file(), "a failed first build is kept for its log"


@pytest.mark.slow
def test_unmappable_node_at_the_end_is_named_in_summary(tmp_path):
    _tiny_model(tmp_path / "tail.onnx", unsupported_in_middle=False)
    result = _build(tmp_path / "tail.onnx", tmp_path / "out")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "build.py build: error: nodes left off the hardware: Sin_0 (Sin)" in result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["all_nodes_on_hw"] is False
    assert summary["off_hw_nodes"] == ["Sin_0 (Sin)"]
    assert {layer["op_type"] for layer in summary["layers"]} >= {"MVAU_rtl", "Thresholding_rtl"}


def test_missing_model_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    result = subprocess.run([sys.executable, "build.py", "build", "--model", str(tmp_path / "nope.onnx"),
                             "--config", "build_configs/unrolled.yaml", "--out", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert f"build.py build: error: --model {tmp_path / 'nope.onnx'}: no such file" in result.stderr


def test_failure_cause_is_the_exception_after_the_last_traceback_box(tmp_path):
    from psa_finn.build_configs.dataflow_build import failure_cause

    log = tmp_path / "build_dataflow.log"
    log.write_text("Running step: step_tidy_up [1/3]\n\u256d\u2500 Traceback \u2500\u256e\n\u2502 raise X \u2502\n"
                   "\u2570\u2500\u2500\u256f\nFixedPointNotReached: the list [A, B] did not reach\n"
                   "a fixed point: AveragePool_0 (AveragePool)\n")
    assert failure_cause(log) == ("FixedPointNotReached: the list [A, B] did not reach a fixed point: AveragePool_0 "
                                  "(AveragePool)")
    log.write_text("Running step: step_tidy_up [1/3]\nsomething failed\n\n")
    assert failure_cause(log) == "something failed"
    assert failure_cause(log, limit=9) == "something ..."
    assert failure_cause(tmp_path / "none.log") == ""
