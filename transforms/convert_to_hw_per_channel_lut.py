"""Conversion of the lowered PerChannelLUT node into the finn-plus hardware layer.

``InferPerChannelLUTLayer`` turns ``custom_ops.PerChannelLUT`` (integer codes -> per-channel table) into the
``PerChannelLUT`` HWCustomOp in domain ``finn.custom_op.fpgadataflow`` (PE=1, ram_style auto), ready for
``SpecializeLayers``; fold it with transforms.fold_channel_layers.
"""

import numpy as np
from onnx import helper
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the hardware layer)
from psa_finn.custom_ops.domain import HW_DOMAIN, PER_CHANNEL_LUT_OP, channel_axis_of, is_op
from psa_finn.custom_ops.fpgadataflow.embedded_table import embedded_table
from psa_finn.transforms.convert_to_hw_layer import ConvertToHWLayer


class InferPerChannelLUTLayer(ConvertToHWLayer):
    """Replace every lowered ``custom_ops.PerChannelLUT`` node by the ``PerChannelLUT`` hardware layer.

    Needs the table as an initializer (one row per channel, or one shared row, repeated here) and a known input
    shape ``[..., C]`` with the channels last; leaves PE=1 (fold afterwards with
    ``FoldChannelLayers``) and keeps tensor names, so surrounding nodes are untouched.
    """

    def matches(self, node):
        """The lowered PerChannelLUT nodes."""
        return is_op(node, PER_CHANNEL_LUT_OP)

    def hw_node(self, model, node):
        """The PerChannelLUT HW node (a shared table row repeated per channel; lane tables checked)."""
        lowered = getCustomOp(node)
        table = embedded_table(node, model)
        shape = self.known_input_shape(model, node, "[..., C]")
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
        return hw_node
