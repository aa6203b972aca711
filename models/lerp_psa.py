"""LERP-PSA: the PSA function tabulated on a uniform grid and linearly interpolated (REFERENCE_SPEC 2).

Each forward evaluates the exact PSA only on the G grid points per channel (`GridPSAFunction`, memory O(G*C*E),
independent of the batch) and interpolates the resulting table at every activation (`models.lerp.LerpFunction`,
memory O(elements), independent of E). Outside [-R, R] the function continues linearly with the edge slopes.

State-dict layout equals the reference `LerpPersonalSelfAttention`: the PSA parameters, then the buffers `epsilon`
[1], `grid` [G, C] (every column `grid_points(G, R)`) and `grid_ifeat_offset` [1, C] (c * G). The two geometry
buffers are kept only so that reference state dicts load strictly (and ours load into the reference); the
computation takes the grid from models/grid.py (exact in any dtype), and loading buffer values that disagree with it
is an error.

In eval mode without autograd the table is cached together with a copy of every tensor it was computed from and
reused only while those are still equal (value, dtype, device): it cannot go stale after `load_state_dict`, an
optimiser step, `.to()` or any in-place edit.
"""

import torch
from torch.autograd.function import once_differentiable

from models.grid import LERP_GRID_RANGE, LERP_GRID_SIZE, grid_points
from models.lerp import lerp_table
from models.psa import PSA, PSA_EXPANSION, psa_terms


class GridPSAFunction(torch.autograd.Function):
    """PSA evaluated on a grid [G, C] -> table [G, C], with a hand-written backward over the grid only.

    Saves the grid attention [G, C, E] and pre-affine output [G, C] (no batch dimension anywhere). No gradient for
    the grid or epsilon (both buffers).
    """

    @staticmethod
    def forward(ctx, grid, v_weight, q_weight, q_bias, o_weight, o_bias, epsilon):
        attention, pre_affine, table = psa_terms(grid, v_weight, q_weight, q_bias, o_weight, o_bias, epsilon)
        ctx.save_for_backward(grid, v_weight, q_weight, q_bias, o_weight, epsilon, attention, pre_affine)
        return table

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_table):
        grid, v_weight, q_weight, q_bias, o_weight, epsilon, attention, pre_affine = ctx.saved_tensors
        grad_o_bias = grad_table.sum(dim=0)
        grad_o_weight = (grad_table * pre_affine).sum(dim=0)
        grad_pre = (grad_table * o_weight).unsqueeze(-1)                      # [G, C, 1]
        xe = grid.unsqueeze(-1)                                               # [G, C, 1]
        grad_v_weight = (grad_pre * attention * xe).sum(dim=0)
        grad_attention = grad_pre * (xe * v_weight)                           # [G, C, E]
        grad_logits = attention * (grad_attention - (grad_attention * attention).sum(dim=-1, keepdim=True))
        width2 = q_weight * q_weight + epsilon
        diff = xe - q_bias
        grad_scores = -grad_logits
        grad_q_bias = (grad_scores * (-2.0 * diff / width2)).sum(dim=0)
        grad_q_weight = (grad_scores * (-2.0 * diff * diff * q_weight / (width2 * width2))).sum(dim=0)
        return None, grad_v_weight, grad_q_weight, grad_q_bias, grad_o_weight, grad_o_bias, None


class LerpPSA(PSA):
    """PSA bank evaluated by LERP of its table on `grid_points(grid_size, grid_range)` (no residual).

    `save_memory=True` keeps only the input for the interpolation backward and recomputes index and fraction.
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
        """The [G, C] grid table, reused from the eval cache while every tensor it depends on is unchanged."""
        sources = self.function_parameters()
        use_cache = not self.training and not (torch.is_grad_enabled() and any(s.requires_grad for s in sources))
        if use_cache and self._cache is not None:
            snapshot, table = self._cache
            usable = torch.is_inference_mode_enabled() or not table.is_inference()
            if usable and all(s.dtype == c.dtype and s.device == c.device and torch.equal(s, c)
                              for s, c in zip(sources, snapshot)):
                return table
        grid = self._grid_columns(self.v_weight.dtype, self.v_weight.device)
        table = GridPSAFunction.apply(grid, *sources)
        self._cache = (tuple(s.detach().clone() for s in sources), table.detach()) if use_cache else None
        return table

    def forward(self, x):
        return lerp_table(x, self._grid_table().t(), self.grid_range, self.save_memory)

    def table(self):
        """The function sampled on the grid: [C, G], no residual (a fresh tensor; differentiable in training)."""
        return self._grid_table().t().clone()

    def extra_repr(self):
        return f"{super().extra_repr()}, grid_size={self.grid_size}, grid_range={self.grid_range}, " \
               f"save_memory={self.save_memory}"
