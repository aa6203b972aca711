"""Absorb an Add or a positive Mul by a constant into the MultiThreshold it feeds, along the constant's real axis.

finn's AbsorbAddIntoMultiThreshold / AbsorbMulIntoMultiThreshold read a constant's channel axis from its rank
(a [1, 1, 1, C] constant counts as NCHW, so a per-channel affine on an NHWC tensor is never absorbed) and never
look at the MultiThreshold's own data_layout (a per-token constant absorbed into an "NCW" MultiThreshold thresholds
the wrong axis). `AbsorbAffineIntoMultiThreshold(op_type)` takes the axis along which the constant varies
(`channel_axes.varying_axis`): a scalar always folds; a per-channel constant folds when that axis is the
MultiThreshold's channel axis, or when the thresholds are still one shared row - then the MultiThreshold's
data_layout is set to that axis. Thresholds become T - b (Add) or T / a (Mul, a > 0).
"""

import numpy as np
from qonnx.transformation.base import Transformation

from psa_finn.transforms.channel_axes import SCALAR, multithreshold_channel_axis, set_multithreshold_channel_axis, \
    varying_axis

AFFINE_OPS = ("Add", "Mul")


def constant_operand(model, node):
    """(dynamic input, constant value) of a binary node with exactly one initializer input, else None."""
    values = [model.get_initializer(name) for name in node.input[:2]]
    if len(node.input) != 2 or sum(value is not None for value in values) != 1:
        return None
    if values[1] is not None:
        return node.input[0], np.asarray(values[1])
    return node.input[1], np.asarray(values[0])


class AbsorbAffineIntoMultiThreshold(Transformation):
    """Fold `op_type` ("Add" or "Mul") by a scalar or per-channel constant into the next MultiThreshold."""

    def __init__(self, op_type):
        super().__init__()
        if op_type not in AFFINE_OPS:
            raise ValueError(f"AbsorbAffineIntoMultiThreshold: op_type must be one of {AFFINE_OPS}, got {op_type!r}")
        self.op_type = op_type

    def apply(self, model):
        graph_modified = False
        for node in list(model.graph.node):
            if node.op_type != self.op_type or model.is_fork_node(node) or model.is_join_node(node):
                continue
            mt = model.find_consumer(node.output[0])
            operand = constant_operand(model, node)
            if mt is None or mt.op_type != "MultiThreshold" or mt.input[0] != node.output[0] or operand is None:
                continue
            source, value = operand
            thresholds = model.get_initializer(mt.input[1])
            shape = model.get_tensor_shape(source)
            if thresholds is None or shape is None or (self.op_type == "Mul" and not np.all(value > 0)):
                continue
            axis = varying_axis(value, len(shape))
            if axis is None or not self._align(model, mt, axis, thresholds.shape[0]):
                continue
            column = value.reshape(-1, 1).astype(np.float64)
            new = thresholds - column if self.op_type == "Add" else thresholds / column
            model.set_initializer(mt.input[1], new.astype(np.float32))
            mt.input[0] = source
            model.graph.node.remove(node)
            graph_modified = True
        return model, graph_modified

    @staticmethod
    def _align(model, mt, axis, rows):
        """Whether thresholds with `rows` rows can take a constant along `axis` (relabelling shared ones)."""
        if axis == SCALAR:
            return True
        if multithreshold_channel_axis(model, mt) == axis:
            return True
        return rows == 1 and set_multithreshold_channel_axis(model, mt, axis)
