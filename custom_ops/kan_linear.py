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

from psa_finn.common.grid import segment_and_fraction
from psa_finn.custom_ops.grid_table_op import (
    GRID_RANGE_ATTR,
    GridTableOp,
    apply_input_affine,
    check_finite,
    check_grid_range,
)

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
    check_grid_range(grid_range)
    if not (np.isfinite(edge_scale) and edge_scale >= 0):
        raise ValueError(f"{EDGE_SCALE_ATTR} must be >= 0 (0: no rounding), got {edge_scale}")
    check_finite("tables", tables)
    x = apply_input_affine(x, in_scale, in_bias, inputs)
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


class KANLinear(GridTableOp):
    """Kolmogorov-Arnold layer: inputs x [..., I], tables [J, I, G], optional in_scale [I], in_bias [I] ->
    [..., J]; attributes grid_range, edge_scale (see the module docstring)."""

    TABLE_INPUT = "tables"
    reference = staticmethod(kan_linear_numpy)

    def get_nodeattr_types(self):
        """grid_range (required) and edge_scale (default 0: no rounding)."""
        return {GRID_RANGE_ATTR: ("f", True, 0.0), EDGE_SCALE_ATTR: ("f", False, 0.0)}

    def reference_attributes(self):
        """grid_range and edge_scale."""
        return {name: self.get_nodeattr(name) for name in (GRID_RANGE_ATTR, EDGE_SCALE_ATTR)}

    def make_shape_compatible_op(self, model):
        """A node of the output shape [..., J] for ONNX shape inference (shape_compatible_op)."""
        return shape_compatible_op(self, model)

    def verify_node(self):
        """Input count and grid_range."""
        return self.verify_inputs_and_grid()
