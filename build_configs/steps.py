"""psa-finn's build steps, each a finn-plus step `(model, cfg) -> model` named by its job; any network.

Each is registered with finn-plus's `register_build_dataflow_step`, so a build config names it briefly
(`step_lower_quantized_functions`) once this module is imported (`build.py build` imports it), or by dotted path
(`psa_finn.build_configs.steps.step_lower_quantized_functions`) anywhere, in our configs (unrolled.yaml,
folded.yaml) or injected into finn-plus's default step list (`inject_steps_before` / `inject_steps_after`, docs
"Build configs and our steps"). `step_streamline_with_luts` honours `cfg.verify_steps` as stock step_streamline does
(STREAMLINED_PYTHON). Every fix-point loop they run is capped (transforms.fixed_point): a rewrite that loops ends in
an error naming it and the nodes it changed.

- step_lower_quantized_functions: every quantized function of an exported model (LerpPSA, GELU, SiLU, ... between
  Quant nodes) -> MultiThreshold or PerChannelLUT (transforms.lower_quantized_functions); a lowered model passes
  unchanged.
  Also gives a quantized Conv bias's scalar scale / zero point the shape FINN's QONNX conversion can reshape
  (transforms.conv_bias_quant_shape). Before step_qonnx_to_finn.
- step_streamline_with_luts: streamlining to integer channels-last layers, learnable functions included, in place of
  (or before) stock step_streamline: FINN+'s StreamlinePlus (residual topologies) extended so that affines and
  transposes are absorbed into PerChannelLUT tables as into MultiThresholds, constants absorbed along their real
  channel axis; convolutions and pooling lowered to channels-last as stock step_streamline does; then the pattern
  rewrites (transpose past a shared threshold, token mean -> GlobalAccPool, consecutive thresholds composed). Quantizer
  thresholds round ties half-to-even like the QONNX Quant (transforms.round_half_even_thresholds): until then no
  threshold is rounded to an integer (RoundAndClipThresholds would erase which thresholds are ties) or composed.
- step_convert_luts_to_hw: PerChannelLUT -> the PerChannelLUT HW layer, KANLUT -> KANLinear. Before stock
  step_convert_to_hw.
- step_convert_requantizers_to_hw: every MultiThreshold that is exactly a shift-and-clip requantizer on its whole
  input range (and has >= 3 output bits) -> the IntegerRequant HW layer (transforms.convert_to_hw_integer_requant).
  Before stock step_convert_to_hw; leave it out of the step list to keep every threshold.
- step_output_dequant_to_host: after stock step_convert_to_hw, the trailing output dequantisation goes back to the
  host (float Mul/Add, not ElementwiseMul/Add layers).
- step_remove_identity_requantizers: after stock step_minimize_bit_width, every IntegerRequant / Thresholding layer
  that outputs its input on every code of its (narrowed) input type is bypassed (transforms.identity_requantizers:
  the Quant behind a KAN's 0/1 fan-out). Leave it out of the step list to keep them.
- step_fold_lut_layers, step_fold_shuffles: fold the layers SetFolding does not know (PerChannelLUT and
  IntegerRequant; generic Shuffles), BEFORE
  step_target_fps_parallelization, so its two-pass relaxation does not slow everything to their unfolded rate.
- step_refold_mvaus_by_resources: after step_target_fps_parallelization (before step_apply_folding_config), every
  MVAU's (PE, SIMD) re-chosen, at the same or fewer cycles and DSPs, for the fewest LUTs by psa-finn's resource
  model (transforms.refold_mvaus_by_resources). Leave it out of the step list to keep SetFolding's choice.
- step_clamp_folding: a fixed folding config (PE=SIMD=16) made legal for layers whose dimensions 16 does not divide.
- step_size_fifos_by_simulation: in place of stock step_set_fifo_depths (which needs Vivado's xsim), after folding
  and code generation: data width converters and StreamingFIFOs inserted (finn's InsertDWC / InsertFIFO), every
  FIFO sized by a cycle simulation of the layers' stream behaviour (dataflow_sim.fifo_sizing), the result simulated
  again to confirm it (report/fifo_sizing_by_simulation.json), then code generation for the new nodes (and IP
  generation when Vivado is there). A layer without a stream model stops it with an error naming the layer.

Import `build_configs.finn_shims` and call `boot_finn` before importing this module.
"""

import psa_finn.custom_ops  # noqa: F401  (registers LerpPSA and PerChannelLUT with qonnx)
import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the PerChannelLUT HW layer with qonnx and finn-plus)
from finn.builder.build_dataflow_config import DataflowBuildConfig, VerificationStepType
from finn.builder.build_dataflow_steps import register_build_dataflow_step, verify_step
from finn.transformation.streamline.absorb import AbsorbAddIntoMultiThreshold, AbsorbConsecutiveTransposes, \
    AbsorbMulIntoMultiThreshold, AbsorbTransposeIntoMultiThreshold
from finn.transformation.streamline.collapse_repeated import CollapseRepeatedAdd, CollapseRepeatedMul
from finn.transformation.streamline.reorder import MakeMaxPoolNHWC, MoveAddPastMul, MoveAffinePastJoinConcat, \
    MoveTransposePastEltwise
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from finn.transformation.streamline.streamline_plus import StreamlinePlus
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.composed import ComposedTransformation
from qonnx.transformation.general import GiveUniqueNodeNames
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

from psa_finn.build_configs.config_check import fpga_part_of, target_cycles_per_frame
from psa_finn.build_configs.finn_shims import vivado_available
from psa_finn.common.atomic_files import write_json_atomic
from psa_finn.common.cli_errors import BadInput
from psa_finn.dataflow_sim.fifo_insertion import insert_sized_fifos
from psa_finn.dataflow_sim.fifo_sizing import FIFO_SIZING_REPORT, DataflowDeadlock
from psa_finn.dataflow_sim.stream_models import NoStreamModel
from psa_finn.transforms.absorb_into_multithreshold import AbsorbAffineIntoMultiThreshold
from psa_finn.transforms.absorb_into_per_channel_lut import AbsorbAffineIntoPerChannelLUT, \
    AbsorbTransposeIntoPerChannelLUT
from psa_finn.transforms.scales_past_concat import MoveScalesPastConcat
from psa_finn.transforms.clamp_folding import ClampFoldingToDivisors
from psa_finn.transforms.compose_thresholds import ComposeConsecutiveThresholds
from psa_finn.transforms.conv_bias_quant_shape import ConvBiasQuantScalarsAsVectors
from psa_finn.transforms.convert_to_hw_integer_requant import InferIntegerRequantLayer
from psa_finn.transforms.convert_to_hw_kan_linear import FoldKANLinear, InferKANLinearLayer, is_kan_linear_layer
from psa_finn.transforms.convert_to_hw_per_channel_lut import InferPerChannelLUTLayer
from psa_finn.transforms.expand_initializer_rank import ExpandInitializerRank
from psa_finn.transforms.fan_out_as_matmul import FanOutAsMatMul
from psa_finn.transforms.fixed_point import transform_to_fixed_point
from psa_finn.transforms.fold_channel_layers import FoldChannelLayers, is_channel_layer
from psa_finn.transforms.fold_shuffles import FoldShuffles
from psa_finn.transforms.host_output_dequant import MoveOutputDequantToHost
from psa_finn.transforms.identity_requantizers import RemoveIdentityRequantizers
from psa_finn.transforms.lean_composed import apply_lean
from psa_finn.transforms.lower_and_report import lower_and_report
from psa_finn.transforms.lower_kan_linear import LowerKANLinear
from psa_finn.transforms.requantize_after_shape_ops import RequantizeAfterShapeOps
from psa_finn.transforms.multithreshold_channels_last import SetMultiThresholdChannelsLast
from psa_finn.transforms.refold_mvaus_by_resources import RefoldMVAUsByResources
from psa_finn.transforms.round_half_even_thresholds import RoundHalfEvenThresholds
from psa_finn.transforms.token_mean_to_global_acc_pool import ConvertTokenMeanToGlobalAccPool
from psa_finn.transforms.transpose_past_eltwise import MoveTransposePastChannelwiseEltwise
from psa_finn.transforms.transpose_past_shared_threshold import MoveTransposePastSharedThreshold

LOWERING_REPORT = "lowering_report.json"
FIFO_SIZING_FRAMES = 4


def _has_op(model, op_type):
    return any(node.op_type == op_type for node in model.graph.node)


def _transform(model, *transformations):
    """Apply each transformation in turn to its fixed point (capped)."""
    for transformation in transformations:
        model = transform_to_fixed_point(model, transformation)
    return model


@register_build_dataflow_step()
def step_lower_quantized_functions(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """Lower every KANLinear layer to integer edge tables (KANLUT) and every quantized function (LerpPSA, GELU, SiLU,
    ... between Quant nodes; mode auto: MultiThreshold when every channel rises, else PerChannelLUT) and write the
    lowering report (report/lowering_report.json); a lowered model passes unchanged.
    Quantized Conv biases get the parameter shapes step_qonnx_to_finn can reshape."""
    model = _transform(model, InferShapes(), ConvBiasQuantScalarsAsVectors(), RequantizeAfterShapeOps(),
                       FanOutAsMatMul(), LowerKANLinear(), InferShapes())
    model, _, _ = lower_and_report(model, "auto", cfg.get_report_directory() / LOWERING_REPORT)
    return model


def _with_luts(composed, round_ties):
    """A FINN streamlining list (ComposedTransformation) with the LUT-aware parts in place, nested lists too.

    `round_ties`: RoundAndClipThresholds becomes RoundHalfEvenThresholds (ties half-to-even, nothing rounded yet).
    MoveTransposePastEltwise leaves scalars to MoveScalarLinearPastInvariants (transforms.transpose_past_eltwise).
    A Concat of differently scaled integers gets its scales moved past it first
    (transforms.scales_past_concat), which finn's Concat moves leave.
    """
    return ComposedTransformation([part for t in composed.transformations for part in _lut_aware(t, round_ties)])


def _lut_aware(transformation, round_ties):
    """What takes the place of one part of a streamlining list."""
    if isinstance(transformation, ComposedTransformation):
        return [_with_luts(transformation, round_ties)]
    if isinstance(transformation, RoundAndClipThresholds) and round_ties:
        return [RoundHalfEvenThresholds()]
    if isinstance(transformation, AbsorbAddIntoMultiThreshold):
        return [AbsorbAffineIntoMultiThreshold("Add"), AbsorbAffineIntoPerChannelLUT()]
    if isinstance(transformation, AbsorbMulIntoMultiThreshold):
        return [AbsorbAffineIntoMultiThreshold("Mul"), AbsorbAffineIntoPerChannelLUT()]
    if isinstance(transformation, AbsorbTransposeIntoMultiThreshold):
        return [transformation, AbsorbTransposeIntoPerChannelLUT()]
    if isinstance(transformation, MoveTransposePastEltwise):
        return [MoveTransposePastChannelwiseEltwise()]
    if isinstance(transformation, MoveAffinePastJoinConcat):
        return [MoveScalesPastConcat(), transformation]
    return [transformation]


def _pattern_rewrites(round_ties):
    """The rewrites after streamlining (each acts only where its pattern matches), composition and rounding last."""
    rewrites = [MoveTransposePastSharedThreshold(), MoveAddPastMul(), CollapseRepeatedMul(), CollapseRepeatedAdd(),
                AbsorbAffineIntoMultiThreshold("Add"), AbsorbAffineIntoMultiThreshold("Mul"),
                AbsorbAffineIntoPerChannelLUT(), ConvertTokenMeanToGlobalAccPool()]
    if round_ties:
        return ComposedTransformation(rewrites + [RoundHalfEvenThresholds()])
    return ComposedTransformation(rewrites + [ComposeConsecutiveThresholds(), RoundAndClipThresholds()])


def _lower_convolutions(model):
    """Convolutions -> Im2Col + MatMul, pooling to NHWC, transposes absorbed and cancelled (as stock
    step_streamline does it), transposes moved past PerChannelLUTs too."""
    return _transform(model, LowerConvsToMatMul(), MakeMaxPoolNHWC(), AbsorbTransposeIntoMultiThreshold(),
                      AbsorbTransposeIntoPerChannelLUT(), MakeMaxPoolNHWC(), AbsorbConsecutiveTransposes())


@register_build_dataflow_step()
def step_streamline_with_luts(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """Streamline to integer, channels-last layers, learnable functions (MultiThreshold or PerChannelLUT) included.

    Elementwise initializers first get the full rank (finn's MoveTransposePastEltwise fails on lower-rank ones).
    With STREAMLINED_PYTHON in cfg.verify_steps the result is verified as after stock step_streamline.
    """
    model = _transform(model, ExpandInitializerRank())
    streamline = _with_luts(StreamlinePlus(), round_ties=True)
    model = apply_lean(model, streamline)
    if _has_op(model, "Conv"):
        model = apply_lean(_lower_convolutions(model), streamline)
    model = apply_lean(model, _pattern_rewrites(round_ties=True))
    model = apply_lean(model, _pattern_rewrites(round_ties=False))
    model = _transform(model, InferDataLayouts(), SetMultiThresholdChannelsLast(), InferDataLayouts(),
                       GiveUniqueNodeNames())
    if VerificationStepType.STREAMLINED_PYTHON in (cfg.verify_steps or []):
        verify_step(model, cfg, "streamlined_python", need_parent=False)
    return model


@register_build_dataflow_step()
def step_convert_luts_to_hw(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """PerChannelLUT -> the PerChannelLUT HW layer (channels last), KANLUT -> the KANLinear HW layer; before stock
    step_convert_to_hw."""
    if _has_op(model, "PerChannelLUT"):
        model = _transform(model, InferPerChannelLUTLayer())
    if _has_op(model, "KANLUT"):
        model = _transform(model, InferKANLinearLayer())
    return model


@register_build_dataflow_step()
def step_convert_requantizers_to_hw(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """Exact uniform MultiThresholds (>= 3 output bits) -> the IntegerRequant HW layer; before stock
    step_convert_to_hw, which turns the remaining MultiThresholds into Thresholding layers."""
    if not _has_op(model, "MultiThreshold"):
        return model
    return _transform(model, InferIntegerRequantLayer())


@register_build_dataflow_step()
def step_output_dequant_to_host(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """After stock step_convert_to_hw: the trailing output dequantisation layers become host-side Mul/Add again."""
    return _transform(model, MoveOutputDequantToHost(), InferShapes(), InferDataTypes())


@register_build_dataflow_step()
def step_remove_identity_requantizers(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """After stock step_minimize_bit_width: bypass the requantizer layers that are the identity on their input type."""
    return _transform(model, RemoveIdentityRequantizers())


@register_build_dataflow_step()
def step_fold_lut_layers(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """PE of every PerChannelLUT and IntegerRequant layer: the smallest that meets the target cycles; SIMD x PE of
    every KANLinear layer: the least parallel pair that meets it (before SetFolding)."""
    target = target_cycles_per_frame(cfg)
    if target is None:
        return model
    if any(is_channel_layer(n) for n in model.graph.node):
        model = _transform(model, FoldChannelLayers(target))
    if any(is_kan_linear_layer(n) for n in model.graph.node):
        model = _transform(model, FoldKANLinear(target, fpga_part_of(cfg)))
    return model


@register_build_dataflow_step()
def step_fold_shuffles(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """SIMD of every generic Shuffle (token-mixer transpose): the smallest that meets the target cycles."""
    target = target_cycles_per_frame(cfg)
    if target is None:
        return model
    return _transform(model, FoldShuffles(target))


@register_build_dataflow_step()
def step_refold_mvaus_by_resources(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """(PE, SIMD) of every MVAU: the cheapest pair by psa-finn's resource model that is no slower, no wider and
    on no more DSPs than SetFolding's (after step_target_fps_parallelization)."""
    return _transform(model, RefoldMVAUsByResources(fpga_part_of(cfg)))


@register_build_dataflow_step()
def step_clamp_folding(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """Lower each PE/SIMD to the largest value <= the configured one that divides the layer's dimensions."""
    return _transform(model, ClampFoldingToDivisors())


@register_build_dataflow_step()
def step_size_fifos_by_simulation(model: ModelWrapper, cfg: DataflowBuildConfig) -> ModelWrapper:
    """FIFO depths by cycle simulation instead of xsim (see the module docstring and docs/fifo_sizing.md)."""
    from finn.builder.build_dataflow_steps import step_hw_codegen, step_hw_ipgen

    try:
        model, record = insert_sized_fifos(model, fpga_part_of(cfg), cfg.synth_clk_period_ns,
                                           FIFO_SIZING_FRAMES, cfg.large_fifo_mem_style.value)
    except (NoStreamModel, DataflowDeadlock) as err:
        raise BadInput(f"step_size_fifos_by_simulation: {err}") from err
    write_json_atomic(cfg.get_report_directory() / FIFO_SIZING_REPORT, record)
    if not record["deadlock_free"]:
        raise BadInput(f"step_size_fifos_by_simulation: the sized design deadlocks in simulation "
                       f"({', '.join(record['waiting'])} wait); report/{FIFO_SIZING_REPORT}")
    model = step_hw_codegen(model, cfg)
    if vivado_available():
        model = step_hw_ipgen(model, cfg)
    return model
