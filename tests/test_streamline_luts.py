"""Streamlining with learnable functions on tiny hand-made graphs: absorptions into MultiThreshold and PerChannelLUT
along the real channel axis, MultiThreshold layouts, and capped fix-point loops."""

import numpy as np
import pytest
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from graphs import graph_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_streamline_luts")

from finn.builder.build_dataflow_config import DataflowBuildConfig  # noqa: E402
from finn.transformation.streamline.absorb import AbsorbAddIntoMultiThreshold  # noqa: E402
from finn.transformation.streamline.streamline_plus import StreamlinePlus  # noqa: E402

from psa_finn.build_configs.steps import step_streamline_with_luts  # noqa: E402
from psa_finn.custom_ops.domain import OPS_DOMAIN, channel_axis_of  # noqa: E402
from psa_finn.transforms.absorb_into_multithreshold import AbsorbAffineIntoMultiThreshold  # noqa: E402
from psa_finn.transforms.absorb_into_per_channel_lut import AbsorbAffineIntoPerChannelLUT, \
    AbsorbTransposeIntoPerChannelLUT  # noqa: E402
from psa_finn.transforms.fixed_point import FixedPointNotReached, transform_to_fixed_point  # noqa: E402
from psa_finn.transforms.lean_composed import apply_lean  # noqa: E402
from psa_finn.transforms.multithreshold_channels_last import SetMultiThresholdChannelsLast  # noqa: E402

STREAMLINE_CFG = DataflowBuildConfig(output_dir="/tmp/psa_finn_test_streamline_luts", synth_clk_period_ns=5.0,
                                     generate_outputs=[])

RNG = np.random.default_rng(3)


def _run(model, x):
    return execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]


def _mt(inp, out, layout, out_dtype="UINT3", name="mt"):
    return helper.make_node("MultiThreshold", [inp, "thr"], [out], domain="qonnx.custom_op.general",
                            out_dtype=out_dtype, data_layout=layout, name=name)


def _nhwc_affine_model():
    """x [1, 3, 3, 4] (NHWC) -> Mul(per-channel > 0) -> Add(per-channel) -> MultiThreshold (one shared row, NCHW)."""
    nodes = [helper.make_node("Mul", ["x", "a"], ["xa"], name="scale"),
             helper.make_node("Add", ["xa", "b"], ["xb"], name="bias"), _mt("xb", "y", "NCHW")]
    inits = [("a", RNG.uniform(0.5, 2, size=(1, 1, 1, 4))), ("b", RNG.normal(size=(1, 1, 1, 4)) * 3),
             ("thr", np.sort(RNG.normal(size=(1, 7)) * 5, axis=1))]
    return graph_model(nodes, [("x", [1, 3, 3, 4])], [("y", [1, 3, 3, 4])], inits)


def test_per_channel_affine_on_nhwc_folds_into_shared_thresholds():
    model = _nhwc_affine_model()
    x = RNG.normal(size=(1, 3, 3, 4)).astype(np.float32) * 5
    expected = _run(model, x)
    assert not AbsorbAddIntoMultiThreshold().apply(_nhwc_affine_model())[1]  # finn reads [1,1,1,C] as NCHW
    absorbed = transform_to_fixed_point(model, AbsorbAffineIntoMultiThreshold("Add"))
    absorbed = transform_to_fixed_point(absorbed, AbsorbAffineIntoMultiThreshold("Mul"))
    assert [n.op_type for n in absorbed.graph.node] == ["MultiThreshold"]
    mt = absorbed.graph.node[0]
    assert getCustomOp(mt).get_nodeattr("data_layout") == "NHWC" and absorbed.get_initializer("thr").shape == (4, 7)
    np.testing.assert_array_equal(_run(absorbed, x), expected)


def test_affine_along_another_axis_than_the_thresholds_stays():
    model = _nhwc_affine_model()
    model.set_initializer("thr", np.sort(RNG.normal(size=(3, 7)), axis=1))   # per channel of axis 1 (NCHW)
    assert not AbsorbAffineIntoMultiThreshold("Add").apply(model)[1]
    model.set_initializer("a", -np.ones((1, 1, 1, 4), dtype=np.float32))
    assert not AbsorbAffineIntoMultiThreshold("Mul").apply(model)[1]


def _lut_model(mode="full", before=(("Mul", -1.0),), after=(("Mul", 2.0), ("Add", [1, -1, 3])), rows=3):
    """x (INT4) -> `before` -> PerChannelLUT (INT8 codes in, INT5 out, 3 channels, `rows` table rows) -> `after`."""
    entries = 256 if mode == "full" else 65
    table = RNG.integers(-16, 16, size=(rows, entries))
    nodes, inits, current = [], [("table", table)], "x"
    for index, (op, value) in enumerate(before):
        nodes.append(helper.make_node(op, [current, f"c{index}"], [f"b{index}"], name=f"before{index}"))
        inits.append((f"c{index}", np.asarray(value, dtype=np.float32)))
        current = f"b{index}"
    nodes.append(helper.make_node("PerChannelLUT", [current, "table"], ["lut"], domain=OPS_DOMAIN, name="lut",
                                  inputDataType="INT8", outputDataType="INT5", mode=mode))
    current = "lut"
    for index, (op, value) in enumerate(after):
        nodes.append(helper.make_node(op, [current, f"d{index}"], [f"a{index}"], name=f"after{index}"))
        inits.append((f"d{index}", np.asarray(value, dtype=np.float32)))
        current = f"a{index}"
    nodes[-1].output[0] = "y"
    return graph_model(nodes, [("x", [1, 16, 3])], [("y", [1, 16, 3])], inits, [("x", "INT4"), ("table", "INT5")])


@pytest.mark.parametrize("rows", [3, 1])
@pytest.mark.parametrize("before", [(("Mul", -1.0),), (("Add", 2.0),), (("Mul", [[1, -1, 1]]),)])
def test_integer_affines_around_a_lut_fold_into_its_table_exactly(before, rows):
    model = _lut_model(before=before, rows=rows)
    x = np.tile(np.arange(-8, 8, dtype=np.float32)[None, :, None], (1, 1, 3))   # every INT4 code on every channel
    expected = _run(model, x)
    folded = transform_to_fixed_point(model, AbsorbAffineIntoPerChannelLUT())
    assert [n.op_type for n in folded.graph.node] == ["PerChannelLUT"]
    lut = getCustomOp(folded.graph.node[0])
    assert lut.get_nodeattr("inputDataType") == "INT4" and folded.get_initializer("table").shape == (3, 16)
    assert DataType[lut.get_nodeattr("outputDataType")].allowed(expected.max())
    np.testing.assert_array_equal(_run(folded, x), expected)


def test_lerp64_lut_takes_only_integer_adds_after_it_and_float_constants_stay():
    model = _lut_model("lerp64", before=(("Add", 2.0),), after=(("Add", [1, -1, 3]), ("Mul", 2.0)))
    folded = transform_to_fixed_point(model, AbsorbAffineIntoPerChannelLUT())
    assert [n.op_type for n in folded.graph.node] == ["Add", "PerChannelLUT", "Mul"]
    x = RNG.integers(-8, 8, size=(1, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(folded, x), _run(model, x))
    fractional = _lut_model(before=(("Mul", 0.5),), after=(("Mul", 0.25),))
    assert not AbsorbAffineIntoPerChannelLUT().apply(fractional)[1]


def _transpose_lut_model(perm):
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=perm, name="t"),
             helper.make_node("PerChannelLUT", ["xt", "table"], ["y"], domain=OPS_DOMAIN, name="lut",
                              inputDataType="INT4", outputDataType="INT5", mode="full")]
    shape = [1, 2, 5, 3]
    out = [shape[p] for p in perm]
    return graph_model(nodes, [("x", shape)], [("y", out)], [("table", RNG.integers(-16, 16, size=(out[-1], 16)))],
                  [("x", "INT4")])


@pytest.mark.parametrize("perm,channel_axis", [([0, 2, 1, 3], -1), ([0, 3, 1, 2], -2)])
def test_transpose_moves_past_a_lut_which_follows_its_channels(perm, channel_axis):
    model = _transpose_lut_model(perm)
    x = RNG.integers(-8, 8, size=(1, 2, 5, 3)).astype(np.float32)
    moved = transform_to_fixed_point(model, AbsorbTransposeIntoPerChannelLUT())
    assert [n.op_type for n in moved.graph.node] == ["PerChannelLUT", "Transpose"]
    assert channel_axis_of(moved.graph.node[0]) == channel_axis
    np.testing.assert_array_equal(_run(moved, x), _run(model, x))


def test_shared_thresholds_go_channels_last_except_on_an_nchw_input():
    thresholds = [("thr", np.sort(RNG.normal(size=(1, 7)), axis=1))]
    token_major = graph_model([_mt("x", "y", "NCW")], [("x", [1, 4, 6])], [("y", [1, 4, 6])], thresholds)
    fixed = transform_to_fixed_point(token_major, SetMultiThresholdChannelsLast())
    assert getCustomOp(fixed.graph.node[0]).get_nodeattr("data_layout") == "NWC"
    image = graph_model([_mt("x", "y", "NCHW")], [("x", [1, 1, 8, 8])], [("y", [1, 1, 8, 8])], thresholds)
    image.set_tensor_layout("x", ["N", "C", "H", "W"])
    kept = transform_to_fixed_point(image, SetMultiThresholdChannelsLast())
    assert getCustomOp(kept.graph.node[0]).get_nodeattr("data_layout") == "NCHW"


def _falling_channel_model():
    """x -> MultiThreshold -> Mul(+-0.25 per channel) -> y: a sign nothing can absorb."""
    nodes = [_mt("x", "q", "NC", out_dtype="UINT2"), helper.make_node("Mul", ["q", "s"], ["y"], name="signed")]
    inits = [("thr", np.array([[-1.0, 0.0, 1.0]])), ("s", np.array([[0.25, -0.25, 0.25, -0.25]]))]
    return graph_model(nodes, [("x", [1, 4])], [("y", [1, 4])], inits)


def test_rewrites_that_undo_each_other_end_in_an_error_naming_them():
    """FactorOutMulSignMagnitude splits the Mul, CollapseRepeatedMul joins it again: a hang before the caps."""
    for streamline in (lambda m: apply_lean(m, StreamlinePlus()),
                       lambda m: step_streamline_with_luts(m, STREAMLINE_CFG)):
        with pytest.raises(FixedPointNotReached) as error:
            streamline(_falling_channel_model())
        message = str(error.value)
        assert "FactorOutMulSignMagnitude" in message and "CollapseRepeatedMul" in message and "(Mul)" in message


class _AlwaysChanges(Transformation):
    def apply(self, model):
        model.graph.node[0].name += "x"
        return model, True


class _RenameOnce(Transformation):
    def apply(self, model):
        changed = model.graph.node[0].name != "renamed"
        model.graph.node[0].name = "renamed"
        return model, changed


def test_fixed_point_cap_names_the_transformation_and_node_and_keeps_normal_results():
    model = _falling_channel_model()
    with pytest.raises(FixedPointNotReached, match=r"_AlwaysChanges did not reach a fixed point.* 5 passes.*\(Mul"):
        transform_to_fixed_point(model, _AlwaysChanges(), max_passes=5)
    capped = transform_to_fixed_point(model, _RenameOnce())
    assert capped.model == model.transform(_RenameOnce()).model
    assert model.graph.node[0].name != "renamed"   # a copy, as ModelWrapper.transform
