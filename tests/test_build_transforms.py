"""The build's streamlining and folding helpers (transforms/) on tiny hand-built graphs: same outputs, right shapes."""

import numpy as np
import pytest
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_shapes import InferShapes

from graphs import graph_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_build_transforms")

from psa_finn.custom_ops.domain import HW_DOMAIN  # noqa: E402
from psa_finn.transforms.clamp_folding import ClampFoldingToDivisors  # noqa: E402
from psa_finn.transforms.compose_thresholds import ComposeConsecutiveThresholds  # noqa: E402
from psa_finn.transforms.expand_initializer_rank import ExpandInitializerRank  # noqa: E402
from psa_finn.transforms.fold_shuffles import FoldShuffles, shuffle_simd_candidates  # noqa: E402
from psa_finn.transforms.host_output_dequant import MoveOutputDequantToHost, host_output_dequant_nodes  # noqa: E402
from psa_finn.transforms.multithreshold_channels_last import SetMultiThresholdChannelsLast  # noqa: E402
from psa_finn.transforms.token_mean_to_global_acc_pool import ConvertTokenMeanToGlobalAccPool  # noqa: E402
from psa_finn.transforms.transpose_past_shared_threshold import MoveTransposePastSharedThreshold  # noqa: E402

RNG = np.random.default_rng(0)


def _run(model, feed):
    assert set(feed) == {i.name for i in model.graph.input}, "feed every graph input by its name"
    return execute_onnx(model, feed)[model.graph.output[0].name]


def _int8(shape):
    return RNG.integers(-128, 128, size=shape).astype(np.float32)


def _mean_model(scale=None, keepdims=0, tokens=16, channels=8, axis=1):
    nodes, src = [], "x"
    if scale is not None:
        nodes.append(helper.make_node("Mul", ["x", "s"], ["xs"], name="scale"))
        src = "xs"
    nodes.append(helper.make_node("ReduceMean", [src], ["y"], axes=[axis], keepdims=keepdims, name="mean"))
    out_shape = [1, 1, channels] if keepdims else [1, channels]
    if axis == 2:
        out_shape = [1, tokens, 1] if keepdims else [1, tokens]
    inits = [("s", np.array(scale))] if scale is not None else []
    return graph_model(nodes, [("x", [1, tokens, channels])], [("y", out_shape)], inits, [("x", "INT8")])


@pytest.mark.parametrize("scale,keepdims", [(None, 0), (None, 1), (0.25, 0)])
def test_token_mean_becomes_global_acc_pool_with_same_output(scale, keepdims):
    model = _mean_model(scale, keepdims)
    x = _int8([1, 16, 8])
    expected = _run(model, {"x": x})
    converted = model.transform(ConvertTokenMeanToGlobalAccPool())
    ops = [n.op_type for n in converted.graph.node]
    assert ops == ["Reshape", "GlobalAccPool", "Reshape", "Mul"]
    pool = getCustomOp(converted.get_nodes_by_op_type("GlobalAccPool")[0])
    assert pool.get_nodeattr("NumChannels") == 8 and list(pool.get_nodeattr("numInputVectors")) == [1, 16, 1]
    assert float(converted.get_initializer(converted.graph.node[-1].input[1])) == pytest.approx((scale or 1) / 16)
    np.testing.assert_allclose(_run(converted, {"x": x}), expected, rtol=1e-6)


def test_token_mean_over_channels_or_float_input_is_left_alone():
    model = _mean_model(axis=2)
    assert not ConvertTokenMeanToGlobalAccPool().apply(model)[1]
    model = _mean_model()
    model.set_tensor_datatype("x", DataType["FLOAT32"])
    assert not ConvertTokenMeanToGlobalAccPool().apply(model)[1]


def _transpose_threshold_model(rows, channels=6, tokens=4):
    thresholds = np.sort(RNG.normal(size=(rows, 7)) * 40, axis=1)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="t"),
             helper.make_node("MultiThreshold", ["xt", "thr"], ["y"], domain="qonnx.custom_op.general",
                              out_dtype="UINT3", data_layout="NCW", name="mt")]
    return graph_model(nodes, [("x", [1, channels, tokens])], [("y", [1, tokens, channels])], [("thr", thresholds)],
                  [("x", "INT8")])


def test_transpose_moves_past_shared_thresholds_and_keeps_output():
    model = _transpose_threshold_model(rows=1)
    x = _int8([1, 6, 4])
    expected = _run(model.transform(SetMultiThresholdChannelsLast()), {"x": x})
    moved = model.transform(MoveTransposePastSharedThreshold())
    assert [n.op_type for n in moved.graph.node] == ["MultiThreshold", "Transpose"]
    assert moved.get_tensor_shape(moved.graph.node[0].output[0]) == [1, 6, 4]
    assert moved.get_tensor_datatype(moved.graph.node[0].output[0]) == DataType["UINT3"]
    moved = moved.transform(SetMultiThresholdChannelsLast())
    np.testing.assert_array_equal(_run(moved, {"x": x}), expected)


def _rank1_affine_model():
    """Transpose -> Mul(rank-1 per-channel) -> Add(rank-1, also read by a second Add) -> Mul(scalar): an old export's
    token-mixer pattern."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="t"),
             helper.make_node("Mul", ["xt", "w"], ["m"], name="mul"),
             helper.make_node("Add", ["m", "b"], ["a"], name="add"),
             helper.make_node("Add", ["a", "b"], ["a2"], name="add_again"),
             helper.make_node("Mul", ["s", "a2"], ["y"], name="scale")]
    inits = [("w", RNG.normal(size=4)), ("b", RNG.normal(size=4)), ("s", np.array([0.5]))]
    return graph_model(nodes, [("x", [1, 4, 3])], [("y", [1, 3, 4])], inits)


def test_rank1_initializers_get_full_rank_and_finn_can_move_the_transpose():
    from finn.transformation.streamline.reorder import MoveTransposePastEltwise

    model = _rank1_affine_model()
    x = RNG.normal(size=(1, 4, 3)).astype(np.float32)
    expected = _run(model, {"x": x})
    with pytest.raises(ValueError, match="axes don't match"):   # what finn does with the old layout
        _rank1_affine_model().transform(MoveTransposePastEltwise())
    expanded, changed = ExpandInitializerRank().apply(model)
    assert changed and not ExpandInitializerRank().apply(expanded)[1]
    shapes = {n.name: [expanded.get_initializer(i).shape for i in n.input if expanded.get_initializer(i) is not None]
              for n in expanded.graph.node}
    assert shapes == {"t": [], "mul": [(1, 1, 4)], "add": [(1, 1, 4)], "add_again": [(1, 1, 4)], "scale": [(1,)]}
    assert len({n.input[1] for n in expanded.graph.node if n.op_type == "Add"}) == 2   # shared "b": own copies
    np.testing.assert_array_equal(_run(expanded, {"x": x}), expected)
    moved = expanded.transform(MoveTransposePastEltwise())
    moved.set_tensor_shape("x", [1, 4, 3])          # finn drops the annotations of the tensors it rewires
    moved = moved.transform(InferShapes())
    assert moved.graph.node[-1].op_type == "Transpose"
    np.testing.assert_allclose(_run(moved, {"x": x}), expected, rtol=1e-6)


def test_transpose_stays_before_per_channel_thresholds():
    model = _transpose_threshold_model(rows=6)
    assert not MoveTransposePastSharedThreshold().apply(model)[1]


def test_multithreshold_layout_reset_to_channels_last_fixes_execution():
    model = _transpose_threshold_model(rows=6)
    with pytest.raises(AssertionError):
        _run(model, {"x": _int8([1, 6, 4])})
    fixed = model.transform(SetMultiThresholdChannelsLast())
    assert getCustomOp(fixed.graph.node[1]).get_nodeattr("data_layout") == "NWC"
    x = _int8([1, 6, 4])
    thresholds = fixed.get_initializer("thr")
    expected = (x.transpose(0, 2, 1)[..., None] >= thresholds[None, None]).sum(-1)
    np.testing.assert_array_equal(_run(fixed, {"x": x}), expected)


def test_multithreshold_layout_rejects_thresholds_that_fit_no_channel_axis():
    model = _transpose_threshold_model(rows=6)
    model.set_initializer("thr", np.zeros((3, 7), dtype=np.float32))
    with pytest.raises(ValueError, match="mt"):
        model.transform(SetMultiThresholdChannelsLast())


def _shuffle_model(tokens=16, channels=96):
    node = helper.make_node("Shuffle", ["x"], ["y"], domain=HW_DOMAIN, backend="fpgadataflow",
                            data_type="INT8", in_shape=[1, tokens, channels], out_shape=[1, channels, tokens],
                            transpose_in_shape=[1, tokens, channels], transpose_out_shape=[1, channels, tokens],
                            perm=[0, 2, 1], name="shuffle")
    return graph_model([node], [("x", [1, tokens, channels])], [("y", [1, channels, tokens])],
                       datatypes=[("x", "INT8")])


def test_shuffle_simd_is_smallest_legal_value_meeting_target():
    model = _shuffle_model()
    op = getCustomOp(model.graph.node[0])
    assert shuffle_simd_candidates(op) == [1, 2, 4, 8, 16]
    unfolded = op.get_exp_cycles()
    model = model.transform(FoldShuffles(target_cycles=unfolded // 3))
    op = getCustomOp(model.graph.node[0])
    simd = op.get_nodeattr("SIMD")
    assert op.get_exp_cycles() <= unfolded // 3
    op.set_nodeattr("SIMD", shuffle_simd_candidates(op)[shuffle_simd_candidates(op).index(simd) - 1])
    assert op.get_exp_cycles() > unfolded // 3


def test_clamp_folding_picks_largest_divisor_not_above_request():
    model = _shuffle_model(tokens=12, channels=96)
    op = getCustomOp(model.graph.node[0])
    op.set_nodeattr("SIMD", 16)
    model = model.transform(ClampFoldingToDivisors())
    assert getCustomOp(model.graph.node[0]).get_nodeattr("SIMD") == 12


def test_output_dequant_layers_go_back_to_the_host():
    """After stock step_convert_to_hw the float scale and bias are ElementwiseMul/Add layers; they become Mul/Add."""
    from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import \
        InferElementwiseBinaryOperation

    nodes = [helper.make_node("MatMul", ["x", "w"], ["acc"], name="mm"),
             helper.make_node("Mul", ["acc", "s"], ["scaled"], name="dq_mul"),
             helper.make_node("Add", ["scaled", "b"], ["y"], name="dq_add")]
    model = graph_model(nodes, [("x", [1, 4])], [("y", [1, 3])],
                   [("w", _int8([4, 3])), ("s", np.array(0.5)), ("b", np.array([1.0, 2.0, 3.0]))],
                   [("x", "INT8"), ("w", "INT8")])
    x = _int8([1, 4])
    expected = _run(model, {"x": x})
    on_hw = model.transform(InferElementwiseBinaryOperation())
    assert [n.op_type for n in on_hw.graph.node] == ["MatMul", "ElementwiseMul", "ElementwiseAdd"]
    assert [n.op_type for n in host_output_dequant_nodes(on_hw)] == ["ElementwiseAdd", "ElementwiseMul"]
    host = on_hw.transform(MoveOutputDequantToHost())
    assert [(n.op_type, n.domain) for n in host.graph.node] == [("MatMul", ""), ("Mul", ""), ("Add", "")]
    np.testing.assert_allclose(_run(host, {"x": x}), expected)


def test_vivado_less_steps_names_every_skipped_step(monkeypatch):
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    steps = ["step_tidy_up", "psa_finn.build_configs.steps.step_streamline_with_luts", "step_hw_codegen",
             "step_hw_ipgen",
             "step_create_stitched_ip", "step_out_of_context_synthesis"]
    kept, skipped = finn_shims.vivado_less_steps(steps)
    assert kept == steps[:3]
    assert [s["step"] for s in skipped] == ["step_hw_ipgen", "step_create_stitched_ip",
                                            "step_out_of_context_synthesis"]
    assert all("XILINX_VIVADO" in s["reason"] for s in skipped)
    monkeypatch.setenv("XILINX_VIVADO", "/opt/Xilinx/Vivado/2024.2")
    assert finn_shims.vivado_less_steps(steps) == (steps, [])


def test_without_vivado_fifo_sizing_is_replaced_by_the_simulation_step(monkeypatch):
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    ours = "psa_finn.build_configs.steps.step_size_fifos_by_simulation"
    kept, skipped = finn_shims.vivado_less_steps(["step_hw_codegen", "step_set_fifo_depths", "step_create_stitched_ip"])
    assert kept == ["step_hw_codegen", ours]
    assert [s["step"] for s in skipped] == ["step_set_fifo_depths", "step_create_stitched_ip"]
    assert skipped[0]["reason"].endswith(f"replaced by {ours}")
    assert finn_shims.vivado_less_stop_step("step_set_fifo_depths", skipped) == "step_size_fifos_by_simulation"
    assert finn_shims.vivado_less_stop_step("step_hw_codegen", skipped) == "step_hw_codegen"
    monkeypatch.setenv("XILINX_VIVADO", "/opt/Xilinx/Vivado/2024.2")
    assert finn_shims.vivado_less_steps(["step_set_fifo_depths"]) == (["step_set_fifo_depths"], [])


def _two_threshold_model(fork=False):
    first = np.sort(RNG.integers(-3000, 3000, size=(6, 255)), axis=1).astype(np.float32)
    second = np.sort(RNG.uniform(-140, 140, size=(6, 15)), axis=1).astype(np.float32)
    nodes = [helper.make_node("MultiThreshold", ["x", "ta"], ["n"], domain="qonnx.custom_op.general",
                              out_dtype="INT8", out_bias=-128.0, data_layout="NWC", name="requant"),
             helper.make_node("MultiThreshold", ["n", "tb"], ["y"], domain="qonnx.custom_op.general",
                              out_dtype="INT4", out_bias=-8.0, data_layout="NWC", name="table")]
    outputs = [("y", [1, 5, 6])]
    if fork:
        nodes.append(helper.make_node("Neg", ["n"], ["z"], name="other_consumer"))
        outputs.append(("z", [1, 5, 6]))
    return graph_model(nodes, [("x", [1, 5, 6])], outputs, [("ta", first), ("tb", second)], [("x", "INT16")])


def test_monotone_table_thresholds_merge_into_the_requantizer_bit_exactly():
    model = _two_threshold_model()
    x = RNG.integers(-3200, 3200, size=(1, 5, 6)).astype(np.float32)
    x[0, 0, :3] = [-32768, 32767, 0]
    expected = _run(model, {"x": x})
    merged = model.transform(ComposeConsecutiveThresholds())
    assert [n.name for n in merged.graph.node] == ["table"]
    assert merged.graph.node[0].input[0] == "x"
    np.testing.assert_array_equal(_run(merged, {"x": x}), expected)
    for value in (-32768, 32767):
        probe = np.full((1, 5, 6), value, dtype=np.float32)
        np.testing.assert_array_equal(_run(merged, {"x": probe}), _run(model, {"x": probe}))


def test_requantizer_with_another_consumer_is_not_merged():
    assert not ComposeConsecutiveThresholds().apply(_two_threshold_model(fork=True))[1]


def test_lean_streamline_plus_gives_the_stock_graph():
    from finn.transformation.streamline.streamline_plus import StreamlinePlus

    from psa_finn.transforms.lean_composed import apply_lean

    thresholds = np.sort(RNG.normal(size=(1, 15)) * 30, axis=1).astype(np.float32)
    nodes = [helper.make_node("MultiThreshold", ["x", "t0"], ["q"], domain="qonnx.custom_op.general",
                              out_dtype="UINT4", name="quant_in"),
             helper.make_node("Mul", ["q", "s0"], ["qs"], name="scale_in"),
             helper.make_node("MatMul", ["qs", "w"], ["acc"], name="mm"),
             helper.make_node("Mul", ["acc", "s1"], ["accs"], name="scale_w"),
             helper.make_node("Add", ["accs", "b"], ["pre"], name="bias"),
             helper.make_node("MultiThreshold", ["pre", "t1"], ["y"], domain="qonnx.custom_op.general",
                              out_dtype="UINT4", name="quant_out")]
    model = graph_model(nodes, [("x", [1, 3, 8])], [("y", [1, 3, 8])],
                   [("t0", thresholds), ("s0", np.array(0.5)), ("w", _int8([8, 8])), ("s1", np.array(0.25)),
                    ("b", RNG.normal(size=8)), ("t1", thresholds * 4)], [("w", "INT8")])
    x = RNG.normal(size=(1, 3, 8)).astype(np.float32) * 30
    stock = model.transform(StreamlinePlus())
    lean = apply_lean(model, StreamlinePlus())
    assert [(n.op_type, list(n.input)) for n in lean.graph.node] == [(n.op_type, list(n.input))
                                                                      for n in stock.graph.node]
    assert "Mul" not in [n.op_type for n in lean.graph.node]
    for init in stock.graph.initializer:
        np.testing.assert_array_equal(lean.get_initializer(init.name), stock.get_initializer(init.name))
    expected = _run(model, {"x": x})
    for streamlined in (lean, stock):
        np.testing.assert_array_equal(_run(streamlined, {streamlined.graph.input[0].name: x}), expected)
