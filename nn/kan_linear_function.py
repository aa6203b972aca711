"""The KANLinear function in torch: evaluated bit-identically to the qonnx op, exported as one `KANLinear` node.

`kan_linear(x, tables, grid_range, edge_scale, in_scale, in_bias)` computes `sum_i q(lerp(tables[j, i], in_scale[i]
* x_i + in_bias[i]))` for every output j (custom_ops.kan_linear) in float64 with the op's per-edge arithmetic
(`models.lerp.lerp_edge_sum`) and rounds once to the input dtype. With an edge grid (edge_scale > 0, what
QuantKANLinear always uses) the sum of edge-grid multiples is exact in any order, so the QAT model and `execute_onnx`
agree to the last bit; without one they agree to float64 rounding. During ONNX export it becomes `psa_finn.custom_ops::KANLinear(x,
tables[, in_scale, in_bias])` with the attributes `grid_range` and `edge_scale`, its output typed as the input with
the last axis `out`.
"""

import torch

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, OPS_DOMAIN
from psa_finn.custom_ops.kan_linear import EDGE_SCALE_ATTR, GRID_RANGE_ATTR
from psa_finn.models.lerp import lerp_edge_sum
from psa_finn.nn.lerp_psa_function import evaluate_or_export, input_affine, onnx_grid_range


def _evaluate(x, tables, grid_range, edge_scale, in_scale=None, in_bias=None):
    v = input_affine(x.double(), in_scale, in_bias)
    return lerp_edge_sum(v, tables.double(), grid_range, edge_scale or None).to(x.dtype)


class KANLinearExportFunction(torch.autograd.Function):
    """Forward as `kan_linear`; `symbolic` emits the custom node (used only while exporting, never differentiated)."""

    @staticmethod
    def forward(ctx, x, tables, grid_range, edge_scale, *affine):
        return _evaluate(x, tables, grid_range, edge_scale, *affine)

    @staticmethod
    def symbolic(g, x, tables, grid_range, edge_scale, *affine):
        node = g.op(f"{OPS_DOMAIN}::{KAN_LINEAR_OP}", x, tables, *affine, **{f"{GRID_RANGE_ATTR}_f": grid_range,
                                                                            f"{EDGE_SCALE_ATTR}_f": edge_scale})
        sizes = x.type().sizes()
        node.setType(x.type().with_sizes(list(sizes[:-1]) + [tables.type().sizes()[0]]))
        return node


def kan_linear(x, tables, grid_range: float, edge_scale: float = 0.0, in_scale=None, in_bias=None):
    """Sum over inputs of the per-edge LERPs of `tables` [out, in, G] at `in_scale * x + in_bias` (x [..., in]),
    each rounded to a multiple of `edge_scale` (0: none); exact as the qonnx op."""
    return evaluate_or_export(KANLinearExportFunction, _evaluate, x, tables,
                              (onnx_grid_range(grid_range), float(edge_scale or 0.0)), in_scale, in_bias)
