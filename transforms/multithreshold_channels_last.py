"""MultiThreshold nodes after streamlining: channels-last wherever the thresholds allow it.

FINN's QONNX-to-FINN conversion copies a MultiThreshold's `data_layout` from the layout annotation of its input
tensor. Behind a Transpose (the ResMLP token mixer works on [N, C, T]) that annotation reads "NCW", though a
per-tensor quantizer's one shared threshold row applies to every axis alike, and the hardware layer thresholds the
last axis. `SetMultiThresholdChannelsLast` sets the channels-last layout of the input rank ("NC", "NWC", "NHWC")
on every MultiThreshold with one shared row (except on a tensor annotated NCHW, such as a CNN's image input, which
finn's InferThresholdingLayer wraps in transposes), points per-channel thresholds that do not fit their layout's
channel axis at the last axis when they fit that one (finn's AbsorbAddIntoMultiThreshold guesses a constant's axis
from its rank and leaves data_layout as it was), and refuses per-channel thresholds on a channel axis that is not the
last one, except NCHW, which finn's InferThresholdingLayer wraps in transposes.
"""

import qonnx.core.data_layout as DataLayout
from qonnx.transformation.base import Transformation

from psa_finn.transforms.channel_axes import multithreshold_channel_axis, set_multithreshold_channel_axis

CHANNELS_FIRST_CONVERTED_BY_FINN = 4


class SetMultiThresholdChannelsLast(Transformation):
    """Channels-last data_layout for shared-threshold MultiThresholds; a clear error for unconvertible ones."""

    def apply(self, model):
        graph_modified = False
        for node in model.graph.node:
            if node.op_type != "MultiThreshold":
                continue
            shape = model.get_tensor_shape(node.input[0])
            thresholds = model.get_initializer(node.input[1])
            if shape is None or thresholds is None or len(shape) < 2:
                continue
            axis = multithreshold_channel_axis(model, node)
            rows = thresholds.shape[0]
            if rows == 1:
                target = 1 if model.get_tensor_layout(node.input[0]) == DataLayout.NCHW else len(shape) - 1
                if axis != target:
                    graph_modified |= set_multithreshold_channel_axis(model, node, target)
                continue
            if rows != shape[axis]:
                if rows != shape[-1]:
                    raise ValueError(f"MultiThreshold {node.name}: {rows} threshold rows match neither axis {axis} "
                                     f"(its data_layout's channel axis) nor the last axis of input {shape}")
                graph_modified |= set_multithreshold_channel_axis(model, node, len(shape) - 1)
                continue
            if axis != len(shape) - 1 and not (len(shape) == CHANNELS_FIRST_CONVERTED_BY_FINN and axis == 1):
                raise ValueError(f"MultiThreshold {node.name}: per-channel thresholds on axis {axis} of input {shape}; "
                                 f"the hardware layer thresholds the last axis: the graph is not channels-last here")
        return model, graph_modified
