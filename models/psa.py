"""Personal Self-Attention (PSA): a learnable per-channel 1-D function, evaluated exactly.

Per channel c, with E keys/values (REFERENCE_SPEC 1.1):

    a_k(x) = softmax_k( -(x - q_bias[c,k])^2 / (q_weight[c,k]^2 + epsilon) )
    f_c(x) = o_weight[c] * ( sum_k a_k(x) * (x * v_weight[c,k]) ) + o_bias[c]

applied element-wise on the last axis (channels) of any-rank input. `PSA` evaluates this exactly (plain autograd,
memory O(elements x E)); `models.lerp_psa.LerpPSA` tabulates it on a grid and interpolates;
`models.res_psa.ResPSA` adds the residual.
"""

import math

import torch
from torch import nn

from psa_finn.common.grid import LERP_GRID_RANGE, LERP_GRID_SIZE, grid_points

PSA_EXPANSION = 8
PSA_EPSILON = 1.0


def psa_terms(x, v_weight, q_weight, q_bias, o_weight, o_bias, epsilon):
    """The PSA function of x[..., C] with its intermediates: (attention [..., C, E], pre-affine [..., C], output).

    The pre-affine output is `sum_k a_k * x * v_k` (before o_weight/o_bias).
    """
    xe = x.unsqueeze(-1)
    scores = (xe - q_bias) ** 2 / (q_weight * q_weight + epsilon)
    attention = torch.softmax(-scores, dim=-1)
    pre_affine = (attention * (xe * v_weight)).sum(dim=-1)
    return attention, pre_affine, o_weight * pre_affine + o_bias


class PSA(nn.Module):
    """Exact PSA bank over `num_channels` channels with `expansion` basis terms each.

    Initialisation (REFERENCE_SPEC 1.2): o_weight = 1, o_bias = 0, q_weight = 1; v_weight ~ N(0, 4^2) when
    `is_in_residual and distill_init`, N(0, 2/(1+E)) when `is_in_residual` only, else U(+-sqrt(6/(1+E)));
    q_bias ~ U(-1, 1) with `distill_init`, else U(-3, 3). `epsilon` is a buffer (not learned).
    `grid_size`/`grid_range` give the grid `table()` samples the function on (common/grid.py).
    """

    def __init__(self, num_channels: int, expansion: int = PSA_EXPANSION, epsilon: float = PSA_EPSILON,
                 is_in_residual: bool = False, distill_init: bool = True,
                 grid_size: int = LERP_GRID_SIZE, grid_range: float = LERP_GRID_RANGE):
        super().__init__()
        if num_channels < 1 or expansion < 1:
            raise ValueError(f"PSA needs num_channels >= 1 and expansion >= 1, got {num_channels}, {expansion}")
        self.num_channels = num_channels
        self.expansion = expansion
        self.grid_size = grid_size
        self.grid_range = float(grid_range)
        self.v_weight = nn.Parameter(torch.empty(num_channels, expansion))
        self.q_weight = nn.Parameter(torch.ones(num_channels, expansion))
        self.q_bias = nn.Parameter(torch.empty(num_channels, expansion))
        self.o_weight = nn.Parameter(torch.ones(num_channels))
        self.o_bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("epsilon", torch.tensor([float(epsilon)]))
        with torch.no_grad():
            if is_in_residual and distill_init:
                self.v_weight.normal_(0.0, 4.0)
            elif is_in_residual:
                self.v_weight.normal_(0.0, math.sqrt(2.0 / (1 + expansion)))
            else:
                bound = math.sqrt(6.0 / (1 + expansion))
                self.v_weight.uniform_(-bound, bound)
            q_bound = 1.0 if distill_init else 3.0
            self.q_bias.uniform_(-q_bound, q_bound)

    def function_parameters(self):
        """The tensors the function depends on, in `psa_terms` argument order."""
        return self.v_weight, self.q_weight, self.q_bias, self.o_weight, self.o_bias, self.epsilon

    def forward(self, x):
        return psa_terms(x, *self.function_parameters())[2]

    def table(self):
        """The exact function sampled on `grid_points(grid_size, grid_range)`: [C, G], no residual."""
        grid = torch.as_tensor(grid_points(self.grid_size, self.grid_range), dtype=self.v_weight.dtype,
                               device=self.v_weight.device)
        return self(grid[:, None].expand(-1, self.num_channels)).t()

    def extra_repr(self):
        return f"num_channels={self.num_channels}, expansion={self.expansion}"
