"""Merge a MultiThreshold into the MultiThreshold that reads its integer output: one Thresholding layer, not two.

A monotone learnable function lowers to a MultiThreshold on the integer codes of its input quantizer. When that
quantizer is itself a MultiThreshold (the requantizer after a linear layer) with no other consumer, the pair

    acc -> MT_a (thresholds A, out_bias b, out_scale 1) -> n -> MT_b (thresholds B) -> y

is one step function of acc: n >= B[c, j] holds exactly when the count k = #(acc >= A[c, :]) reaches
m = ceil(B[c, j] - b), i.e. when acc >= A[c, m - 1] (always for m <= 0, never for m > len(A[c])).
`ComposeConsecutiveThresholds` replaces the pair by MT(acc, C) with C[c, j] = A[c, m - 1] (the input datatype's
min / max + 1 at the ends) and MT_b's output attributes. The input of MT_a must be an integer tensor.
"""

import numpy as np
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes


def composed_thresholds(first, first_bias, second, below, above):
    """C[c, j]: the first-stage threshold at which first-stage count + first_bias reaches second[c, j].

    `below` stands for "always" (a value every input reaches), `above` for "never".
    """
    channels = max(first.shape[0], second.shape[0])
    first = np.broadcast_to(first, (channels, first.shape[1]))
    second = np.broadcast_to(second, (channels, second.shape[1]))
    needed = np.ceil(second - first_bias).astype(np.int64)
    padded = np.concatenate([np.full((channels, 1), below), first, np.full((channels, 1), above)], axis=1)
    index = np.clip(needed, 0, first.shape[1] + 1)
    return np.take_along_axis(padded, index, axis=1).astype(np.float32)


class ComposeConsecutiveThresholds(Transformation):
    """Replace MultiThreshold -> MultiThreshold (first one unforked, unit out_scale) by one MultiThreshold."""

    def apply(self, model):
        for first in model.graph.node:
            if first.op_type != "MultiThreshold" or model.is_fork_node(first):
                continue
            second = model.find_consumer(first.output[0])
            if second is None or second.op_type != "MultiThreshold" or second.input[0] != first.output[0]:
                continue
            first_op = getCustomOp(first)
            idt = model.get_tensor_datatype(first.input[0])
            if first_op.get_nodeattr("out_scale") != 1.0 or not idt.is_integer():
                continue
            a = model.get_initializer(first.input[1])
            b = model.get_initializer(second.input[1])
            if a is None or b is None or not (np.all(np.diff(a, axis=1) >= 0) and np.all(np.diff(b, axis=1) >= 0)):
                continue
            composed = composed_thresholds(a, first_op.get_nodeattr("out_bias"), b, idt.min(), idt.max() + 1)
            second.input[0] = first.input[0]
            model.set_initializer(second.input[1], composed)
            model.set_tensor_datatype(second.input[1], model.get_tensor_datatype(first.input[1]))
            model.graph.node.remove(first)
            return model.transform(InferDataTypes()), True
        return model, False
