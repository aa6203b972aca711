"""Conversion of the lowered PerChannelLUT node into the finn-plus hardware layer, and its folding.

``InferPerChannelLUTLayer`` turns ``custom_ops.PerChannelLUT`` (integer codes -> per-channel table) into the
``PerChannelLUT`` HWCustomOp in domain ``finn.custom_op.fpgadataflow`` (PE=1, ram_style auto), ready for
``SpecializeLayers``. finn-plus's ``SetFolding`` does not know the layer, and its two-pass relaxation would slow the
whole design down to an unfolded LUT layer, so ``FoldPerChannelLUT`` sets PE for a cycles-per-frame target and is
meant to run BEFORE ``step_target_fps_parallelization``.
"""

import numpy as np
from finn.transformation.fpgadataflow.set_folding import divisors
from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the hardware layer)
from psa_finn.custom_ops.domain import HW_DOMAIN, PER_CHANNEL_LUT_OP, channel_axis_of, is_hw_node, is_op
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT


def is_per_channel_lut_layer(node):
    """True for PerChannelLUT hardware nodes, specialised or not."""
    return is_hw_node(node) and isinstance(getCustomOp(node), PerChannelLUT)


class InferPerChannelLUTLayer(Transformation):
    """Replace every lowered ``custom_ops.PerChannelLUT`` node by the ``PerChannelLUT`` hardware layer.

    Needs the table as an initializer (one row per channel, or one shared row, repeated here) and a known input
    shape ``[..., C]`` with the channels last; leaves PE=1 (fold afterwards with
    ``FoldPerChannelLUT``) and keeps tensor names, so surrounding nodes are untouched.
    """

    def apply(self, model):
        """Convert all matching nodes in one pass."""
        graph = model.graph
        graph_modified = False
        for index, node in enumerate(list(graph.node)):
            if not is_op(node, PER_CHANNEL_LUT_OP):
                continue
            lowered = getCustomOp(node)
            table = model.get_initializer(node.input[1])
            if table is None:
                raise ValueError(
                    f"{node.name}: the table input {node.input[1]} is not an initializer; the hardware layer "
                    "embeds the table, so fold constants (qonnx FoldConstants) before InferPerChannelLUTLayer"
                )
            shape = model.get_tensor_shape(node.input[0])
            if shape is None or len(shape) < 2:
                raise ValueError(
                    f"{node.name}: input {node.input[0]} needs a known shape [..., C] (got {shape}); run InferShapes"
                )
            channels = shape[-1]
            if table.ndim == 2 and table.shape[0] > 1 and channel_axis_of(node, len(shape)) != len(shape) - 1:
                raise ValueError(
                    f"{node.name}: channel_axis {channel_axis_of(node)} of input {shape} is not the last axis; the "
                    "hardware layer is channels-last, so streamline the graph to channels-last first"
                )
            if table.ndim != 2 or table.shape[0] not in (1, channels):
                raise ValueError(
                    f"{node.name}: table shape {table.shape} does not match the {channels} input channels"
                )
            if table.shape[0] == 1 and channels > 1:  # one shared row: the HW layer holds one row per channel
                table = np.repeat(table, channels, axis=0)
                model.set_initializer(node.input[1], table)
            hw_node = helper.make_node(
                "PerChannelLUT",
                [node.input[0], node.input[1]],
                [node.output[0]],
                domain=HW_DOMAIN,
                backend="fpgadataflow",
                name=node.name,
                NumChannels=channels,
                PE=1,
                inputDataType=lowered.get_nodeattr("inputDataType"),
                outputDataType=lowered.get_nodeattr("outputDataType"),
                numInputVectors=list(shape[:-1]),
                mode=lowered.get_nodeattr("mode"),
                ram_style="auto",
            )
            getCustomOp(hw_node).get_lane_tables(table)
            graph.node.insert(index, hw_node)
            graph.node.remove(node)
            graph_modified = True
        if graph_modified:
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
        return model, graph_modified


class FoldPerChannelLUT(Transformation):
    """Set PE of every PerChannelLUT hardware node to the smallest divisor of NumChannels that meets the target.

    ``target_cycles_per_frame`` is the clock cycles per frame the build targets (build_configs.config_check's
    ``target_cycles_per_frame``). A layer that misses the target even at PE=NumChannels gets PE=NumChannels.
    Idempotent, so ``model.transform`` stops after one pass.
    """

    def __init__(self, target_cycles_per_frame):
        """Remember the target (cycles per frame, > 0)."""
        super().__init__()
        if target_cycles_per_frame < 1:
            raise ValueError(f"target_cycles_per_frame must be positive, got {target_cycles_per_frame}")
        self.target_cycles_per_frame = target_cycles_per_frame

    def apply(self, model):
        """Fold each layer independently."""
        graph_modified = False
        for node in model.graph.node:
            if not is_per_channel_lut_layer(node):
                continue
            layer = getCustomOp(node)
            old_pe = layer.get_nodeattr("PE")
            for pe in divisors(layer.get_nodeattr("NumChannels")):
                layer.set_nodeattr("PE", pe)
                if layer.get_exp_cycles() <= self.target_cycles_per_frame:
                    break
            graph_modified |= layer.get_nodeattr("PE") != old_pe
        return model, graph_modified
