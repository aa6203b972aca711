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

The same holds on any grid g the input is known to lie on (`input_grid`): the sum of two integer tensors scaled by
power-of-two constants (a residual Add of branches with different quantizer scales, before streamlining makes it
integer) lies on the finer of the two grids, so its ties are the thresholds on that grid and move by +-g/2.

A float input (the network's own input, read by its input quantizer's MultiThreshold) is on no grid, but then every
threshold of the quantizer is a tie (k + 0.5) * scale: where the thresholds of a channel are evenly spaced by a power
of two (an input quantizer's, not yet composed), the one below an even code moves up by one float32 ulp, so that
`x >= t` fails exactly at the tie (`float_input_half_even_thresholds`); elsewhere nothing changes. The moved
thresholds are no longer evenly spaced, so this too is idempotent.
"""

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

# float32 holds t +- 0.5 exactly only below 2**23
MAX_TIE_MAGNITUDE = 2.0**22
# how many Add / scalar Mul nodes `input_grid` follows upstream
MAX_GRID_DEPTH = 8


def input_grid(model, tensor, depth: int = MAX_GRID_DEPTH):
    """A step g such that every value of `tensor` is an integer multiple of g, or None when unknown: 1 for an integer
    tensor, h * |c| after a Mul by a scalar constant c, the finer step of an Add of two tensors on nested grids."""
    if model.get_tensor_datatype(tensor).is_integer():
        return 1.0
    producer = model.find_producer(tensor)
    if depth == 0 or producer is None or producer.op_type not in ("Mul", "Add"):
        return None
    constants = [(name, model.get_initializer(name)) for name in producer.input]
    variables = [name for name, value in constants if value is None]
    if producer.op_type == "Mul":
        scales = [value for _, value in constants if value is not None]
        if len(variables) != 1 or len(scales) != 1 or scales[0].size != 1:
            return None
        scale = abs(float(scales[0].reshape(-1)[0]))
        grid = input_grid(model, variables[0], depth - 1)
        return None if grid is None or scale == 0 else grid * scale
    if len(variables) != 2:
        return None
    grids = [input_grid(model, name, depth - 1) for name in variables]
    if None in grids:
        return None
    fine, coarse = min(grids), max(grids)
    ratio = coarse / fine
    return fine if ratio == np.round(ratio) else None


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


def half_even_thresholds(thresholds, code, grid: float = 1.0):
    """Thresholds [C, N] on an input on the grid `grid` (1: integers), ties moved by +-grid/2 so they round to the
    even code."""
    steps = thresholds / grid
    ties = (steps == np.round(steps)) & (np.abs(steps) < MAX_TIE_MAGNITUDE)
    lower_code = code + np.arange(thresholds.shape[-1])
    shift = np.where(lower_code % 2 == 0, 0.5, -0.5) * grid
    return np.where(ties, thresholds + shift, thresholds).astype(np.float32)


def _evenly_spaced_power_of_two(thresholds) -> bool:
    """Whether every channel's thresholds step by one and the same power of two (a quantizer's, uncomposed)."""
    if thresholds.shape[-1] < 2:
        return False
    steps = np.diff(thresholds.astype(np.float64), axis=-1)
    if not np.all(steps == steps[..., :1]) or not np.all(steps > 0):
        return False
    exponents = np.log2(steps[..., 0])
    return bool(np.all(exponents == np.round(exponents)))


def float_input_half_even_thresholds(thresholds, code):
    """Thresholds [C, N] of a quantizer reading float values (every threshold a tie): the one below an even code
    one float32 ulp up, so the tie rounds to the even code."""
    values = thresholds.astype(np.float32)
    lower_code = code + np.arange(thresholds.shape[-1])
    return np.where(lower_code % 2 == 0, np.nextafter(values, np.float32(np.inf)), values).astype(np.float32)


class RoundHalfEvenThresholds(Transformation):
    """Move every tie threshold of a quantizer's MultiThreshold on a known input grid (integers, or see
    `input_grid`) by half a step, or on a float input by one ulp, to round it half-to-even."""

    def apply(self, model):
        graph_modified = False
        for node in model.graph.node:
            if node.op_type != "MultiThreshold":
                continue
            thresholds = model.get_initializer(node.input[1])
            if thresholds is None:
                continue
            grid = input_grid(model, node.input[0])
            float_input = grid is None and model.get_tensor_datatype(node.input[0]) == DataType["FLOAT32"]
            if grid is None and not (float_input and _evenly_spaced_power_of_two(thresholds)):
                continue
            code = first_code(model, node)
            if code is None or not np.all(np.diff(thresholds, axis=-1) > 0):
                continue
            fixed = (float_input_half_even_thresholds(thresholds, code) if grid is None
                     else half_even_thresholds(thresholds, code, grid))
            if not np.array_equal(fixed, thresholds):
                model.set_initializer(node.input[1], fixed)
                model.set_tensor_datatype(node.input[1], DataType["FLOAT32"])
                graph_modified = True
        return model, graph_modified
