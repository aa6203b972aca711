"""Make a quantizer's MultiThreshold round ties half-to-even, as the QONNX Quant it was converted from.

QONNX `Quant` with rounding_mode ROUND rounds half-to-even (np.round, as Brevitas). finn-plus's Quant ->
MultiThreshold conversion ignores rounding_mode: its thresholds sit at the ties, (k + 0.5) * scale, and `x >= t`
rounds a tie up. With power-of-two scales (all of psa-finn's), quantizer inputs often sit exactly on a tie.

Once a MultiThreshold reads an integer tensor, an input can hit threshold t exactly only when t is an integer, and
that input is a rounding tie between the codes c and c + 1 on either side of t. Half-to-even sends it to the even
one: `RoundHalfEvenThresholds` moves t to t + 0.5 where c is even (the tie now stays at c) and to t - 0.5 where c is
odd (same decisions as t: the tie goes up to c + 1). No threshold is an integer afterwards, so the transformation is
idempotent, and RoundAndClipThresholds' ceil turns them into t + 1 and t. Run it on integer-input thresholds that
have not been rounded yet: after RoundAndClipThresholds every threshold is an integer and the ties are lost.

The codes: a quantizer's MultiThreshold counts n = #(x >= t) and its codes are n + out_bias, plus the scalar Add of
the quantizer's minimum code while that still follows it (FINN's conversion inserts it; streamlining absorbs it into
out_bias); threshold j separates codes c_j = first code + j and c_j + 1 (thresholds ascending per channel).
Thresholds that are not integers are never ties and stay untouched: those of a monotone table lowered by
transforms.lower_quantized_functions sit halfway between neighbouring integer inputs. Nodes with out_scale != 1,
unsorted thresholds or a non-integer first code are not quantizer thresholds and are left alone.
"""

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

# float32 holds t +- 0.5 exactly only below 2**23
MAX_TIE_MAGNITUDE = 2.0**22


def pending_code_offset(model, node):
    """The scalar constant of an Add that alone consumes the MultiThreshold's output (0 without one)."""
    consumers = model.find_consumers(node.output[0])
    if len(consumers) != 1 or consumers[0].op_type != "Add":
        return 0.0
    add = consumers[0]
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    value = model.get_initializer(other)
    if value is None or value.size != 1:
        return 0.0
    return float(value.reshape(-1)[0])


def first_code(model, node):
    """The code a quantizer's MultiThreshold outputs for a count of 0, or None when it is not a quantizer's."""
    op = getCustomOp(node)
    if op.get_nodeattr("out_scale") != 1.0:
        return None
    code = op.get_nodeattr("out_bias") + pending_code_offset(model, node)
    return int(code) if code == np.floor(code) else None


def half_even_thresholds(thresholds, code):
    """Thresholds [C, N] on an integer input, ties moved by +-0.5 so they round to the even code."""
    ties = (thresholds == np.round(thresholds)) & (np.abs(thresholds) < MAX_TIE_MAGNITUDE)
    lower_code = code + np.arange(thresholds.shape[-1])
    shift = np.where(lower_code % 2 == 0, 0.5, -0.5)
    return np.where(ties, thresholds + shift, thresholds).astype(np.float32)


class RoundHalfEvenThresholds(Transformation):
    """Move every tie threshold of a quantizer's integer-input MultiThreshold by +-0.5 to round it half-to-even."""

    def apply(self, model):
        graph_modified = False
        for node in model.graph.node:
            if node.op_type != "MultiThreshold":
                continue
            thresholds = model.get_initializer(node.input[1])
            if thresholds is None or not model.get_tensor_datatype(node.input[0]).is_integer():
                continue
            code = first_code(model, node)
            if code is None or not np.all(np.diff(thresholds, axis=-1) > 0):
                continue
            fixed = half_even_thresholds(thresholds, code)
            if not np.array_equal(fixed, thresholds):
                model.set_initializer(node.input[1], fixed)
                model.set_tensor_datatype(node.input[1], DataType["FLOAT32"])
                graph_modified = True
        return model, graph_modified
