"""ResPSA: a PSA bank (exact or LERP) with the identity residual, `y = psa(x) + x` (REFERENCE_SPEC 1.3)."""

import torch
from torch import nn

from psa_finn.common.grid import grid_points
from psa_finn.models.lerp_psa import LerpPSA
from psa_finn.models.psa import PSA, PSA_EXPANSION


class ResPSA(nn.Module):
    """`y = psa(x) + x` (`add_res=True`, no input norm, as in the reference ResMLP); `psa` is a PSA or a LerpPSA.

    `table()` is the function INCLUDING the residual (`psa.table() + grid`), on the grid of the inner module:
    what a hardware table for this bank must hold.
    """

    def __init__(self, num_channels: int, expansion: int = PSA_EXPANSION, psa_type: str = "lerp_psa",
                 **psa_kwargs):
        super().__init__()
        if psa_type == "psa":
            self.psa = PSA(num_channels, expansion, **psa_kwargs)
        elif psa_type == "lerp_psa":
            self.psa = LerpPSA(num_channels, expansion, **psa_kwargs)
        else:
            raise ValueError(f"psa_type must be 'psa' or 'lerp_psa', got {psa_type!r}")

    @property
    def num_channels(self) -> int:
        return self.psa.num_channels

    @property
    def grid_size(self) -> int:
        return self.psa.grid_size

    @property
    def grid_range(self) -> float:
        return self.psa.grid_range

    def forward(self, x):
        return self.psa(x) + x

    def table(self):
        """[C, G]: `psa.table()` plus the grid points (the residual folded in)."""
        table = self.psa.table()
        grid = torch.as_tensor(grid_points(self.grid_size, self.grid_range), dtype=table.dtype, device=table.device)
        return table + grid
