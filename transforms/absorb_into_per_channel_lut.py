"""Streamlining for PerChannelLUT as FINN does it for MultiThreshold: affines and transposes are absorbed into it.

A lowered learnable function reads integer codes and writes integer codes, `x -> PerChannelLUT -> y`. Around it
streamlining leaves integer affines (a zero point, a scale that cancelled to an integer, a sign) and, in a CNN,
the transposes of the channels-last conversion:

- `AbsorbAffineIntoPerChannelLUT`: `x -> Mul(a) / Add(b) -> LUT` with integer-typed x and integer a, b (scalar or
  per channel of the LUT's channel axis) becomes `x -> LUT'` with `T'[c, k] = T[c, a_c * k + b_c]` over x's
  datatype; `LUT -> Mul(a) / Add(b)` with integer a, b becomes `LUT'` with `T' = a * T + b` (a table of one shared
  row gets one row per channel when the constant is per channel). The new table is
  exact on every code the old graph accepts (a code the old table had no entry for was an error before; it reads
  the nearest entry now). lerp64 tables interpolate between stored entries, so they take only integer Adds after.
- `AbsorbTransposeIntoPerChannelLUT`: `Transpose(perm) -> LUT(channel_axis a)` becomes
  `LUT(channel_axis perm[a]) -> Transpose(perm)`, as finn's AbsorbTransposeIntoMultiThreshold moves a transpose past
  a MultiThreshold, so that the transposes meet and cancel (a CNN's NCHW LUT becomes channels-last).
"""

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.util.basic import get_by_name

from psa_finn.custom_ops.domain import CHANNEL_AXIS_ATTR, PER_CHANNEL_LUT_OP, channel_axis_of, is_op
from psa_finn.custom_ops.per_channel_lut import INTEGER_DATATYPE
from psa_finn.transforms.absorb_into_multithreshold import AFFINE_OPS, constant_operand
from psa_finn.transforms.channel_axes import SCALAR, varying_axis
from psa_finn.transforms.lower_quantized_functions import MAX_LUT_INPUT_BITS
from psa_finn.transforms.transpose_past_shared_threshold import move_transpose_past, transposes_and_consumers


def _integral(value):
    return bool(np.all(np.isfinite(value)) and np.all(value == np.round(value)))


def _per_channel(value, axis, lut_axis, channels):
    """The constant as one value per table row [C, 1], or None when it varies along another axis."""
    if axis == SCALAR:
        return np.full((channels, 1), float(np.asarray(value).reshape(-1)[0]))
    if axis != lut_axis:
        return None
    return np.asarray(value, dtype=np.float64).reshape(-1, 1)


def _datatype_name(table):
    """The smallest INTn / UINTn DataType name holding every entry of `table`."""
    low, high = int(table.min()), int(table.max())
    if low < 0:
        return f"INT{max(int(np.ceil(np.log2(max(-low, high + 1)))) + 1, 2)}"
    return f"UINT{max(high.bit_length(), 1)}"


class AbsorbAffineIntoPerChannelLUT(Transformation):
    """Fold integer Mul/Add constants before (integer-typed input) or after a PerChannelLUT into its table."""

    def apply(self, model):
        graph_modified = False
        for node in list(model.graph.node):
            if node.op_type not in AFFINE_OPS or model.is_fork_node(node) or model.is_join_node(node):
                continue
            operand = constant_operand(model, node)
            if operand is None or not _integral(operand[1]):
                continue
            consumer = model.find_consumer(node.output[0])
            producer = model.find_producer(operand[0])
            if is_op(consumer, PER_CHANNEL_LUT_OP) and consumer.input[0] == node.output[0]:
                graph_modified |= self._absorb_before(model, node, operand, consumer)
            elif is_op(producer, PER_CHANNEL_LUT_OP) and not model.is_fork_node(producer):
                graph_modified |= self._absorb_after(model, node, operand, producer)
        if graph_modified:
            model = model.transform(InferDataTypes())
        return model, graph_modified

    @staticmethod
    def _absorb_before(model, node, operand, lut):
        source, value = operand
        lut_op = getCustomOp(lut)
        x_type = model.get_tensor_datatype(source)
        table = model.get_initializer(lut.input[1])
        if table is None or lut_op.get_nodeattr("mode") != "full" or not INTEGER_DATATYPE.fullmatch(x_type.name) \
                or x_type.bitwidth() > MAX_LUT_INPUT_BITS:
            return False
        rank = len(model.get_tensor_shape(source))
        column = _per_channel(value, varying_axis(value, rank), channel_axis_of(lut, rank), table.shape[0])
        if column is None:
            return False
        codes = np.arange(x_type.min(), x_type.max() + 1)[None, :]
        read = column * codes if node.op_type == "Mul" else codes + column
        in_type = DataType[lut_op.get_nodeattr("inputDataType")]
        index = np.clip(read - in_type.min(), 0, table.shape[1] - 1).astype(np.int64)
        new_table = np.take_along_axis(np.asarray(table, dtype=np.int64), index, axis=1)
        model.set_initializer(lut.input[1], new_table.astype(np.float32))
        lut_op.set_nodeattr("inputDataType", x_type.name)
        lut.input[0] = source
        model.graph.node.remove(node)
        return True

    @staticmethod
    def _absorb_after(model, node, operand, lut):
        _, value = operand
        lut_op = getCustomOp(lut)
        table = model.get_initializer(lut.input[1])
        mode = lut_op.get_nodeattr("mode")
        if table is None or (mode != "full" and node.op_type != "Add"):
            return False
        rank = len(model.get_tensor_shape(lut.output[0]))
        column = _per_channel(value, varying_axis(value, rank), channel_axis_of(lut, rank), table.shape[0])
        if column is None:
            return False
        table = np.asarray(table, dtype=np.float64)
        new_table = table * column if node.op_type == "Mul" else table + column
        new_type = _datatype_name(new_table)
        model.set_initializer(lut.input[1], new_table.astype(np.float32))
        model.set_tensor_datatype(lut.input[1], DataType[new_type])
        lut_op.set_nodeattr("outputDataType", new_type)
        lut.output[0] = node.output[0]
        model.graph.node.remove(node)
        return True


class AbsorbTransposeIntoPerChannelLUT(Transformation):
    """Move a Transpose from before a PerChannelLUT to after it, re-pointing the LUT's channel axis."""

    def apply(self, model):
        graph_modified = False
        for transpose, lut in transposes_and_consumers(model):
            if not is_op(lut, PER_CHANNEL_LUT_OP):
                continue
            perm = list(get_by_name(transpose.attribute, "perm").ints)
            getCustomOp(lut).set_nodeattr(CHANNEL_AXIS_ATTR, perm[channel_axis_of(lut, len(perm))] - len(perm))
            move_transpose_past(model, transpose, lut)
            graph_modified = True
        return model, graph_modified
