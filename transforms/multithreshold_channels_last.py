"""MultiThreshold nodes of a channels-last graph: thresholds always refer to the last axis.

FINN's QONNX-to-FINN conversion copies a MultiThreshold's `data_layout` from the layout annotation of its input
tensor. Behind a Transpose (the ResMLP token mixer works on [N, C, T]) that annotation reads "NCW", so python
execution would threshold along axis 1 although the thresholds (one row per channel of the last axis, or one
shared row) were computed for the last axis, and asserts on the shape. `SetMultiThresholdChannelsLast` resets
`data_layout` to the channels-last layout of the input rank ("NC", "NWC", "NHWC").
"""

from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

CHANNELS_LAST_LAYOUT = {2: "NC", 3: "NWC", 4: "NHWC"}


class SetMultiThresholdChannelsLast(Transformation):
    """Set data_layout of every MultiThreshold to the channels-last layout of its input's rank."""

    def apply(self, model):
        graph_modified = False
        for node in model.graph.node:
            if node.op_type != "MultiThreshold":
                continue
            shape = model.get_tensor_shape(node.input[0])
            layout = CHANNELS_LAST_LAYOUT.get(len(shape)) if shape is not None else None
            if layout is None:
                continue
            thresholds = model.get_initializer(node.input[1])
            if thresholds is not None and thresholds.shape[0] not in (1, shape[-1]):
                raise ValueError(f"MultiThreshold {node.name}: {thresholds.shape[0]} threshold rows match neither "
                                 f"one shared row nor the last axis ({shape[-1]}) of input {shape}; the graph is "
                                 f"not channels-last here")
            op = getCustomOp(node)
            if op.get_nodeattr("data_layout") != layout:
                op.set_nodeattr("data_layout", layout)
                graph_modified = True
        return model, graph_modified
