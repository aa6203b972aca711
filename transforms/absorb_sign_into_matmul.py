"""Fold the signs of a per-input-channel +-scale Mul into the weights of the MatMul it feeds.

`x -> Mul(c) -> MatMul(W)` with `c[k] = s[k] * m` (signs s = +-1, one magnitude m) equals
`x -> Mul(m) -> MatMul(diag(s) W)`: the signs flip rows of W and the scalar m moves on through finn's
MoveScalarMulPastMatMul. Without it such a Mul stays in front of the MatMul, and finn's FactorOutMulSignMagnitude
(splits it into sign and magnitude) and CollapseRepeatedMul (joins them again) undo each other forever. The weight
datatype widens when a flipped weight leaves it (a non-narrow INTn's minimum).
"""

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.transformation.base import Transformation

from psa_finn.transforms.absorb_into_multithreshold import constant_operand
from psa_finn.transforms.channel_axes import varying_axis


def _widened(dtype, weights):
    """`dtype` when it holds every weight, else the smallest signed integer DataType that does."""
    if dtype.allowed(weights.min()) and dtype.allowed(weights.max()):
        return dtype
    low, high = weights.min(), weights.max()
    return DataType.get_smallest_possible(min(low, -high - 1))


def _own_initializer(model, node, index):
    """The name of node.input[index], renamed first when another node reads the same initializer."""
    name = node.input[index]
    if len(model.find_consumers(name)) > 1:
        node.input[index] = model.make_new_valueinfo_name()
        model.set_tensor_datatype(node.input[index], model.get_tensor_datatype(name))
    return node.input[index]


class AbsorbSignIntoMatMul(Transformation):
    """Mul by +-m per input channel before a MatMul: signs into the weight rows, a scalar Mul(m) left."""

    def apply(self, model):
        graph_modified = False
        for node in list(model.graph.node):
            if node.op_type != "Mul" or model.is_fork_node(node) or model.is_join_node(node):
                continue
            operand = constant_operand(model, node)
            matmul = model.find_consumer(node.output[0])
            if operand is None or matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != node.output[0]:
                continue
            source, scale = operand
            weights = model.get_initializer(matmul.input[1])
            shape = model.get_tensor_shape(source)
            if weights is None or weights.ndim != 2 or shape is None or not np.any(scale < 0):
                continue
            magnitude = np.abs(scale).reshape(-1)
            if varying_axis(scale, len(shape)) != len(shape) - 1 or not np.all(magnitude == magnitude[0]):
                continue
            flipped = (np.sign(scale).reshape(-1, 1) * weights).astype(np.float32)
            dtype = model.get_tensor_datatype(matmul.input[1])
            name = _own_initializer(model, matmul, 1)
            model.set_initializer(name, flipped)
            if dtype.is_integer():
                model.set_tensor_datatype(name, _widened(dtype, flipped))
            name = _own_initializer(model, node, 1 if node.input[0] == source else 0)
            model.set_initializer(name, np.array(magnitude[0], dtype=np.float32))
            graph_modified = True
        return model, graph_modified
