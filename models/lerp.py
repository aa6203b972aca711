"""Per-channel table interpolation on the uniform grid of models/grid.py, with linear extrapolation (custom autograd).

`lerp_table(x, table, grid_range)` evaluates, for x[..., C] and table[C, G] sampled at `grid_points(G, R)`,

    i, u = segment_and_fraction(x, G, R)          (i clamped to [0, G-2], u not clamped)
    y    = table[c, i] + u * (table[c, i+1] - table[c, i])

so that inputs beyond [-R, R] continue the first/last segment linearly (REFERENCE_SPEC 2.3-2.5). The rises
table[c, i+1] - table[c, i] are taken once per table (the same float values as per element, so y is bit-identical
to the formula), and both lookups use one flat index. The backward keeps O(elements) memory, independent of how the
table was produced: the segment index (one byte for G <= 257) and the fraction, or with `save_memory=True` only the
input (index and fraction recomputed). Saved tensors are never modified, so a graph can be back-propagated more than
once (`retain_graph=True`).
"""

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from models.grid import grid_step, segment_and_fraction

MAX_TABLE_ENTRIES = 2 ** 31 - 1


def _segment_dtype(grid_size: int):
    return torch.uint8 if grid_size <= 257 else torch.int64


def _segments(x, grid_size: int, grid_range: float):
    """Segment index (uint8 for G <= 257) and fraction of x (`models.grid.segment_and_fraction`)."""
    return segment_and_fraction(x, grid_size, grid_range, index_dtype=_segment_dtype(grid_size))


def _flat_index(segment, num_channels: int, grid_size: int):
    """segment[..., c] + c * G flattened: the index into a channel-major [C, G] table (int32 for a uint8 segment)."""
    offsets = torch.arange(num_channels, device=segment.device, dtype=torch.int32) * grid_size
    return (segment + offsets).reshape(-1)


def _rises(table):
    """table[:, i+1] - table[:, i] as [C, G] (last column 0, never indexed: segments stop at G-2)."""
    return F.pad(table[:, 1:] - table[:, :-1], (0, 1))


def _lookup(table, index, shape):
    return table.reshape(-1).index_select(0, index).view(shape)


class LerpFunction(torch.autograd.Function):
    """y = LERP of table[C, G] at x[..., C]; gradients for x (edge slope outside the range) and for the table."""

    @staticmethod
    def forward(ctx, x, table, grid_range, save_memory):
        num_channels, grid_size = table.shape
        segment, fraction = _segments(x, grid_size, grid_range)
        index = _flat_index(segment, num_channels, grid_size)
        values = table.to(torch.promote_types(table.dtype, x.dtype))
        y = _lookup(_rises(values), index, x.shape).mul_(fraction).add_(_lookup(values, index, x.shape))
        ctx.grid_range = grid_range
        ctx.save_memory = save_memory
        if save_memory:
            ctx.save_for_backward(x, table)
        else:
            ctx.save_for_backward(segment, fraction, table)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        num_channels, grid_size = ctx.saved_tensors[-1].shape
        if ctx.save_memory:
            x, table = ctx.saved_tensors
            segment, fraction = _segments(x, grid_size, ctx.grid_range)
        else:
            segment, fraction, table = ctx.saved_tensors
        index = _flat_index(segment, num_channels, grid_size)
        grad_x = grad_table = None
        if ctx.needs_input_grad[1]:
            # y = left + u * rise (rise = right - left): the left sample gets grad_y, the rise u * grad_y.
            # Before grad_x, so that the temporary u * grad_y is freed by the time grad_x is allocated.
            grad_left = torch.zeros(num_channels * grid_size, dtype=table.dtype, device=table.device)
            grad_left.index_add_(0, index, grad_y.reshape(-1).to(table.dtype))
            grad_rise = torch.zeros_like(grad_left)
            grad_rise.index_add_(0, index, (fraction * grad_y).reshape(-1).to(table.dtype))
            grad_table = grad_left.view(num_channels, grid_size)
            grad_rise = grad_rise.view(num_channels, grid_size)[:, :-1]
            grad_table[:, :-1] -= grad_rise
            grad_table[:, 1:] += grad_rise
        if ctx.needs_input_grad[0]:
            values = table.to(torch.promote_types(table.dtype, grad_y.dtype))
            slopes = _rises(values) * grid_step(grid_size, ctx.grid_range)
            grad_x = _lookup(slopes, index, grad_y.shape).mul_(grad_y)
        return grad_x, grad_table, None, None


def lerp_table(x, table, grid_range: float, save_memory: bool = False):
    """Interpolate the per-channel `table` [C, G] (samples at grid_points(G, grid_range)) at x[..., C]."""
    if table.dim() != 2 or table.shape[1] < 2:
        raise ValueError(f"table must be [C, G] with G >= 2, got shape {tuple(table.shape)}")
    if table.numel() > MAX_TABLE_ENTRIES:
        raise ValueError(f"table has {table.numel()} entries, more than the {MAX_TABLE_ENTRIES} an int32 index reaches")
    if x.shape[-1] != table.shape[0]:
        raise ValueError(f"input has {x.shape[-1]} channels on its last axis, the table has {table.shape[0]}")
    return LerpFunction.apply(x, table, float(grid_range), bool(save_memory))
