"""The qonnx op `KANLinear`: a Kolmogorov-Arnold layer, one piecewise-linear function per edge (input i, output j).

    u_i = in_scale[i] * x[..., i] + in_bias[i]                        (optional input affine)
    y[..., j] = sum_i q(lerp(tables[j, i], u_i))                       (i in index order)
    q(v) = round_half_even(v / edge_scale) * edge_scale                (edge_scale > 0; 0: no rounding)

`tables` [J, I, G] samples each edge at `grid_points(G, grid_range)` (common/grid.py), linearly extrapolated beyond
[-grid_range, grid_range] like LerpPSA. With a power-of-two `edge_scale` every edge value is an integer on the edge
grid and the sum is exact: the lowering (transforms.lower_kan_linear) turns the node into integer per-edge tables
that the KANLinear HW layer adds up. Exported by `psa_finn.nn.QuantKANLinear` as `Quant -> KANLinear -> Quant`.
"""

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from psa_finn.common.grid import segment_and_fraction
from psa_finn.custom_ops.lerp_psa import _check_finite

GRID_RANGE_ATTR = "grid_range"
EDGE_SCALE_ATTR = "edge_scale"


def shape_compatible_op(op, model):
    """A node with the shape of a KAN node's output [..., J] (both ops): a constant of that shape when the input
    shape is known, else Einsum(x, tables) "...i,jik->...j" (ONNX opset 12 or later infers it)."""
    node = op.onnx_node
    shape = model.get_tensor_shape(node.input[0])
    tables = model.get_initializer(node.input[1])
    if shape is not None and tables is not None:
        return op.make_const_shape_op(list(shape[:-1]) + [int(tables.shape[0])])
    return helper.make_node("Einsum", [node.input[0], node.input[1]], [node.output[0]], equation="...i,jik->...j")


def kan_linear_numpy(x, tables, grid_range, edge_scale=0.0, in_scale=None, in_bias=None):
    """Evaluate the KANLinear function: x [..., I], tables [J, I, G] -> float32 [..., J] (float64 inside, the
    inputs added in index order, rounded once to float32). ValueError on shape mismatches or non-finite values."""
    tables = np.asarray(tables, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if tables.ndim != 3 or tables.shape[2] < 2:
        raise ValueError(f"tables must have shape [out, in, G] with G >= 2, got {list(tables.shape)}")
    outputs, inputs, grid_size = tables.shape
    if x.ndim < 1 or x.shape[-1] != inputs:
        raise ValueError(f"input has shape {list(x.shape)} but the tables have {inputs} inputs (last axis)")
    if not (np.isfinite(grid_range) and grid_range > 0):
        raise ValueError(f"{GRID_RANGE_ATTR} must be a positive finite number, got {grid_range}")
    if not (np.isfinite(edge_scale) and edge_scale >= 0):
        raise ValueError(f"{EDGE_SCALE_ATTR} must be >= 0 (0: no rounding), got {edge_scale}")
    _check_finite("tables", tables)
    if (in_scale is None) != (in_bias is None):
        raise ValueError("in_scale and in_bias must be given together (or neither)")
    if in_scale is not None:
        in_scale = np.asarray(in_scale, dtype=np.float64).reshape(-1)
        in_bias = np.asarray(in_bias, dtype=np.float64).reshape(-1)
        for name, value in (("in_scale", in_scale), ("in_bias", in_bias)):
            if value.shape != (inputs,):
                raise ValueError(f"{name} must have shape [{inputs}], got {list(value.shape)}")
            _check_finite(name, value)
        x = x * in_scale + in_bias
    rows = x.reshape(-1, inputs)
    y = np.zeros((rows.shape[0], outputs))
    for i in range(inputs):
        y = y + edge_values(rows[:, i], tables[:, i], grid_range, edge_scale)
    return y.astype(np.float32).reshape(*x.shape[:-1], outputs)


def edge_values(u, tables_of_input, grid_range, edge_scale=0.0):
    """The J edge values q(lerp(tables_of_input[j], u)) of one input at its (affine-mapped) values u [N], float64
    [N, J]: the op's term for that input (the lowering tabulates the edges with it)."""
    tables_of_input = np.asarray(tables_of_input, dtype=np.float64)
    segment, fraction = segment_and_fraction(np.asarray(u, dtype=np.float64), tables_of_input.shape[1],
                                             float(grid_range))
    left = tables_of_input[:, segment].T
    right = tables_of_input[:, segment + 1].T
    term = left + fraction[:, None] * (right - left)
    if edge_scale > 0:
        term = np.round(term / edge_scale) * edge_scale
    return term


class KANLinear(CustomOp):
    """Kolmogorov-Arnold layer: inputs x [..., I], tables [J, I, G], optional in_scale [I], in_bias [I] ->
    [..., J]; attributes grid_range, edge_scale (see the module docstring)."""

    def get_nodeattr_types(self):
        return {GRID_RANGE_ATTR: ("f", True, 0.0), EDGE_SCALE_ATTR: ("f", False, 0.0)}

    def make_shape_compatible_op(self, model):
        """A node of the output shape [..., J] for ONNX shape inference (shape_compatible_op)."""
        return shape_compatible_op(self, model)

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        affine = [context[name] for name in node.input[2:4]] if len(node.input) == 4 else [None, None]
        try:
            context[node.output[0]] = kan_linear_numpy(context[node.input[0]], context[node.input[1]],
                                                       self.get_nodeattr(GRID_RANGE_ATTR),
                                                       self.get_nodeattr(EDGE_SCALE_ATTR), *affine)
        except ValueError as err:
            raise ValueError(f"KANLinear node '{node.name}': {err}") from err

    def verify_node(self):
        node = self.onnx_node
        messages = []
        if len(node.input) in (2, 4):
            messages.append("The number of inputs is correct")
        else:
            messages.append(f"KANLinear node '{node.name}' needs inputs (x, tables) or (x, tables, in_scale, "
                            f"in_bias), got {len(node.input)}")
        grid_range = self.get_nodeattr(GRID_RANGE_ATTR)
        if np.isfinite(grid_range) and grid_range > 0:
            messages.append("All necessary attributes exist")
        else:
            messages.append(f"KANLinear node '{node.name}' has grid_range {grid_range}; it must be positive")
        return messages
