"""RequantizeAfterShapeOps: `Quant -> shape ops -> LerpPSA | KANLinear` gets its input quantizer again right before
the function, `Quant -> shape ops -> Quant' -> LerpPSA`, so each learnable function reads a quantizer directly (the
`Quant -> LerpPSA -> Quant` the lowering matches).

A QuantTensor that a user transposes, permutes, reshapes, flattens or max-pools before QuantLerpPSA, QuantBSpline or
QuantKANLinear (the layer takes it as already quantized) exports as `Quant -> Transpose -> LerpPSA`. Every op of
`custom_ops.domain.SHAPE_OPS` keeps the values on the quantizer's grid: Transpose, Reshape, Flatten, Squeeze and
Unsqueeze move them, Expand, Tile and a Concat of one tensor repeat them (a per-tensor scale and zero point stay as
they are; a Transpose permutes per-channel ones with the values) and MaxPool picks one of a window's values (the
parameters must be constant over its spatial axes).
`Quant'` has the parameters of the Quant as they apply after the shape ops, so it returns every value it reads
unchanged (`round(v / s + z)` is v's own code): the graph computes the same, bit for bit. FINN makes `Quant'` a
requantizer of the codes that `transforms.identity_requantizers` removes once it is seen to be the identity. A
per-channel quantizer before another shape op than a Transpose or MaxPool, or one with non-constant parameters, gets
no `Quant'` (the function stays unmatched and the lowering report says so).
"""

import numpy as np
from onnx import helper
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, LERP_PSA_OP, is_op, is_quant_node, shape_op_source

SCALE_AND_ZERO_POINT = (1, 2)  # Quant inputs: value, scale, zero point, bit width
POOLED_AXES_FROM = 2  # MaxPool's spatial axes: [N, C, spatial...]


def _moved_parameter(shape_op, value, rank):
    """Quant parameter `value` as it applies after `shape_op` on a rank-`rank` tensor; None where it cannot move."""
    if value.size == 1:
        return value
    full = value.reshape((1,) * (rank - value.ndim) + value.shape)
    if shape_op.op_type == "Transpose":
        perm = get_by_name(shape_op.attribute, "perm")
        return np.transpose(full, None if perm is None else list(perm.ints))
    if shape_op.op_type == "MaxPool" and all(size == 1 for size in full.shape[POOLED_AXES_FROM:]):
        return value
    return None


def quant_before_shape_ops(model, tensor):
    """(Quant, [shape ops in data order]) when `tensor` comes from a Quant through SHAPE_OPS only (at least one);
    else None."""
    shape_ops = []
    producer = model.find_producer(tensor)
    while shape_op_source(producer) is not None:
        shape_ops.insert(0, producer)
        producer = model.find_producer(shape_op_source(producer))
    return (producer, shape_ops) if shape_ops and is_quant_node(producer) else None


def _parameters_after(model, quant, shape_ops):
    """[scale, zero point] tensor names for a Quant after `shape_ops` (new initializers where they change); None
    where a parameter cannot move through them."""
    names = []
    for position in SCALE_AND_ZERO_POINT:
        original = model.get_initializer(quant.input[position])
        if original is None:
            return None
        value = original
        for shape_op in shape_ops:
            shape = model.get_tensor_shape(shape_op.input[0])
            value = None if shape is None else _moved_parameter(shape_op, value, len(shape))
            if value is None:
                return None
        name = quant.input[position]
        if value is not original:
            name = model.make_new_valueinfo_name()
            model.set_initializer(name, value.astype(original.dtype))
        names.append(name)
    return names


class RequantizeAfterShapeOps(Transformation):
    """Every LerpPSA / KANLinear whose input comes from a Quant through shape ops gets that Quant again before it;
    see the module docstring. Reaches its fixed point in one pass."""

    def apply(self, model):
        graph = model.graph
        changed = False
        for node in list(graph.node):
            if not (is_op(node, LERP_PSA_OP) or is_op(node, KAN_LINEAR_OP)):
                continue
            found = quant_before_shape_ops(model, node.input[0])
            if found is None:
                continue
            quant, shape_ops = found
            parameters = _parameters_after(model, quant, shape_ops)
            if parameters is None:
                continue
            requantized = model.make_new_valueinfo_name()
            model.set_tensor_shape(requantized, model.get_tensor_shape(node.input[0]))
            requant = helper.make_node(quant.op_type, [node.input[0], *parameters, quant.input[3]], [requantized],
                                       name=f"{quant.name}_before_{node.name}", domain=quant.domain)
            requant.attribute.extend(quant.attribute)
            node.input[0] = requantized
            graph.node.insert(list(graph.node).index(node), requant)
            changed = True
        return model, changed
