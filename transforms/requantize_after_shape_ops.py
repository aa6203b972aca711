"""RequantizeAfterShapeOps: `Quant -> shape ops -> LerpPSA | KANLinear` gets its input quantizer again right before
the function, `Quant -> shape ops -> Quant' -> LerpPSA`, so each learnable function reads a quantizer directly (the
`Quant -> LerpPSA -> Quant` the lowering matches).

A QuantTensor that a user transposes, permutes, reshapes, flattens or max-pools before QuantLerpPSA, QuantBSpline or
QuantKANLinear (the layer takes it as already quantized) exports as `Quant -> Transpose -> LerpPSA`. Every op of
`custom_ops.domain.SHAPE_OPS` keeps the values on the quantizer's grid: Transpose, Reshape, Flatten, Squeeze and
Unsqueeze move them, Expand, Tile and a Concat of one tensor repeat them (a per-tensor scale and zero point stay as
they are; a Transpose permutes per-channel ones with the values) and MaxPool picks one of a window's values (the
parameters must be constant over its spatial axes).
A per-channel scale moves with the values through a Transpose (permuted), a MaxPool (constant over the window) and
a Reshape, Flatten, Squeeze or Unsqueeze that keeps it on one axis (a CNN's [N, C, H, W] flattened to [N, C*H*W]:
each scale repeated H*W times); one that a reshape spreads over two axes (or onto the batch axis) raises a
ValueError naming the node and the fix.
`Quant'` has the parameters of the Quant as they apply after the shape ops, so it returns every value it reads
unchanged (`round(v / s + z)` is v's own code): the graph computes the same, bit for bit. FINN makes `Quant'` a
requantizer of the codes that `transforms.identity_requantizers` removes once it is seen to be the identity. A
quantizer with non-constant parameters gets no `Quant'` (the function stays unmatched and the lowering report says
so).
"""

import numpy as np
from onnx import helper
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, LERP_PSA_OP, is_op, is_quant_node, shape_op_source

SCALE_AND_ZERO_POINT = (1, 2)  # Quant inputs: value, scale, zero point, bit width
POOLED_AXES_FROM = 2  # MaxPool's spatial axes: [N, C, spatial...]
RESHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")  # the values in the same order, a new shape


def _compact(value):
    """`value` with every axis along which it is constant cut to size 1."""
    for axis in range(value.ndim):
        first = np.take(value, [0], axis=axis)
        if np.all(value == first):
            value = first
    return value


def _moved_parameter(model, shape_op, value):
    """Quant parameter `value` as it applies after `shape_op`; None where it cannot move: a MaxPool window would mix
    its values, or after a reshape it would vary along the batch axis or along more than one axis."""
    if value.size == 1:
        return value
    shape = model.get_tensor_shape(shape_op.input[0])
    if shape is None:
        return None
    full = value.reshape((1,) * (len(shape) - value.ndim) + value.shape)
    if shape_op.op_type == "Transpose":
        perm = get_by_name(shape_op.attribute, "perm")
        return np.transpose(full, None if perm is None else list(perm.ints))
    if shape_op.op_type == "MaxPool" and all(size == 1 for size in full.shape[POOLED_AXES_FROM:]):
        return value
    out_shape = model.get_tensor_shape(shape_op.output[0])
    if shape_op.op_type in RESHAPE_OPS and out_shape and np.prod(out_shape) == np.prod(shape) and shape[0] == 1:
        moved = _compact(np.broadcast_to(full, shape).reshape(out_shape))
        return moved if moved.shape[0] == 1 and sum(size > 1 for size in moved.shape) <= 1 else None
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


def _parameters_after(model, quant, shape_ops, where):
    """[scale, zero point] tensor names for a Quant after `shape_ops` (new initializers where they change); None
    where a parameter is not a constant or cannot be repeated; ValueError naming the shape op that a per-channel parameter cannot pass."""
    names = []
    for position in SCALE_AND_ZERO_POINT:
        original = model.get_initializer(quant.input[position])
        if original is None:
            return None
        value = original
        for shape_op in shape_ops:
            value = _moved_parameter(model, shape_op, value)
            if value is None and shape_op.op_type not in RESHAPE_OPS + ("MaxPool",):
                return None  # a repeat (Expand, Tile, Concat): FanOutAsMatMul's to rewrite
            if value is None:
                raise ValueError(
                    f"{where} reads Quant node '{quant.name}' through {shape_op.op_type} node '{shape_op.name}', "
                    f"which spreads that quantizer's per-channel scale over more than one axis of the function's "
                    f"input (or mixes it in a pooling window), so the function's input codes have no one channel "
                    f"axis; use a per-tensor quantizer before the {shape_op.op_type} (Brevitas' default "
                    f"QuantReLU / QuantIdentity, scaling_per_output_channel=False) or apply the function before it")
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
            parameters = _parameters_after(model, quant, shape_ops, f"{node.op_type} node '{node.name}'")
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
