"""Which axis a per-channel constant or a MultiThreshold works along (a PerChannelLUT's: custom_ops.domain).

FINN's absorb transformations guess a constant's channel axis from its rank (2: NC, 3: NWC, 4: NCHW), whatever
the layout of the tensor it scales; a MultiThreshold's thresholds follow its `data_layout` attribute. The
streamlining here decides by what the constant actually does instead: `varying_axis` is the one axis along which
it is not constant, and a node absorbs it only along its own channel axis.
"""

import numpy as np
import qonnx.core.data_layout as DataLayout
from qonnx.custom_op.registry import getCustomOp

# data_layout of a channel axis in a tensor of a given rank (qonnx's layouts, which FINN's MultiThreshold understands)
LAYOUT_OF_CHANNEL_AXIS = {(len(layout), layout.index("C")): "".join(layout)
                          for layout in (DataLayout.NC, DataLayout.NCW, DataLayout.NWC, DataLayout.NCHW,
                                         DataLayout.NHWC)}
# FINN's default when a MultiThreshold has no data_layout (qonnx MultiThreshold.execute_node)
DEFAULT_LAYOUT_OF_RANK = {2: "".join(DataLayout.NC), 3: "".join(DataLayout.NWC), 4: "".join(DataLayout.NCHW)}
SCALAR = "scalar"


def varying_axis(value, rank):
    """SCALAR for one value, the axis (0..rank-1) along which `value` (broadcast to `rank`) varies, else None."""
    value = np.asarray(value)
    if value.size == 1:
        return SCALAR
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    axes = [axis for axis, size in enumerate(shape) if size > 1]
    return axes[0] if len(axes) == 1 else None


def multithreshold_channel_axis(model, node):
    """The axis a MultiThreshold's threshold rows index: from its data_layout (FINN's default by rank without)."""
    rank = len(model.get_tensor_shape(node.input[0]))
    layout = getCustomOp(node).get_nodeattr("data_layout") or DEFAULT_LAYOUT_OF_RANK.get(rank)
    return layout.index("C") if layout and "C" in layout else 1


def set_multithreshold_channel_axis(model, node, axis):
    """Point a MultiThreshold's data_layout at `axis`; False when no layout of that rank has C there."""
    rank = len(model.get_tensor_shape(node.input[0]))
    layout = LAYOUT_OF_CHANNEL_AXIS.get((rank, axis))
    if layout is None:
        return False
    getCustomOp(node).set_nodeattr("data_layout", layout)
    return True
