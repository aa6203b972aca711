"""MoveTransposePastChannelwiseEltwise: finn's MoveTransposePastEltwise without its scalar case at the graph's end.

`Transpose -> Mul|Add (constant c) -> y` becomes `Mul|Add (c transposed back) -> Transpose -> y`, as finn-plus's
MoveTransposePastEltwise (StreamlinePlus) does, but only where c varies (more than one element). finn's version also
moves a Transpose past a scalar Mul/Add, and StreamlinePlus' MoveScalarLinearPastInvariants moves that scalar back
past the Transpose: on a graph ending `... -> Transpose -> Mul(scalar)` (a token mixer that transposes back, any
model whose output is transposed after its dequantisation) nothing after it absorbs the Transpose and the two undo
each other forever. There, a scalar is left to MoveScalarLinearPastInvariants (it commutes with the Transpose either
way). Inside the graph the Transpose still moves past a scalar, so that it meets its inverse or a threshold that
absorbs it (a residual CNN keeps its channels-last layout, no shuffle layers).
"""

from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name

AFFINE_OPS = ("Add", "Mul")


def _movable_constant(model, transpose, successor):
    """The constant input name of `successor` (an Add/Mul after `transpose`), unless it is a scalar and `successor`
    writes a graph output."""
    others = [name for name in successor.input if name != transpose.output[0]]
    if len(others) != 1 or len(successor.input) != 2:
        return None
    value = model.get_initializer(others[0])
    if value is None:
        return None
    at_the_end = successor.output[0] in [output.name for output in model.graph.output]
    return others[0] if value.size > 1 or not at_the_end else None


class MoveTransposePastChannelwiseEltwise(Transformation):
    """Every `Transpose -> Add|Mul(constant)` -> `Add|Mul -> Transpose`, a scalar at the graph's end excepted (see the
    module docstring); one rewrite per pass."""

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type != "Transpose" or model.is_fork_node(node) or model.is_join_node(node):
                continue
            successors = model.find_direct_successors(node)
            if not successors or successors[0].op_type not in AFFINE_OPS:
                continue
            successor = successors[0]
            constant = _movable_constant(model, node, successor)
            value = None if constant is None else model.get_initializer(constant)
            rank = len(model.get_tensor_shape(node.output[0]) or ())
            if value is not None and value.size == 1:
                value = value.reshape([1] * rank)
            if value is None or value.ndim != rank:
                continue
            perm = get_by_name(node.attribute, "perm")
            perm = list(perm.ints) if perm is not None else list(reversed(range(value.ndim)))
            if len(model.find_consumers(constant)) > 1:
                constant = model.make_new_valueinfo_name()
            model.set_initializer(constant, value.transpose([perm.index(axis) for axis in range(len(perm))]))
            source, middle, output = node.input[0], node.output[0], successor.output[0]
            datatype = model.get_tensor_datatype(output)
            successor.input[:] = [source, constant]
            successor.output[0] = middle
            node.input[0], node.output[0] = middle, output
            model.set_tensor_shape(middle, model.get_tensor_shape(source))
            model.set_tensor_datatype(middle, datatype)
            graph = model.graph
            graph.node.remove(successor)
            graph.node.insert(list(graph.node).index(node), successor)
            return model, True
        return model, False
