"""The LerpPSA function in torch: evaluated bit-identically to the qonnx op, exported as one `LerpPSA` node.

`lerp_psa(x, table, grid_range, in_scale, in_bias, channel_axis)` computes `lerp(table[c], in_scale[c] * x +
in_bias[c])` for every c along `channel_axis` of x, in float64 with the operation order of
`custom_ops.lerp_psa.lerp_psa_numpy` (affine, then `common.grid`'s segment and fraction, then `y0 + u * (y1 - y0)`)
and rounds once to the input dtype, so the QAT model and `execute_onnx` agree to the last bit. It is differentiable in
x, table, in_scale and in_bias (`models.lerp.lerp_table`'s backward). During ONNX export it becomes
`psa_finn.custom_ops::LerpPSA(x, table[, in_scale, in_bias])` with the attributes `grid_range` and `channel_axis` (the
axis as given, negative or not: the op normalizes it against the input rank), and the output typed as the input (same
dtype and shape), so torch's exporter needs no shape inference of its own for the node.
"""

import numpy as np
import torch

from psa_finn.custom_ops.domain import CHANNEL_AXIS_ATTR, DEFAULT_CHANNEL_AXIS, LERP_PSA_OP, OPS_DOMAIN, \
    normalize_channel_axis
from psa_finn.models.lerp import lerp_table


def onnx_grid_range(grid_range: float) -> float:
    """The grid range as the float32 ONNX attribute stores it (what the exported node will compute with)."""
    return float(np.float32(grid_range))


def input_affine(v, in_scale=None, in_bias=None):
    """in_scale * v + in_bias in float64 along v's last axis (v itself without an affine)."""
    return v if in_scale is None else v * in_scale.double() + in_bias.double()


def evaluate_or_export(export_function, evaluate, x, table, options, in_scale=None, in_bias=None):
    """`evaluate(x, table, *options, in_scale, in_bias)`, or while torch exports to ONNX `export_function` (a
    torch.autograd.Function whose `symbolic` emits the custom node with the affine inputs, if any, last)."""
    if (in_scale is None) != (in_bias is None):
        raise ValueError("in_scale and in_bias must be given together (or neither)")
    if torch.onnx.is_in_onnx_export():
        affine = () if in_scale is None else (in_scale, in_bias)
        return export_function.apply(x, table, *options, *affine)
    return evaluate(x, table, *options, in_scale, in_bias)


def _evaluate(x, table, grid_range, channel_axis, in_scale=None, in_bias=None):
    v = input_affine(x.double().movedim(channel_axis, -1), in_scale, in_bias)
    return lerp_table(v, table.double(), grid_range).movedim(-1, channel_axis).to(x.dtype)


class LerpPSAExportFunction(torch.autograd.Function):
    """Forward as `lerp_psa`; `symbolic` emits the custom node (used only while exporting, never differentiated)."""

    @staticmethod
    def forward(ctx, x, table, grid_range, channel_axis, *affine):
        return _evaluate(x, table, grid_range, channel_axis, *affine)

    @staticmethod
    def symbolic(g, x, table, grid_range, channel_axis, *affine):
        node = g.op(f"{OPS_DOMAIN}::{LERP_PSA_OP}", x, table, *affine, grid_range_f=grid_range,
                    **{f"{CHANNEL_AXIS_ATTR}_i": channel_axis})
        node.setType(x.type())
        return node


def lerp_psa(x, table, grid_range: float, in_scale=None, in_bias=None, channel_axis: int = DEFAULT_CHANNEL_AXIS):
    """Per-channel LERP of `table` [C, G] at `in_scale * x + in_bias`, channel c at index c of `channel_axis` of x,
    exact as the qonnx op."""
    normalize_channel_axis(channel_axis, x.dim())
    return evaluate_or_export(LerpPSAExportFunction, _evaluate, x, table, (onnx_grid_range(grid_range),
                                                                          int(channel_axis)), in_scale, in_bias)
