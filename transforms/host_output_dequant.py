"""The output dequantisation (trailing Mul/Add by constants) stays on the host, off the dataflow partition.

After streamlining, the classifier's integer accumulators leave the last MVAU and a `Mul` (scale) and `Add` (bias)
by constants turn them into float logits. finn-plus's stock `step_convert_to_hw` maps those to float
ElementwiseMul/ElementwiseAdd hardware layers. `MoveOutputDequantToHost`, run after it, turns such trailing layers
back into ONNX Mul/Add nodes, which `step_create_dataflow_partition` leaves outside the partition like any host-side
post-processing. `host_output_dequant_nodes` lists the tail (either form).
"""

from onnx import helper
from qonnx.transformation.base import Transformation

from psa_finn.custom_ops.domain import is_hw_node

HW_ELEMENTWISE_OPS = {"ElementwiseMul": "Mul", "ElementwiseAdd": "Add"}


def _onnx_op_type(node):
    """"Mul" / "Add" for a Mul/Add node or its (unspecialised or specialised) hardware form, else None."""
    if node.op_type in ("Mul", "Add"):
        return node.op_type
    if is_hw_node(node):
        return HW_ELEMENTWISE_OPS.get(node.op_type.rsplit("_", 1)[0])
    return None


def _is_dequant(model, node):
    return _onnx_op_type(node) is not None and len(node.input) == 2 and \
        sum(model.get_initializer(name) is not None for name in node.input) == 1


def host_output_dequant_nodes(model):
    """Trailing Mul/Add-by-constant nodes between the graph outputs and the last non-dequant node, output first."""
    tail = []
    for out in model.graph.output:
        node = model.find_producer(out.name)
        while node is not None and _is_dequant(model, node) and not model.is_fork_node(node):
            tail.append(node)
            dynamic = [name for name in node.input if model.get_initializer(name) is None]
            node = model.find_producer(dynamic[0])
    return tail


class MoveOutputDequantToHost(Transformation):
    """Turn the trailing elementwise hardware layers by constants back into host-side ONNX Mul/Add nodes."""

    def apply(self, model):
        graph_modified = False
        for node in host_output_dequant_nodes(model):
            if node.op_type in ("Mul", "Add"):
                continue
            host = helper.make_node(_onnx_op_type(node), list(node.input), list(node.output), name=node.name)
            nodes = model.graph.node
            nodes.insert(list(nodes).index(node), host)
            nodes.remove(node)
            graph_modified = True
        return model, graph_modified
