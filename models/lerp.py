"""Per-channel table interpolation on the uniform grid of common/grid.py, with linear extrapolation (custom autograd).

`lerp_table(x, table, grid_range)` evaluates, for x[..., C] and table[C, G] sampled at `grid_points(G, R)`,

    i, u = segment_and_fraction(x, G, R)          (i clamped to [0, G-2], u not clamped)
    y    = table[c, i] + u * (table[c, i+1] - table[c, i])

so that inputs beyond [-R, R] continue the first/last segment linearly (REFERENCE_SPEC 2.3-2.5). The rises
table[c, i+1] - table[c, i] are taken once per table (the same float values as per element, so y is bit-identical
to the formula), and both lookups use one flat index.

Speed. The rows are processed in cache-sized blocks on CPU (`models.blocking`): segment index, fraction, flat
index and looked-up samples of a block stay in the core's cache, and the only tensors of the input's size that a
forward or backward allocates are its result (y, or the input gradient) and what it saves.

`lerp_edge_sum(x, tables, grid_range, edge_scale)` is the same interpolation for a KAN layer's edges, tables
[J, I, G] on x[..., I], summed over the inputs (`EdgeSumFunction`).

Saved for the backward (never modified, so a graph can be back-propagated more than once with
`retain_graph=True`): the segment index (one byte for G <= 257) and the fraction, or with `save_memory=True` only
the input (a reference, no copy; index and fraction are recomputed block by block).
"""

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from psa_finn.models.blocking import row_blocks
from psa_finn.common.grid import grid_step, segment_and_fraction

MAX_TABLE_ENTRIES = 2 ** 31 - 1


def _segment_dtype(grid_size: int):
    return torch.uint8 if grid_size <= 257 else torch.int64


def _channel_offsets(num_channels: int, grid_size: int, device):
    """c * G for c = 0..C-1 (int32: `lerp_table` refuses tables an int32 index cannot reach)."""
    return torch.arange(num_channels, device=device, dtype=torch.int32) * grid_size


def _flat_index(segment, offsets):
    """segment[r, c] + c * G, flattened: the index into a channel-major [C, G] table (in place if segment is int32)."""
    return segment.to(torch.int32).add_(offsets).view(-1)


def _rises(table):
    """table[:, i+1] - table[:, i] as a flat [C * G] vector (last sample of each channel 0, never indexed)."""
    return F.pad(table[:, 1:] - table[:, :-1], (0, 1)).reshape(-1)


def _lookup(flat_table, index, like):
    return flat_table.index_select(0, index).view(like.shape)


def _as_rows(tensor, num_channels: int):
    """`tensor` [..., C] as contiguous rows [R, C] (a transposed input too: the kernels flatten them with view)."""
    return tensor.reshape(-1, num_channels).contiguous()


class LerpFunction(torch.autograd.Function):
    """y = LERP of table[C, G] at x[..., C]; gradients for x (edge slope outside the range) and for the table."""

    @staticmethod
    def forward(ctx, x, table, grid_range, save_memory):
        num_channels, grid_size = table.shape
        rows = _as_rows(x, num_channels)
        values = table.to(torch.promote_types(table.dtype, x.dtype))
        flat_values, flat_rises = values.reshape(-1), _rises(values)
        offsets = _channel_offsets(num_channels, grid_size, x.device)
        y = torch.empty(rows.shape, dtype=values.dtype, device=x.device)
        if not save_memory:
            segments = torch.empty(rows.shape, dtype=_segment_dtype(grid_size), device=x.device)
            fractions = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
        for block in row_blocks(rows.shape[0], num_channels, x.device):
            segment, fraction = segment_and_fraction(rows[block].contiguous(), grid_size, grid_range,
                                                     index_dtype=torch.int32)
            if not save_memory:
                segments[block] = segment
                fractions[block] = fraction
            index = _flat_index(segment, offsets)
            torch.mul(_lookup(flat_rises, index, fraction), fraction, out=y[block])
            y[block] += _lookup(flat_values, index, fraction)
        ctx.grid_range = grid_range
        ctx.save_memory = save_memory
        if save_memory:
            ctx.save_for_backward(x, table)
        else:
            ctx.save_for_backward(segments, fractions, table)
        return y.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        saved = ctx.saved_tensors
        table = saved[-1]
        num_channels, grid_size = table.shape
        grad_rows = _as_rows(grad_y, num_channels)
        offsets = _channel_offsets(num_channels, grid_size, grad_y.device)
        want_x, want_table = ctx.needs_input_grad[:2]
        if want_table:
            grad_left = torch.zeros(num_channels * grid_size, dtype=table.dtype, device=table.device)
            grad_rise = torch.zeros_like(grad_left)
        if want_x:
            values = table.to(torch.promote_types(table.dtype, grad_y.dtype))
            flat_slopes = _rises(values) * grid_step(grid_size, ctx.grid_range)
            grad_x = torch.empty(grad_rows.shape, dtype=values.dtype, device=grad_y.device)
        for block in row_blocks(grad_rows.shape[0], num_channels, grad_y.device):
            if ctx.save_memory:
                segment, fraction = segment_and_fraction(_as_rows(saved[0], num_channels)[block].contiguous(),
                                                         grid_size, ctx.grid_range, index_dtype=torch.int32)
            else:
                segment, fraction = saved[0][block], saved[1][block]
            index = _flat_index(segment, offsets)
            grad = grad_rows[block]
            if want_table:
                # y = left + u * rise (rise = right - left): the left sample gets grad_y, the rise u * grad_y.
                grad_left.index_add_(0, index, grad.reshape(-1).to(table.dtype))
                grad_rise.index_add_(0, index, (fraction * grad).reshape(-1).to(table.dtype))
            if want_x:
                torch.mul(_lookup(flat_slopes, index, grad), grad, out=grad_x[block])
        grad_table = None
        if want_table:
            grad_table = grad_left.view(num_channels, grid_size)
            grad_rise = grad_rise.view(num_channels, grid_size)[:, :-1]
            grad_table[:, :-1] -= grad_rise
            grad_table[:, 1:] += grad_rise
        return (grad_x.view(grad_y.shape) if want_x else None), grad_table, None, None


def lerp_table(x, table, grid_range: float, save_memory: bool = False):
    """Interpolate the per-channel `table` [C, G] (samples at grid_points(G, grid_range)) at x[..., C]."""
    if table.dim() != 2 or table.shape[1] < 2:
        raise ValueError(f"table must be [C, G] with G >= 2, got shape {tuple(table.shape)}")
    if table.numel() > MAX_TABLE_ENTRIES:
        raise ValueError(f"table has {table.numel()} entries, more than the {MAX_TABLE_ENTRIES} an int32 index reaches")
    if x.shape[-1] != table.shape[0]:
        raise ValueError(f"input has {x.shape[-1]} channels on its last axis, the table has {table.shape[0]}")
    return LerpFunction.apply(x, table, float(grid_range), bool(save_memory))


class EdgeSumFunction(torch.autograd.Function):
    """y[..., j] = sum_i q(lerp(tables[j, i], x[..., i])) for x[..., I], tables [J, I, G]: a KAN layer's edges.

    Rows run in cache-sized blocks (`models.blocking`, I x J elements per row): per block, the segment and fraction
    of each input once ([B, I]), two gathers from the [I * G, J] left-sample and rise tables ([B, I, J]), the edge
    values rounded onto the edge grid q(v) = round_half_even(v / edge_scale) * edge_scale when `edge_scale` is
    given, and their sum over inputs. No [N, I, J] tensor exists (let alone [N, I, J, G]): a forward allocates its
    result and the saved segments/fractions [N, I], each block one [B, I, J] temporary. With an edge grid every edge
    value is an integer multiple of a power of two and the float64 sum is exact in any order, so the result equals
    `custom_ops.kan_linear.kan_linear_numpy` bit for bit. The rounding passes the gradient straight through (STE);
    the backward is lerp_table's, per edge.
    """

    @staticmethod
    def forward(ctx, x, tables, grid_range, edge_scale):
        num_outputs, num_inputs, grid_size = tables.shape
        rows = _as_rows(x, num_inputs)
        values = tables.to(torch.promote_types(tables.dtype, x.dtype))
        lefts = values.permute(1, 2, 0)                                                   # [I, G, J]
        rises = F.pad(lefts[:, 1:] - lefts[:, :-1], (0, 0, 0, 1)).reshape(-1, num_outputs)
        lefts = lefts.reshape(-1, num_outputs)                                            # [I * G, J]
        offsets = _channel_offsets(num_inputs, grid_size, x.device)
        y = torch.empty(rows.shape[0], num_outputs, dtype=values.dtype, device=x.device)
        segments = torch.empty(rows.shape, dtype=_segment_dtype(grid_size), device=x.device)
        fractions = torch.empty(rows.shape, dtype=values.dtype, device=x.device)
        for block in row_blocks(rows.shape[0], num_inputs * num_outputs, x.device):
            segment, fraction = segment_and_fraction(rows[block].to(values.dtype), grid_size, grid_range,
                                                     index_dtype=torch.int32)
            segments[block], fractions[block] = segment, fraction
            index = _flat_index(segment, offsets)
            shape = (fraction.shape[0], num_inputs, num_outputs)
            edges = rises.index_select(0, index).view(shape).mul_(fraction[..., None])
            edges += lefts.index_select(0, index).view(shape)
            if edge_scale is not None:
                edges = edges.div_(edge_scale).round_().mul_(edge_scale)
            torch.sum(edges, dim=1, out=y[block])
        ctx.grid_range = grid_range
        ctx.save_for_backward(segments, fractions, tables)
        ctx.x_shape = x.shape
        return y.view(*x.shape[:-1], num_outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        segments, fractions, tables = ctx.saved_tensors
        num_outputs, num_inputs, grid_size = tables.shape
        grad_rows = grad_y.reshape(-1, num_outputs)
        want_x, want_table = ctx.needs_input_grad[:2]
        offsets = _channel_offsets(num_inputs, grid_size, grad_y.device)
        if want_x:
            values = tables.to(torch.promote_types(tables.dtype, grad_y.dtype)).permute(1, 2, 0)
            slopes = F.pad(values[:, 1:] - values[:, :-1], (0, 0, 0, 1)).reshape(-1, num_outputs) * \
                grid_step(grid_size, ctx.grid_range)
            grad_x = torch.empty(grad_rows.shape[0], num_inputs, dtype=slopes.dtype, device=grad_y.device)
        if want_table:
            grad_left = torch.zeros(num_inputs * grid_size, num_outputs, dtype=tables.dtype, device=tables.device)
            grad_rise = torch.zeros_like(grad_left)
        for block in row_blocks(grad_rows.shape[0], num_inputs * num_outputs, grad_y.device):
            index = _flat_index(segments[block], offsets)
            grad = grad_rows[block]
            shape = (grad.shape[0], num_inputs, num_outputs)
            if want_x:
                grad_x[block] = (slopes.index_select(0, index).view(shape) * grad[:, None, :]).sum(-1)
            if want_table:
                spread = grad.to(tables.dtype)[:, None, :].expand(shape)
                grad_left.index_add_(0, index, spread.reshape(-1, num_outputs))
                grad_rise.index_add_(0, index, (spread * fractions[block].to(tables.dtype)[..., None]).reshape(
                    -1, num_outputs))
        grad_tables = None
        if want_table:
            grad_left = grad_left.view(num_inputs, grid_size, num_outputs)
            grad_rise = grad_rise.view(num_inputs, grid_size, num_outputs)[:, :-1]
            grad_left[:, :-1] -= grad_rise
            grad_left[:, 1:] += grad_rise
            grad_tables = grad_left.permute(2, 0, 1).contiguous()
        return (grad_x.view(*ctx.x_shape) if want_x else None), grad_tables, None, None


def lerp_edge_sum(x, tables, grid_range: float, edge_scale=None):
    """The KAN layer's sum of per-edge LERPs: y[..., j] = sum_i q(lerp(tables[j, i], x[..., i])) (EdgeSumFunction),
    `tables` [J, I, G] sampled at grid_points(G, grid_range), q rounding to multiples of `edge_scale` (None: none)."""
    if tables.dim() != 3 or tables.shape[2] < 2:
        raise ValueError(f"tables must be [out, in, G] with G >= 2, got shape {tuple(tables.shape)}")
    if x.shape[-1] != tables.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features on its last axis, the tables have {tables.shape[1]} inputs")
    return EdgeSumFunction.apply(x, tables, float(grid_range), None if edge_scale is None else float(edge_scale))
