"""Per-channel table interpolation on the uniform grid of models/grid.py, with linear extrapolation (custom autograd).

`lerp_table(x, table, grid_range)` evaluates, for x[..., C] and table[C, G] sampled at `grid_points(G, R)`,

    i, u = segment_and_fraction(x, G, R)          (i clamped to [0, G-2], u not clamped)
    y    = table[c, i] + u * (table[c, i+1] - table[c, i])

so that inputs beyond [-R, R] continue the first/last segment linearly (REFERENCE_SPEC 2.3-2.5). The backward
keeps O(elements) memory, independent of how the table was produced: the segment index (one byte for G <= 257)
and the fraction, or with `save_memory=True` only the input (index and fraction recomputed). Saved tensors are
never modified, so a graph can be back-propagated more than once (`retain_graph=True`).
"""

import torch
from torch.autograd.function import once_differentiable

from models.grid import grid_step, segment_and_fraction


def _saved_index_dtype(grid_size: int):
    return torch.uint8 if grid_size <= 257 else torch.int64


def _flat_index(segment, num_channels: int, row_length: int):
    """Index into a channel-major flattened [C, row_length] tensor: segment[..., c] + c * row_length."""
    offsets = torch.arange(num_channels, device=segment.device) * row_length
    return segment.long() + offsets


class LerpFunction(torch.autograd.Function):
    """y = LERP of table[C, G] at x[..., C]; gradients for x (edge slope outside the range) and for the table."""

    @staticmethod
    def forward(ctx, x, table, grid_range, save_memory):
        num_channels, grid_size = table.shape
        segment, fraction = segment_and_fraction(x, grid_size, grid_range)
        index = _flat_index(segment, num_channels, grid_size)
        flat = table.reshape(-1)
        left = flat[index]
        y = left + fraction * (flat[index + 1] - left)
        ctx.grid_range = grid_range
        ctx.save_memory = save_memory
        if save_memory:
            ctx.save_for_backward(x, table)
        else:
            ctx.save_for_backward(segment.to(_saved_index_dtype(grid_size)), fraction, table)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        num_channels, grid_size = ctx.saved_tensors[-1].shape
        if ctx.save_memory:
            x, table = ctx.saved_tensors
            segment, fraction = segment_and_fraction(x, grid_size, ctx.grid_range)
        else:
            segment, fraction, table = ctx.saved_tensors
        grad_x = grad_table = None
        if ctx.needs_input_grad[0]:
            slopes = (table[:, 1:] - table[:, :-1]) * grid_step(grid_size, ctx.grid_range)
            grad_x = slopes.reshape(-1)[_flat_index(segment, num_channels, grid_size - 1)] * grad_y
        if ctx.needs_input_grad[1]:
            index = _flat_index(segment, num_channels, grid_size).reshape(-1)
            grad_flat = torch.zeros(num_channels * grid_size, dtype=table.dtype, device=table.device)
            grad_flat.index_add_(0, index, ((1 - fraction) * grad_y).reshape(-1).to(table.dtype))
            grad_flat.index_add_(0, index + 1, (fraction * grad_y).reshape(-1).to(table.dtype))
            grad_table = grad_flat.view(num_channels, grid_size)
        return grad_x, grad_table, None, None


def lerp_table(x, table, grid_range: float, save_memory: bool = False):
    """Interpolate the per-channel `table` [C, G] (samples at grid_points(G, grid_range)) at x[..., C]."""
    if table.dim() != 2 or table.shape[1] < 2:
        raise ValueError(f"table must be [C, G] with G >= 2, got shape {tuple(table.shape)}")
    if x.shape[-1] != table.shape[0]:
        raise ValueError(f"input has {x.shape[-1]} channels on its last axis, the table has {table.shape[0]}")
    return LerpFunction.apply(x, table, float(grid_range), bool(save_memory))
