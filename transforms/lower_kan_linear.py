"""LowerKANLinear: every `Quant -> KANLinear -> Quant` becomes integer per-edge tables that FINN's layers can add up.

    Quant_in -> KANLinear -> Quant_out
 => Quant_in -> Mul(1/s_in) [-> Add z_in] -> KANLUT(tables [J, I, 2^b]) -> Mul(edge_scale) -> Quant_out

Edge (j, i) at input code k holds the integer `round_half_even(phi_ji(value_k) / edge_scale)`, computed by the op's
own per-input term (`custom_ops.kan_linear.edge_values`, on the input Quant's float32 values and the op's input
affine), so `edge_scale * sum_i tables[j, i, k_i]` is the KANLinear output bit for bit (an integer times a power of
two; the sum must stay below 2^24 for float32, checked). The output Quant stays: FINN's QONNX conversion makes it a
MultiThreshold on the accumulator (the Mul absorbed into its thresholds), and the input Mul cancels against the input
Quant's scale. Codes a narrow-range input never produces get the nearest reachable code's value. The accumulator's
DataType is the smallest holding every reachable sum. A KANLinear without an edge grid (edge_scale 0), with a
non-power-of-two edge scale, or with input codes wider than MAX_KAN_INPUT_BITS is a ValueError naming the node.
"""

import math

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.transformation.base import Transformation
from qonnx.custom_op.registry import getCustomOp

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, KAN_LUT_OP, OPS_DOMAIN, is_op, match_quantized_function
from psa_finn.custom_ops.kan_linear import EDGE_SCALE_ATTR, GRID_RANGE_ATTR, edge_values
from psa_finn.transforms.quant_params import read_quant_params

MAX_KAN_INPUT_BITS = 10
FLOAT32_EXACT_INTEGER = 2 ** 24


def kan_edge_tables(tables, grid_range, edge_scale, qin, in_scale=None, in_bias=None):
    """Integer edge tables [J, I, 2^b] (int64) of KANLinear `tables` [J, I, G] over every code of the input
    quantizer `qin` (transforms.quant_params.QuantParams, per tensor or per input)."""
    outputs, inputs, _ = tables.shape
    codes = np.arange(qin.datatype.min(), qin.datatype.max() + 1)
    reachable = np.clip(codes, qin.code_min, qin.code_max)
    values = qin.dequantize(np.broadcast_to(reachable[:, None], (codes.size, inputs))).astype(np.float64)
    if in_scale is not None:
        values = values * np.asarray(in_scale, dtype=np.float64).reshape(-1) + \
            np.asarray(in_bias, dtype=np.float64).reshape(-1)
    result = np.empty((outputs, inputs, codes.size), dtype=np.int64)
    for i in range(inputs):
        edges = edge_values(values[:, i], tables[:, i], grid_range, edge_scale)  # [codes, J], multiples of the step
        result[:, i, :] = np.rint(edges / edge_scale).astype(np.int64).T
    return result


def integer_datatype(low: int, high: int) -> DataType:
    """The smallest qonnx integer DataType holding every integer in [low, high] (UINTn when low >= 0)."""
    if low >= 0:
        return DataType.get_smallest_possible(high)
    bits = 2
    while -(2 ** (bits - 1)) > low or 2 ** (bits - 1) - 1 < high:
        bits += 1
    return DataType[f"INT{bits}"]


def accumulator_datatype(int_tables) -> DataType:
    """The smallest DataType holding every sum over inputs of one entry per edge table [J, I, E]."""
    return integer_datatype(int(int_tables.min(axis=2).sum(axis=1).min()),
                            int(int_tables.max(axis=2).sum(axis=1).max()))


class LowerKANLinear(Transformation):
    """`Quant -> KANLinear -> Quant` -> `Quant -> Mul -> [Add] -> KANLUT -> Mul -> Quant` (module docstring)."""

    def apply(self, model):
        for node in list(model.graph.node):
            if is_op(node, KAN_LINEAR_OP):
                self._lower(model, node)
                return model, True
        return model, False

    def _lower(self, model, node):
        where = f"KANLinear node '{node.name}'"
        chain = match_quantized_function(model, node)
        shape = model.get_tensor_shape(node.input[0])
        if shape is None or model.get_tensor_shape(node.output[0]) is None:
            raise ValueError(f"{where}: needs known tensor shapes (run InferShapes first)")
        qin = read_quant_params(model, chain.quant_in, where, shape, len(shape) - 1)
        if qin.bits > MAX_KAN_INPUT_BITS:
            raise ValueError(f"{where}: its input has {qin.bits}-bit codes; edge tables of more than "
                             f"{MAX_KAN_INPUT_BITS} bits are too large (quantize the input to fewer bits)")
        op = getCustomOp(node)
        edge_scale = float(op.get_nodeattr(EDGE_SCALE_ATTR))
        if not (edge_scale > 0 and math.frexp(edge_scale)[0] == 0.5):
            raise ValueError(f"{where}: edge_scale {edge_scale} is not a power of two; the lowering needs the edge "
                             f"grid of QuantKANLinear (re-export the layer)")
        constants = [model.get_initializer(name) for name in node.input[1:]]
        if any(value is None for value in constants):
            raise ValueError(f"{where}: tables, in_scale and in_bias must be initializers")
        tables = np.asarray(constants[0], dtype=np.float64)
        affine = constants[1:3] if len(constants) == 3 else (None, None)
        int_tables = kan_edge_tables(tables, op.get_nodeattr(GRID_RANGE_ATTR), edge_scale, qin, *affine)
        peak = int(np.abs(int_tables).max(axis=2).sum(axis=1).max())
        if peak >= FLOAT32_EXACT_INTEGER:
            raise ValueError(f"{where}: sums of up to {peak} edge steps are not exact in float32 (2^24); use a "
                             f"smaller edge_bit_width")
        acc_dt = accumulator_datatype(int_tables)
        table_dt = integer_datatype(int(int_tables.min()), int(int_tables.max()))
        self._replace(model, node, chain, qin, int_tables, table_dt, acc_dt, edge_scale)

    @staticmethod
    def _replace(model, node, chain, qin, int_tables, table_dt, acc_dt, edge_scale):
        graph = model.graph
        position = list(graph.node).index(node)
        in_shape = model.get_tensor_shape(node.input[0])
        steps = [("Mul", (1.0 / qin.scale.astype(np.float64)).astype(np.float32))]
        if np.any(qin.zeropt != 0):
            steps.append(("Add", qin.zeropt.astype(np.float32)))
        current, nodes = node.input[0], []
        for op_type, param in steps:
            param_name, out = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
            model.set_initializer(param_name, param.reshape(()) if param.size == 1 else param)
            model.set_tensor_shape(out, in_shape)
            nodes.append(helper.make_node(op_type, [current, param_name], [out], name=f"{node.name}_{op_type}_in"))
            current = out
        table_name, acc = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
        model.set_initializer(table_name, int_tables.astype(np.float32))
        model.set_tensor_datatype(table_name, table_dt)
        model.set_tensor_shape(acc, model.get_tensor_shape(node.output[0]))
        nodes.append(helper.make_node(KAN_LUT_OP, [current, table_name], [acc], domain=OPS_DOMAIN,
                                      name=f"{node.name}_{KAN_LUT_OP}", inputDataType=qin.datatype.name,
                                      outputDataType=acc_dt.name))
        model.set_tensor_datatype(acc, acc_dt)
        scale_name = model.make_new_valueinfo_name()
        model.set_initializer(scale_name, np.asarray(edge_scale, dtype=np.float32))
        nodes.append(helper.make_node("Mul", [acc, scale_name], [node.output[0]], name=f"{node.name}_Mul_out"))
        for offset, new in enumerate(nodes):
            graph.node.insert(position + offset, new)
        graph.node.remove(node)
        for name in node.input[1:]:
            if not any(name in other.input for other in graph.node):
                init = next((i for i in graph.initializer if i.name == name), None)
                if init is not None:
                    graph.initializer.remove(init)
