"""MoveScalesPastConcat: a Concat of differently scaled integer tensors, `Concat(x_1 * s_1, x_2 * s_2, ...)` (each
x_i of an integer datatype, each s_i a scalar; an x_i without a Mul has s_i = 1), becomes
`Concat(x_1, x_2, ...) * S`, S the per-channel constant holding s_i on x_i's channels along the Concat axis.

After the FINN conversion every quantizer is `MultiThreshold -> Mul(scale)`; `torch.cat` of two quantizers with
different scales becomes such a Concat. finn's MoveMulPastJoinConcat moves identical scalars or per-channel
constants only (and qonnx's RemoveIdentityOps drops a scale of 1 first), so the Concat stayed on float values and off
the hardware. Each output element is the same x times the same s before and after, so the graph computes the same,
bit for bit; the Concat then joins integer codes (a StreamingConcat) and S is absorbed by what follows (a
MultiThreshold's rows, a PerChannelLUT's input).

qonnx's InferDataTypes gives a Concat the datatype of its first input, so the joined integers must share one: every
x_i comes from a MultiThreshold (FINN's quantizer) whose `out_dtype` is widened to the smallest type holding all of
them (its codes are unchanged); a Concat with another integer producer of a narrower type is left as it is.
"""

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name


def _common_datatype(datatypes):
    """The smallest integer DataType holding every value of every one of `datatypes`."""
    low, high = min(dt.min() for dt in datatypes), max(dt.max() for dt in datatypes)
    if low >= 0:
        return DataType.get_smallest_possible(high)
    return DataType.get_smallest_possible(min(low, -high - 1))


def _share_datatype(model, tensors) -> bool:
    """Give every tensor of `tensors` their common datatype, widening the MultiThresholds that produce them; False
    (nothing changed) when a narrower one has another producer."""
    common = _common_datatype([model.get_tensor_datatype(tensor) for tensor in tensors])
    narrower = [tensor for tensor in tensors if model.get_tensor_datatype(tensor) != common]
    producers = [model.find_producer(tensor) for tensor in narrower]
    if any(producer is None or producer.op_type != "MultiThreshold" for producer in producers):
        return False
    for tensor, producer in zip(narrower, producers):
        getCustomOp(producer).set_nodeattr("out_dtype", common.name)
        model.set_tensor_datatype(tensor, common)
    return True


def _scaled_integers(model, tensor):
    """(integer tensor x, scale s, the Mul or None) when `tensor` is `x * s` by a scalar constant (the Mul read by
    nothing else) or an integer tensor itself (s = 1); else None."""
    node = model.find_producer(tensor)
    if node is not None and node.op_type == "Mul" and len(node.input) == 2 and \
            len(model.find_consumers(node.output[0])) == 1:
        for position in (1, 0):
            value = model.get_initializer(node.input[position])
            dynamic = node.input[1 - position]
            if value is not None and value.size == 1 and model.get_initializer(dynamic) is None and \
                    model.get_tensor_datatype(dynamic).is_integer():
                return dynamic, float(value.reshape(-1)[0]), node
    if model.get_initializer(tensor) is None and model.get_tensor_datatype(tensor).is_integer():
        return tensor, 1.0, None
    return None


class MoveScalesPastConcat(Transformation):
    """Every Concat of distinct integer tensors times scalars, not all the same scalar, joins the integers and
    applies the scales after it as one per-channel Mul (see the module docstring)."""

    def apply(self, model):
        changed = False
        for node in list(model.graph.node):
            if node.op_type != "Concat" or len(node.input) < 2 or len(set(node.input)) != len(node.input):
                continue
            inputs = [_scaled_integers(model, name) for name in node.input]
            shapes = [model.get_tensor_shape(name) for name in node.input]
            if None in inputs or None in shapes or len({scale for _, scale, _ in inputs}) == 1 or \
                    not _share_datatype(model, [x for x, _, _ in inputs]):
                continue
            axis = get_by_name(node.attribute, "axis").i % len(shapes[0])
            rank = len(shapes[0])
            scales = np.concatenate([np.full(shape[axis], scale, dtype=np.float32)
                                     for (_, scale, _), shape in zip(inputs, shapes)])
            constant = model.make_new_valueinfo_name()
            model.set_initializer(constant, scales.reshape([-1 if a == axis else 1 for a in range(rank)]))
            joined = model.make_new_valueinfo_name()
            model.set_tensor_shape(joined, model.get_tensor_shape(node.output[0]))
            model.set_tensor_datatype(joined, model.get_tensor_datatype(inputs[0][0]))
            mul = helper.make_node("Mul", [joined, constant], [node.output[0]], name=f"{node.name}_scales")
            node.input[:] = [x for x, _, _ in inputs]
            node.output[0] = joined
            for _, _, old in inputs:
                if old is not None:
                    model.graph.node.remove(old)
            model.graph.node.insert(list(model.graph.node).index(node) + 1, mul)
            changed = True
        return model, changed
