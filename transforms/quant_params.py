"""The integer quantizer of a QONNX Quant node, read once and checked: scale and zero point per tensor or per
channel (one axis of the quantized tensor), bit width, signedness, narrow range; plus the code -> value map that
reproduces qonnx's own `int_quant` arithmetic bit for bit (so that tables built on it match execution) and its
inverse on the Quant's outputs. Values and codes are in table space: [..., C], channels last.
"""

from dataclasses import dataclass

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.general.intquant import max_int, min_int
from qonnx.custom_op.registry import getCustomOp


@dataclass(frozen=True)
class QuantParams:
    """One Quant node's integer quantizer; scale/zeropt are float arrays of shape [] (per tensor) or [C]."""

    scale: np.ndarray
    zeropt: np.ndarray
    bits: int
    signed: bool
    narrow: bool

    @property
    def datatype(self):
        """The qonnx DataType (INTb/UINTb) holding every code, narrow range or not."""
        return DataType[f"{'INT' if self.signed else 'UINT'}{self.bits}"]

    @property
    def code_min(self) -> int:
        """Smallest code the quantizer produces (narrow range included)."""
        return int(min_int(self.signed, self.narrow, self.bits))

    @property
    def code_max(self) -> int:
        """Largest code the quantizer produces (narrow range included)."""
        return int(max_int(self.signed, self.narrow, self.bits))

    def dequantize(self, codes):
        """Values (codes - zeropt) * scale in float32, as the Quant node outputs them; codes [..., C] integers."""
        return (np.asarray(codes).astype(np.float32) - self.zeropt) * self.scale

    def codes(self, outputs):
        """Integer codes (float64, NaN kept) of the Quant node's float32 `outputs` [..., C] (its dequantized codes)."""
        outputs = np.asarray(outputs, dtype=np.float64)
        return np.rint(outputs / self.scale + self.zeropt)


def varying_axes(value_shape, shape) -> set:
    """Axes of a tensor of shape `shape` along which a parameter of shape `value_shape` (numpy broadcasting:
    aligned to the right) takes more than one value."""
    offset = len(shape) - len(value_shape)
    return {offset + axis for axis, size in enumerate(value_shape) if size > 1}


def read_quant_params(model, node, where: str, shape, axis) -> QuantParams:
    """Read and check the quantizer of Quant node `node` for a tensor of shape `shape` with channels on `axis`
    (None: one scale and zero point for the whole tensor).

    `where` names the node being lowered in error messages. Raises ValueError on non-initializer parameters,
    non-positive or non-finite scales, non-integer zero points or bit widths, or scales that vary along other axes.
    """
    def initializer(index, what):
        value = model.get_initializer(node.input[index]) if len(node.input) > index else None
        if value is None:
            raise ValueError(f"{where}: the {what} of Quant node '{node.name}' must be a constant initializer")
        return np.asarray(value)

    def per_channel(value, what):
        if value.size == 1:
            return value.reshape(())
        channels = None if axis is None else shape[axis]
        if value.ndim > len(shape) or varying_axes(value.shape, shape) != {axis} or value.size != channels:
            along = "" if axis is None else f" nor per channel of the {channels} channels on axis {axis}"
            raise ValueError(f"{where}: inconsistent {what} of Quant node '{node.name}': shape {list(value.shape)} "
                             f"is neither per tensor{along} of the tensor {list(shape)}")
        return value.reshape(channels)

    scale = per_channel(initializer(1, "scale"), "scale")
    zeropt = per_channel(initializer(2, "zero point"), "zero point")
    bitwidth = initializer(3, "bit width")
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError(f"{where}: inconsistent scale of Quant node '{node.name}': scales must be positive and "
                         f"finite, got range [{scale.min()}, {scale.max()}]")
    if not (np.all(np.isfinite(zeropt)) and np.all(zeropt == np.round(zeropt))):
        raise ValueError(f"{where}: inconsistent zero point of Quant node '{node.name}': zero points must be integers")
    if bitwidth.size != 1 or float(bitwidth.reshape(())) != int(bitwidth.reshape(())):
        raise ValueError(f"{where}: Quant node '{node.name}' needs one integer bit width, got {bitwidth.tolist()}")
    bits = int(bitwidth.reshape(()))
    if bits < 2:
        raise ValueError(f"{where}: Quant node '{node.name}' has {bits} bit(s); lowering needs 2 bits or more")
    quant = getCustomOp(node)
    return QuantParams(scale=scale, zeropt=zeropt, bits=bits,
                       signed=bool(quant.get_nodeattr("signed")), narrow=bool(quant.get_nodeattr("narrow")))
