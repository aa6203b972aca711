"""What the lowering of quantized functions knows about ONNX nodes: which act elementwise, which are plain affine
maps (left to FINN's streamlining), and in which direction each moves with its variable input.

An elementwise node computes each output element from the elements at the same index of its inputs (numpy
broadcasting against constants), so a chain of them is a per-element function and can be tabulated per channel.
`monotone_direction` proves monotonicity from the ops alone (for functions that read an unquantized accumulator,
whose inputs cannot be enumerated): per channel +1 (non-decreasing), -1 (non-increasing), 0 (constant) or NaN
(not known to be monotone).
"""

import numpy as np
from onnx import helper
from qonnx.util.basic import get_by_name

from psa_finn.custom_ops.domain import LERP_PSA_OP, OPS_DOMAIN

AFFINE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Neg", "Identity"})
UNARY_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Ceil", "Celu", "Clip", "Cos", "Cosh", "Elu", "Erf",
    "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "LeakyRelu", "Log", "Mish", "Not", "Reciprocal", "Relu",
    "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh",
    "ThresholdedRelu",
})
MULTI_INPUT_OPS = frozenset({
    "Max", "Min", "Mean", "Sum", "Pow", "Mod", "PRelu", "Equal", "Greater", "GreaterOrEqual", "Less",
    "LessOrEqual", "And", "Or", "Xor", "Where",
})
ELEMENTWISE_OPS = AFFINE_OPS | UNARY_OPS | MULTI_INPUT_OPS
FINN_NATIVE_OPS = AFFINE_OPS | {"Relu"}  # FINN converts these (ReLU -> Quant, affines) into thresholds itself

_RISING = frozenset({"Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Softplus", "Softsign", "Sqrt", "Atan",
                     "Asinh", "Sinh", "Atanh", "Asin", "Acosh", "Ceil", "Floor", "Round", "Sign", "Identity",
                     "Clip"})
_FALLING = frozenset({"Neg", "Acos"})
# ops rising when their attribute `alpha` (default in brackets) is >= 0 (HardSigmoid: the slope's sign)
_RISING_FOR_NONNEGATIVE_ALPHA = {"LeakyRelu": 0.01, "Elu": 1.0, "Celu": 1.0, "Selu": 1.67326, "HardSigmoid": 0.2,
                                 "ThresholdedRelu": 1.0}
UNKNOWN = np.nan


def is_elementwise(node) -> bool:
    """Whether `node` computes each output element from the same index of its inputs (ours: LerpPSA)."""
    if node.domain == OPS_DOMAIN:
        return node.op_type == LERP_PSA_OP
    return node.domain in ("", "ai.onnx") and node.op_type in ELEMENTWISE_OPS


def is_affine(node) -> bool:
    """Whether `node` is an affine map (Add, Sub, Mul, Div, Neg, Identity) of standard ONNX."""
    return node.domain in ("", "ai.onnx") and node.op_type in AFFINE_OPS


def _attribute(node, name, default):
    attribute = get_by_name(node.attribute, name)
    return default if attribute is None else helper.get_attribute_value(attribute)


def _agree(directions):
    """Per channel: the common non-zero direction of `directions` (0 when all are 0, NaN when they disagree)."""
    stacked = np.stack(np.broadcast_arrays(*[np.asarray(d, dtype=np.float64) for d in directions]))
    rising = np.any(stacked > 0, axis=0)
    falling = np.any(stacked < 0, axis=0)
    unknown = np.any(np.isnan(stacked), axis=0) | (rising & falling)
    return np.where(unknown, UNKNOWN, np.where(rising, 1.0, np.where(falling, -1.0, 0.0)))


def monotone_direction(node, inputs, constant, lerp_psa_direction=None):
    """Direction of `node`'s output per channel, from its inputs' directions.

    `inputs`: one direction array per input (scalar or [C]: +1, -1, 0 for constants, NaN unknown); `constant(i)`
    returns the per-channel value of constant input i ([] or [C]) or None for a variable input;
    `lerp_psa_direction(node)` gives a LerpPSA node's own per-channel direction.
    """
    op = node.op_type
    variable = [i for i in range(len(inputs)) if constant(i) is None]
    if node.domain == OPS_DOMAIN and op == LERP_PSA_OP:
        return inputs[0] * lerp_psa_direction(node)
    if op in _RISING:
        return inputs[0]
    if op in _FALLING:
        return -inputs[0]
    if op in _RISING_FOR_NONNEGATIVE_ALPHA:
        alpha = float(_attribute(node, "alpha", _RISING_FOR_NONNEGATIVE_ALPHA[op]))
        gamma = float(_attribute(node, "gamma", 1.0))
        return inputs[0] * (np.sign(alpha) if op == "HardSigmoid" else (1.0 if alpha >= 0 and gamma > 0 else
                                                                        UNKNOWN))
    if op in ("Add", "Sum", "Max", "Min", "Mean"):
        return _agree(inputs)
    if op == "Sub":
        return _agree([inputs[0], -inputs[1]])
    if op in ("Mul", "Div") and len(variable) == 1 and not (op == "Div" and variable == [1]):
        return inputs[variable[0]] * np.sign(constant(1 - variable[0]))
    if op == "PRelu" and variable == [0]:
        return inputs[0] * np.where(np.asarray(constant(1)) >= 0, 1.0, UNKNOWN)
    return np.full(np.broadcast(*inputs).shape, UNKNOWN)
