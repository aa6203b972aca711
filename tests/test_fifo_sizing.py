"""FIFO sizing by cycle simulation (dataflow_sim): a diamond worked out by hand, the stream models against
finn-plus's cycle formulas, clear errors, and the sizing step on real networks (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from psa_finn.custom_ops.domain import HLS_DOMAIN, RTL_DOMAIN
import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (finn-plus's HW layer registry)
from psa_finn.dataflow_sim.dataflow_graph import simulate
from psa_finn.dataflow_sim.fifo_sizing import size_fifo_depths
from psa_finn.dataflow_sim.stream_models import NoStreamModel, stream_model_of

ROOT = Path(__file__).resolve().parents[1]
HLS, RTL = HLS_DOMAIN, RTL_DOMAIN


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              list(initializers))
    return ModelWrapper(helper.make_model(graph))


def diamond(side=4):
    """x [1, side, side] -> DuplicateStreams -> (InnerShuffle: transpose, a page of side*side words) + bypass ->
    ElementwiseAdd: a branch that holds a whole page beside a bypass."""
    shape = [1, side, side]
    nodes = [
        helper.make_node("DuplicateStreams_hls", ["x"], ["branch", "bypass"], name="dup", domain=HLS,
                         backend="fpgadataflow", NumChannels=side, PE=1, NumOutputStreams=2, inputDataType="INT8",
                         numInputVectors=[1, side]),
        helper.make_node("InnerShuffle_rtl", ["branch"], ["shuffled"], name="shuffle", domain=RTL,
                         backend="fpgadataflow", in_shape=shape, transpose_in_shape=shape, data_type="INT8", SIMD=1),
        helper.make_node("ElementwiseAdd_hls", ["shuffled", "bypass"], ["y"], name="add", domain=HLS,
                         backend="fpgadataflow", lhs_shape=shape, rhs_shape=shape, out_shape=shape,
                         lhs_dtype="INT8", rhs_dtype="INT8", out_dtype="INT9", PE=1),
    ]
    return _model(nodes, [("x", shape)], [("y", shape)])


def test_diamond_bypass_depth_is_the_hand_count_and_one_less_slows_it():
    # By hand (one word per cycle; a read one cycle after its write): the duplicator writes word k at cycle k+1;
    # the shuffle reads it at k+2, so page 0 (N = 16 words) is in at cycle N+1; the page is read out from N+2,
    # each word 2 cycles after its request: word j leaves at N+4+j and the adder reads it at N+5+j, with bypass
    # word j. Bypass word k is written at k+1 while the adder has read max(0, k-N-4) words before that cycle:
    # the bypass holds N+5 words from k = N+4 on. Depth 2 suffices on the other streams (each read follows its write
    # by one cycle).
    n = 16
    model = diamond(4)
    sizing = size_fifo_depths(model, frames=4)
    assert sizing.depths == {"branch": 2, "bypass": n + 5, "shuffled": 2}
    assert sizing.period_cycles == n
    sized = simulate(model, 4, sizing.depths)
    assert sized.deadlock_free and sized.period_cycles == n
    one_less = simulate(model, 4, {**sizing.depths, "bypass": n + 4})
    assert one_less.deadlock_free and one_less.period_cycles > n
    # below a page the duplicator stops before the shuffle has the page it waits for: a deadlock
    assert simulate(model, 4, {**sizing.depths, "bypass": n}).deadlock_free
    starved = simulate(model, 4, {**sizing.depths, "bypass": n - 1})
    assert not starved.deadlock_free and starved.period_cycles is None
    assert "dup/main" in starved.schedule.deadlocked


def _matrix_vector(mw, mh, simd, pe, vectors):
    weights = helper.make_tensor("w", TensorProto.FLOAT, [mw, mh], np.zeros(mw * mh))
    node = helper.make_node("MVAU_rtl", ["x", "w"], ["y"], name="mvau", domain=RTL, backend="fpgadataflow", MW=mw,
                            MH=mh, SIMD=simd, PE=pe, numInputVectors=vectors, inputDataType="INT8",
                            weightDataType="INT4", outputDataType="INT24", noActivation=1, binaryXnorMode=0,
                            mem_mode="internal_embedded", ActVal=0)
    return _model([node], [("x", vectors + [mw])], [("y", vectors + [mh])], [weights])


@pytest.mark.parametrize("mw, mh, simd, pe, vectors", [(8, 6, 2, 3, [1, 5]), (16, 4, 4, 1, [1, 3]),
                                                       (8, 8, 8, 8, [1, 2]), (12, 1, 3, 1, [1])])
def test_matrix_vector_model_takes_finn_plus_cycles_and_streams_at_that_rate(mw, mh, simd, pe, vectors):
    from qonnx.custom_op.registry import getCustomOp

    model = _matrix_vector(mw, mh, simd, pe, vectors)
    node = model.graph.node[0]
    timing = stream_model_of(node, model)
    assert timing.cycles_per_frame() == getCustomOp(node).get_exp_cycles()
    # alone (input always there, output always taken), frames follow each other at that period
    assert simulate(model, 3).period_cycles == getCustomOp(node).get_exp_cycles()


def test_a_layer_without_a_stream_model_is_named():
    node = helper.make_node("LayerNorm_rtl", ["x"], ["y"], name="norm", domain=RTL, backend="fpgadataflow")
    model = _model([node], [("x", [1, 4])], [("y", [1, 4])])
    with pytest.raises(NoStreamModel, match=r"norm \(LayerNorm_rtl\): no stream behaviour model for LayerNorm"):
        size_fifo_depths(model)


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "XILINX_VIVADO")}
    return subprocess.run([sys.executable, "build.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.slow
def test_residual_cnn_is_sized_deadlock_free_at_the_analytic_rate(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from networks import export_network

    model = export_network("residual_cnn", tmp_path / "residual_cnn.onnx")
    result = _cli("build", "--model", str(model), "--config", "build_configs/unrolled.yaml", "--out",
                  str(tmp_path / "build"), "--stop-step", "step_set_fifo_depths")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    sizing = summary["fifo_sizing"]
    assert sizing["method"] == "cycle simulation" and sizing["deadlock_free"] is True
    assert sizing["simulated_fps"] >= 0.99 * summary["fps"]
    assert summary["steps_run"][-1] == "step_size_fifos_by_simulation"
    fifos = summary["fifos"]
    # a stream of depth 2 stays a direct connection (InsertFIFO); the residual join's bypass holds rows of the map
    assert fifos and all(f["depth"] > 2 for f in fifos)
    assert any(f["producer"].startswith("DuplicateStreams") for f in fifos)
    for key in ("lut", "bram18", "uram"):
        assert summary[key] == sum(layer[key] for layer in summary["layers"])
    fifo_layers = [layer for layer in summary["layers"] if layer["op_type"] == "StreamingFIFO_rtl"]
    assert sum(layer["lut"] for layer in fifo_layers) == sum(f["lut"] for f in fifos) > 0
    assert "FIFOs are not counted" not in result.stdout
