"""Move a Transpose from before to after a MultiThreshold whose thresholds are shared by all channels.

The ResMLP token mixer ends in `MatMul (over tokens) -> Mul/Add (per token) -> Transpose -> quantizer`. Streamlining
cannot absorb the per-token scale and bias into the quantizer's thresholds there: after the Transpose they vary along
axis 1, while thresholds are per channel of the last axis. A per-tensor quantizer's thresholds are one row shared by
every channel, so thresholding commutes with the Transpose. `MoveTransposePastSharedThreshold` rewrites

    x -> Transpose(perm) -> MultiThreshold(T with one row) -> y   into   x -> MultiThreshold(T) -> Transpose(perm) -> y

after which `AbsorbAddIntoMultiThreshold` / `AbsorbMulIntoMultiThreshold` fold the per-token affine into per-token
thresholds, and the MVAU that follows the quantizer is a plain integer layer.
"""

from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes


def move_transpose_past(model, transpose, node):
    """Rewire `x -> transpose -> node -> y` (node elementwise, unforked transpose) into `x -> node -> transpose -> y`.

    The new middle tensor takes x's shape and the datatype of y; the node is moved before the transpose in the list
    (as a copy: change the node before, not after, the call).
    """
    x, mid, y = transpose.input[0], transpose.output[0], node.output[0]
    node.input[0], node.output[0] = x, mid
    transpose.input[0], transpose.output[0] = mid, y
    model.set_tensor_shape(mid, model.get_tensor_shape(x))
    model.set_tensor_datatype(mid, model.get_tensor_datatype(y))
    nodes = model.graph.node
    nodes.remove(node)
    nodes.insert(list(nodes).index(transpose), node)


def transposes_and_consumers(model):
    """(transpose, the node it feeds) for every Transpose whose output feeds exactly one node."""
    for transpose in list(model.graph.node):
        if transpose.op_type == "Transpose" and not model.is_fork_node(transpose):
            consumer = model.find_consumer(transpose.output[0])
            if consumer is not None:
                yield transpose, consumer


class MoveTransposePastSharedThreshold(Transformation):
    """Swap Transpose -> MultiThreshold (one shared threshold row) into MultiThreshold -> Transpose."""

    def apply(self, model):
        graph_modified = False
        for transpose, mt in transposes_and_consumers(model):
            if mt.op_type != "MultiThreshold":
                continue
            thresholds = model.get_initializer(mt.input[1])
            if thresholds is None or thresholds.shape[0] != 1:
                continue
            move_transpose_past(model, transpose, mt)
            graph_modified = True
        if graph_modified:
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
        return model, graph_modified
