"""psa-finn's build steps as finn-plus steps: typed `(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper`,
registered so a config names them briefly or by dotted path, honouring `cfg.verify_steps`; the config values they
read computed from public fields as finn-plus computes them."""

import inspect

import numpy as np
import pytest
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from graphs import graph_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_build_steps")

from finn.builder.build_dataflow import resolve_build_steps  # noqa: E402
from finn.builder.build_dataflow_config import DataflowBuildConfig, VerificationStepType  # noqa: E402

from psa_finn.build_configs import steps  # noqa: E402
from psa_finn.build_configs.config_check import fpga_part_of, target_cycles_per_frame  # noqa: E402

OUR_STEPS = ("step_lower_quantized_functions", "step_streamline_with_luts", "step_convert_luts_to_hw",
             "step_output_dequant_to_host", "step_fold_lut_layers", "step_fold_shuffles", "step_clamp_folding")


def config(tmp_path, **fields):
    return DataflowBuildConfig(output_dir=str(tmp_path / "build"), synth_clk_period_ns=5.0, generate_outputs=[],
                               fpga_part="xcu50-fsvh2104-2-e", **fields)


@pytest.mark.parametrize("name", OUR_STEPS)
def test_each_step_is_typed_and_resolves_by_short_name_and_dotted_path(tmp_path, name):
    function = getattr(steps, name)
    signature = inspect.signature(function)
    assert [p.annotation for p in signature.parameters.values()] == [ModelWrapper, DataflowBuildConfig]
    assert signature.return_annotation is ModelWrapper
    cfg = config(tmp_path)
    assert resolve_build_steps(cfg, partial=False, list_as_input=[name]) == [function]
    assert resolve_build_steps(cfg, partial=False, list_as_input=[f"psa_finn.build_configs.steps.{name}"]) == [function]


@pytest.mark.parametrize("fields, cycles", [({"target_fps": 1000}, 200_000), ({"target_fps": 3}, 66_666_666),
                                            ({}, None)])
def test_config_values_from_public_fields_equal_finn_plus(tmp_path, fields, cycles):
    cfg = config(tmp_path, **fields)
    assert target_cycles_per_frame(cfg) == cycles == cfg._resolve_cycles_per_frame()
    assert fpga_part_of(cfg) == "xcu50-fsvh2104-2-e" == cfg._resolve_fpga_part()
    board = DataflowBuildConfig(output_dir=str(tmp_path), synth_clk_period_ns=5.0, generate_outputs=[], board="U250")
    assert fpga_part_of(board) == board._resolve_fpga_part() == "xcu250-figd2104-2L-e"


def _affine_threshold_model():
    """x -> Mul 0.5 -> MultiThreshold (3 thresholds per channel): streamlining absorbs the Mul."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["xm"]),
             helper.make_node("MultiThreshold", ["xm", "thresholds"], ["y"], domain="qonnx.custom_op.general",
                              out_dtype="UINT2", data_layout="NC")]
    thresholds = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.5, 2.0]], dtype=np.float32)
    return graph_model(nodes, [("x", [1, 2])], [("y", [1, 2])],
                       initializers=[("half", np.float32(0.5)), ("thresholds", thresholds)])


def test_streamline_with_luts_verifies_when_the_config_asks(tmp_path):
    model = _affine_threshold_model()
    x = np.array([[[-3.0, 1.5]], [[0.5, -0.5]]], dtype=np.float32)
    expected = np.stack([execute_onnx(model, {"x": sample})["y"] for sample in x])
    np.save(tmp_path / "input.npy", x.reshape(2, 2))
    np.save(tmp_path / "expected.npy", expected.reshape(2, 2))
    verify_dir = tmp_path / "build" / "verification_output"
    plain = steps.step_streamline_with_luts(model, config(tmp_path))
    assert [n.op_type for n in plain.graph.node] == ["MultiThreshold"] and not verify_dir.exists()
    cfg = config(tmp_path, verify_steps=[VerificationStepType.STREAMLINED_PYTHON],
                 verify_input_npy=str(tmp_path / "input.npy"),
                 verify_expected_output_npy=str(tmp_path / "expected.npy"))
    steps.step_streamline_with_luts(_affine_threshold_model(), cfg)
    assert sorted(p.name for p in verify_dir.iterdir()) == ["verify_streamlined_python_0_SUCCESS.npy",
                                                            "verify_streamlined_python_1_SUCCESS.npy"]
    np.save(tmp_path / "expected.npy", expected.reshape(2, 2) + [[0, 0], [1, 0]])   # the second sample disagrees
    steps.step_streamline_with_luts(_affine_threshold_model(), cfg)
    assert (verify_dir / "verify_streamlined_python_1_FAIL.npy").is_file()
