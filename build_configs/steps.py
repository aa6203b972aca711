"""psa-finn's custom build steps, each a finn-plus step `(model, cfg) -> model`, named in the build configs.

The ResMLP needs these things the stock estimate flow lacks (shared ARCHITECTURE.md, "what made the whole network
map to HW layers"):

- step_lower_lerp_psa: every quantized function of an exported model (LerpPSA, GELU, SiLU, ... between Quant nodes)
  is lowered first (transforms.lower_quantized_functions); a lowered model passes unchanged.
- step_streamline_resmlp: elementwise initializers brought to full rank (transforms.expand_initializer_rank), then
  FINN+'s StreamlinePlus (the stock Streamline cannot move the residual quantizer's scale past forks and Adds), run
  through transforms.lean_composed (3x less CPU, same graph), then the ResMLP fix-ups:
  token-mixer transposes moved behind shared-threshold quantizers, ReduceMean over tokens -> GlobalAccPool,
  a monotone table's MultiThreshold merged into the requantizer before it, MultiThreshold layouts reset to
  channels-last. Quantizer thresholds round ties half-to-even like the QONNX Quant
  (transforms.round_half_even_thresholds): until then no threshold is rounded to an integer (RoundAndClipThresholds
  would erase which thresholds are ties) or composed (the composed thresholds' integer ends would look like ties).
- step_convert_to_hw_resmlp: PerChannelLUT nodes -> the PerChannelLUT HW layer, then the stock conversion, with the
  output dequantisation kept on the host.
- step_fold_lut_layers, step_fold_shuffles: fold the layers SetFolding does not know, BEFORE
  step_target_fps_parallelization, so its two-pass relaxation does not slow everything to their unfolded rate.
- step_clamp_folding: a fixed folding config (PE=SIMD=16) made legal for layers whose dimensions 16 does not divide.

Import `build_configs.finn_shims` and call `boot_finn` before importing this module.
"""

import psa_finn.custom_ops  # noqa: F401  (registers LerpPSA and PerChannelLUT with qonnx)
import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the PerChannelLUT HW layer with qonnx and finn-plus)
from finn.builder.build_dataflow_steps import step_convert_to_hw
from finn.transformation.streamline.absorb import AbsorbAddIntoMultiThreshold, AbsorbMulIntoMultiThreshold
from finn.transformation.streamline.collapse_repeated import CollapseRepeatedAdd, CollapseRepeatedMul
from finn.transformation.streamline.reorder import MoveAddPastMul
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from finn.transformation.streamline.streamline_plus import StreamlinePlus
from qonnx.transformation.composed import ComposedTransformation
from qonnx.transformation.general import GiveUniqueNodeNames
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from psa_finn.common.atomic_files import write_json_atomic
from psa_finn.transforms.clamp_folding import ClampFoldingToDivisors
from psa_finn.transforms.cli import lowering_document
from psa_finn.transforms.compose_thresholds import ComposeConsecutiveThresholds
from psa_finn.transforms.convert_to_hw_per_channel_lut import FoldPerChannelLUT, InferPerChannelLUTLayer
from psa_finn.transforms.expand_initializer_rank import ExpandInitializerRank
from psa_finn.transforms.fold_shuffles import FoldShuffles
from psa_finn.transforms.host_output_dequant import attach_host_output_dequant, split_host_output_dequant
from psa_finn.transforms.lean_composed import apply_lean
from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions
from psa_finn.transforms.multithreshold_channels_last import SetMultiThresholdChannelsLast
from psa_finn.transforms.round_half_even_thresholds import RoundHalfEvenThresholds
from psa_finn.transforms.token_mean_to_global_acc_pool import ConvertTokenMeanToGlobalAccPool
from psa_finn.transforms.transpose_past_shared_threshold import MoveTransposePastSharedThreshold

LOWERING_REPORT = "lowering_report.json"


def _has_op(model, op_type):
    return any(node.op_type == op_type for node in model.graph.node)


def step_lower_lerp_psa(model, cfg):
    """Lower every quantized function (LerpPSA, GELU, SiLU, ... between Quant nodes; mode auto: MultiThreshold when
    every channel rises, else PerChannelLUT) and write the lowering report; a lowered model passes unchanged."""
    model, report = lower_quantized_functions(model.transform(InferShapes()), mode="auto")
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    if report:
        write_json_atomic(cfg.get_report_directory() / LOWERING_REPORT, lowering_document(report, "auto"))
    return model


def _round_half_even(transformation):
    """The transformation tree with RoundHalfEvenThresholds in place of every RoundAndClipThresholds."""
    if isinstance(transformation, RoundAndClipThresholds):
        return RoundHalfEvenThresholds()
    if isinstance(transformation, ComposedTransformation):
        return ComposedTransformation([_round_half_even(t) for t in transformation.transformations])
    return transformation


def _resmlp_fixups():
    """The ResMLP fix-ups after StreamlinePlus, ending with threshold composition and rounding."""
    return [
        MoveTransposePastSharedThreshold(),
        MoveAddPastMul(),
        CollapseRepeatedMul(),
        CollapseRepeatedAdd(),
        AbsorbAddIntoMultiThreshold(),
        AbsorbMulIntoMultiThreshold(),
        ConvertTokenMeanToGlobalAccPool(),
        ComposeConsecutiveThresholds(),
        RoundAndClipThresholds(),
    ]


def step_streamline_resmlp(model, cfg):
    """StreamlinePlus (tidying only after changes), then the ResMLP fix-ups (cheap, to a fixed point).

    Both first run with the quantizer ties made half-to-even in place of any rounding or composing of thresholds;
    the last pass composes and rounds. Elementwise initializers first get the full rank (older exports hold rank-1
    per-channel ones, on which finn's MoveTransposePastEltwise fails).
    """
    model = model.transform(ExpandInitializerRank())
    model = apply_lean(model, _round_half_even(StreamlinePlus()))
    model = model.transform(ComposedTransformation(
        [_round_half_even(t) for t in _resmlp_fixups() if not isinstance(t, ComposeConsecutiveThresholds)]))
    model = model.transform(ComposedTransformation(_resmlp_fixups()))
    model = model.transform(SetMultiThresholdChannelsLast())
    model = model.transform(InferDataLayouts())
    model = model.transform(GiveUniqueNodeNames())
    return model


def step_convert_to_hw_resmlp(model, cfg):
    """PerChannelLUT -> HW layer, then the stock step_convert_to_hw on everything but the host-side output dequant."""
    model = model.transform(SetMultiThresholdChannelsLast())
    if _has_op(model, "PerChannelLUT"):
        model = model.transform(InferPerChannelLUTLayer())
    model, host_tail = split_host_output_dequant(model)
    model = step_convert_to_hw(model, cfg)
    model = attach_host_output_dequant(model, host_tail)
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    return model


def step_fold_lut_layers(model, cfg):
    """PE of every PerChannelLUT layer: the smallest that meets the target cycles (before SetFolding)."""
    target = cfg._resolve_cycles_per_frame()
    if target is None or not any(n.op_type.startswith("PerChannelLUT") for n in model.graph.node):
        return model
    return model.transform(FoldPerChannelLUT(target))


def step_fold_shuffles(model, cfg):
    """SIMD of every generic Shuffle (token-mixer transpose): the smallest that meets the target cycles."""
    target = cfg._resolve_cycles_per_frame()
    if target is None:
        return model
    return model.transform(FoldShuffles(target))


def step_clamp_folding(model, cfg):
    """Lower each PE/SIMD to the largest value <= the configured one that divides the layer's dimensions."""
    return model.transform(ClampFoldingToDivisors())

