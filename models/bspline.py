"""Linear B-spline activation (Deep Splines, B1 basis; REFERENCE_SPEC 3) with its TV(2) regulariser.

Per channel c, 65 coefficients on the knots `grid_points(65, 4)` (spacing T = 0.125); the activation is the
piecewise-linear interpolation of the coefficients, continued linearly beyond [-4, 4] with the first/last segment
slopes. That is exactly a LERP of the coefficient table (models.lerp), so the coefficients ARE the table.

The parameter `_coefficients_vect` [C * 65] is channel-major (`c * 65 + k`), as in the reference state dict.
"""

import torch
import torch.nn.functional as F
from torch import nn

from psa_finn.common.grid import BSPLINE_GRID_RANGE, BSPLINE_GRID_SIZE, grid_points, grid_step
from psa_finn.models.lerp import lerp_table

BSPLINE_LEAKY_SLOPE = 0.01


class BSpline(nn.Module):
    """Per-channel linear B-spline over `num_channels` channels, initialised to leaky_relu(x, 0.01) at the knots."""

    def __init__(self, num_channels: int, grid_size: int = BSPLINE_GRID_SIZE,
                 grid_range: float = BSPLINE_GRID_RANGE, save_memory: bool = False):
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"BSpline needs num_channels >= 1, got {num_channels}")
        if grid_size % 2 == 0:
            raise ValueError(f"BSpline grid_size must be odd (a knot at 0), got {grid_size}")
        self.num_channels = num_channels
        self.grid_size = grid_size
        self.grid_range = float(grid_range)
        self.save_memory = save_memory
        knots = torch.as_tensor(grid_points(grid_size, grid_range), dtype=torch.float32)
        init = F.leaky_relu(knots, negative_slope=BSPLINE_LEAKY_SLOPE)
        self._coefficients_vect = nn.Parameter(init.repeat(num_channels))

    @property
    def knot_spacing(self) -> float:
        return 1.0 / grid_step(self.grid_size, self.grid_range)

    def coefficients(self):
        """The coefficients as a [C, G] view (channel-major)."""
        return self._coefficients_vect.view(self.num_channels, self.grid_size)

    def forward(self, x):
        return lerp_table(x, self.coefficients(), self.grid_range, self.save_memory)

    def table(self):
        """The function at the knots, [C, G]: the coefficients themselves (a fresh tensor)."""
        return self.coefficients().clone()

    def tv2(self):
        """TV(2) = sum_c sum_k |c[k-1] - 2 c[k] + c[k+1]| / T (T the knot spacing): the spline regulariser."""
        c = self.coefficients()
        return (c[:, :-2] - 2 * c[:, 1:-1] + c[:, 2:]).abs().sum() / self.knot_spacing

    def extra_repr(self):
        return f"num_channels={self.num_channels}, grid_size={self.grid_size}, grid_range={self.grid_range}"
