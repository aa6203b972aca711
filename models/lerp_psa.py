"""LERP-PSA: the PSA function tabulated on a uniform grid and linearly interpolated (REFERENCE_SPEC 2).

Each forward evaluates the exact PSA only on the G grid points per channel (`GridPSAFunction`: work O(G*C*E),
independent of the batch; it saves only the parameters) and interpolates the resulting table at every activation
(`models.lerp.LerpFunction`, memory O(elements), independent of E). Outside [-R, R] the function continues
linearly with the edge slopes.

State-dict layout equals the reference `LerpPersonalSelfAttention`: the PSA parameters, then the buffers `epsilon`
[1], `grid` [G, C] (every column `grid_points(G, R)`) and `grid_ifeat_offset` [1, C] (c * G). The two geometry
buffers are kept only so that reference state dicts load strictly (and ours load into the reference); the
computation takes the grid from common/grid.py (exact in any dtype), and loading buffer values that disagree with it
is an error.

Table reuse. The table is computed once and reused by later forwards while every tensor it depends on is unchanged:
the same objects, unchanged version counters (optimiser steps, `load_state_dict`, in-place edits), and equal values,
dtype and device (which also catches `.to()` and edits through `.data`). Two cases:

* not recorded by autograd (no_grad / inference mode, or no parameter requires grad), in either mode: the table is
  detached, so reuse is always safe;
* recorded by autograd, training mode only: forwards share one table, so a training step that applies the same
  module several times (shared weights) evaluates the grid PSA and its backward once. The shared table is dropped
  as soon as a backward passes through it (a tensor hook), so forward/backward/step loops, gradient accumulation,
  `retain_graph=True` and `torch.autograd.grad` behave as without sharing. The one pattern that changes: two
  training-mode outputs computed from one shared table and then back-propagated by separate `backward()` calls
  without `retain_graph=True` -- the first call frees the table's graph, so the second raises a RuntimeError that
  says so (back-propagate the sum of the losses once, or pass `retain_graph=True` to the earlier calls).

A recorded forward in eval mode always computes a fresh table (plain PyTorch semantics for input-gradient work).
A shared table that no backward reaches (a training forward never back-propagated) is kept, with its graph (the
parameters and the grid), until a forward finds the parameters changed.
"""

import functools
import weakref

import torch
from torch.autograd.function import once_differentiable

from psa_finn.models.blocking import row_blocks
from psa_finn.common.grid import LERP_GRID_RANGE, LERP_GRID_SIZE, grid_points
from psa_finn.models.lerp import lerp_table
from psa_finn.models.psa import PSA, PSA_EXPANSION

SHARED_TABLE_FREED = (
    "LerpPSA: backward through a grid table whose graph an earlier backward already freed. In training mode the "
    "forwards of one LerpPSA share its grid table until a backward passes through it, so outputs computed before "
    "that backward cannot be back-propagated by separate backward() calls: back-propagate the sum of the losses "
    "once, or pass retain_graph=True to all but the last call")


def _expansion_first(tensor):
    """[C, E] -> [E, 1, C], contiguous (broadcasting a strided view is several times slower on CPU): broadcasts
    against a [g, C] block of grid rows with the expansion axis leading."""
    return tensor.t()[:, None, :].contiguous()


class _GridTerms:
    """The parameters in the [E, 1, C] layout the grid blocks broadcast against."""

    def __init__(self, v_weight, q_weight, q_bias, epsilon):
        self.v_weight = _expansion_first(v_weight)
        self.q_bias = _expansion_first(q_bias)
        self.negative_width2 = _expansion_first(-(q_weight * q_weight + epsilon))

    def attention(self, grid_rows):
        """For grid rows [g, C]: the offsets grid - q_bias [E, g, C], the attention [E, g, C] (softmax over dim 0)
        and its value mean m = sum_k a_k v_k [g, C]."""
        diff = grid_rows - self.q_bias
        attention = torch.softmax(diff.square().div_(self.negative_width2), dim=0)
        return diff, attention, (attention * self.v_weight).sum(dim=0)


class GridPSAFunction(torch.autograd.Function):
    """PSA evaluated on a grid [G, C] -> table [G, C], with a hand-written backward over the grid only.

    The table is o_weight * grid * m + o_bias with m = sum_k a_k v_k. Computed with the expansion axis first,
    [E, g, C] with the softmax over dim 0 (on CPU a softmax over a leading axis vectorises across g * C, one over a
    trailing axis of E = 8 elements does not), in cache-sized blocks of grid rows (`models.blocking`). Saves only
    the parameters and the grid: the backward recomputes each block's attention where it needs it, which on CPU is
    faster than keeping the [E, G, C] attention (a batch-independent O(G*C*E) array) in memory. No gradient for the
    grid or epsilon (both buffers).
    """

    @staticmethod
    def forward(ctx, grid, v_weight, q_weight, q_bias, o_weight, o_bias, epsilon):
        terms = _GridTerms(v_weight, q_weight, q_bias, epsilon)
        table = torch.empty(grid.shape, dtype=torch.promote_types(grid.dtype, v_weight.dtype), device=grid.device)
        for block in row_blocks(grid.shape[0], v_weight.numel(), grid.device):
            value_mean = terms.attention(grid[block])[2]
            torch.add(o_weight * (grid[block] * value_mean), o_bias, out=table[block])
        ctx.save_for_backward(grid, v_weight, q_weight, q_bias, o_weight, epsilon)
        return table

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_table):
        try:
            grid, v_weight, q_weight, q_bias, o_weight, epsilon = ctx.saved_tensors
        except RuntimeError as error:
            raise RuntimeError(f"{SHARED_TABLE_FREED} ({error})") from error
        terms = _GridTerms(v_weight, q_weight, q_bias, epsilon)
        grad_o_bias = grad_table.sum(dim=0)
        grad_o_weight = torch.zeros_like(o_weight)
        weighted_sum, grad_diff_sum, grad_diff2_sum = (torch.zeros_like(v_weight.t()) for _ in range(3))   # [E, C]
        for block in row_blocks(grid.shape[0], v_weight.numel(), grid.device):
            grid_rows, grad_rows = grid[block], grad_table[block]
            diff, attention, value_mean = terms.attention(grid_rows)
            grad_o_weight += (grad_rows * grid_rows * value_mean).sum(dim=0)
            weighted = attention.mul_(grad_rows * o_weight * grid_rows)        # a_k dL/dm [E, g, C]
            weighted_sum += weighted.sum(dim=1)
            grad_diff = weighted.mul_(terms.v_weight - value_mean).mul_(diff)   # softmax backward, then d logit/d diff
            grad_diff_sum += grad_diff.sum(dim=1)
            grad_diff2_sum += grad_diff.mul_(diff).sum(dim=1)
        width2 = q_weight * q_weight + epsilon
        grad_v_weight = weighted_sum.t()
        grad_q_bias = 2.0 * grad_diff_sum.t() / width2
        grad_q_weight = 2.0 * grad_diff2_sum.t() * q_weight / (width2 * width2)
        return None, grad_v_weight, grad_q_weight, grad_q_bias, grad_o_weight, grad_o_bias, None


class _TableCache:
    """A grid table with the tensors it was computed from (the objects, their versions and a copy of the values)."""

    __slots__ = ("sources", "versions", "requires_grad", "snapshot", "table", "__weakref__")

    def __init__(self, sources, table):
        self.sources = sources
        self.versions = tuple(s._version for s in sources)
        self.requires_grad = tuple(s.requires_grad for s in sources)
        self.snapshot = tuple(s.detach().clone() for s in sources)
        self.table = table

    def matches(self, sources, recorded: bool) -> bool:
        """Whether `table` is what these sources give now, and usable by a forward that is (not) `recorded`."""
        if recorded != self.table.requires_grad:
            return False
        if self.table.is_inference() and not torch.is_inference_mode_enabled():
            return False
        if recorded and not all(s is c and s._version == v and s.requires_grad == r for s, c, v, r in
                                zip(sources, self.sources, self.versions, self.requires_grad)):
            return False
        return all(s.dtype == c.dtype and s.device == c.device and torch.equal(s, c)
                   for s, c in zip(sources, self.snapshot))


def _drop_shared_table(module_ref, cache_ref, grad):
    """Tensor hook on a shared table: a backward reached it, so later forwards must compute a new table."""
    module = module_ref()
    if module is not None and module._cache is cache_ref():
        module._cache = None


class LerpPSA(PSA):
    """PSA bank evaluated by LERP of its table on `grid_points(grid_size, grid_range)` (no residual).

    `save_memory=True` keeps only the input for the interpolation backward (index and fraction are recomputed)
    instead of a one-byte segment index and the fraction per element.
    `table()` returns the grid samples [C, G] of the function (what the interpolation uses).
    """

    def __init__(self, num_channels: int, expansion: int = PSA_EXPANSION, grid_size: int = LERP_GRID_SIZE,
                 grid_range: float = LERP_GRID_RANGE, save_memory: bool = False, **psa_kwargs):
        super().__init__(num_channels, expansion, grid_size=grid_size, grid_range=grid_range, **psa_kwargs)
        self.save_memory = save_memory
        self.register_buffer("grid", self._grid_columns(torch.float32).contiguous())
        self.register_buffer("grid_ifeat_offset", self._expected_offsets())
        self._cache = None

    def _grid_columns(self, dtype, device=None):
        """[G, C] view of `grid_points(grid_size, grid_range)` in every column (exact in float64)."""
        column = torch.as_tensor(grid_points(self.grid_size, self.grid_range), dtype=dtype, device=device)
        return column[:, None].expand(-1, self.num_channels)

    def _expected_offsets(self, device=None):
        return (torch.arange(self.num_channels, device=device) * self.grid_size)[None, :]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        grid, offsets = state_dict.get(prefix + "grid"), state_dict.get(prefix + "grid_ifeat_offset")
        if isinstance(grid, torch.Tensor) and grid.shape == self.grid.shape:
            expected = self._grid_columns(torch.float64)
            if not torch.allclose(grid.detach().double().cpu(), expected, rtol=0, atol=1e-5):
                raise ValueError(f"{prefix}grid does not hold linspace(-{self.grid_range}, {self.grid_range}, "
                                 f"{self.grid_size}) in every column (max deviation "
                                 f"{(grid.double().cpu() - expected).abs().max():.3g}); this module only "
                                 f"interpolates on that grid (a corrected_grid_init reference model is not supported)")
        if isinstance(offsets, torch.Tensor) and offsets.shape == self.grid_ifeat_offset.shape:
            if not torch.equal(offsets.cpu().long(), self._expected_offsets()):
                raise ValueError(f"{prefix}grid_ifeat_offset must be c * {self.grid_size} for c = 0..C-1")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _grid_table(self):
        """The [G, C] grid table, reused while every tensor it depends on is unchanged (see the module docstring)."""
        sources = self.function_parameters()
        recorded = torch.is_grad_enabled() and any(s.requires_grad for s in sources)
        reusable = self.training or not recorded
        if reusable and self._cache is not None and self._cache.matches(sources, recorded):
            return self._cache.table
        grid = self._grid_columns(self.v_weight.dtype, self.v_weight.device)
        table = GridPSAFunction.apply(grid, *sources)
        if not reusable:
            return table
        self._cache = _TableCache(sources, table if recorded else table.detach())
        if recorded:
            table.register_hook(functools.partial(_drop_shared_table, weakref.ref(self), weakref.ref(self._cache)))
        return self._cache.table

    def __getstate__(self):
        """Copies and pickles leave the table cache behind (a recorded table cannot be deep-copied)."""
        return dict(super().__getstate__(), _cache=None)

    def forward(self, x):
        return lerp_table(x, self._grid_table().t(), self.grid_range, self.save_memory)

    def table(self):
        """The function sampled on the grid: [C, G], no residual (a fresh tensor; differentiable in training)."""
        return self._grid_table().t().clone()

    def extra_repr(self):
        return f"{super().extra_repr()}, grid_size={self.grid_size}, grid_range={self.grid_range}, " \
               f"save_memory={self.save_memory}"
