"""Geometry of the uniform LERP grid: the one place that defines grid points, spacing and the segment index.

Used by the PyTorch modules (LerpPSA, BSpline), the qonnx LerpPSA op and the lowering transforms, so that every
stage agrees on where the table samples sit. Pure Python/numpy; works on numpy arrays and torch tensors alike.
"""

import numpy as np

LERP_GRID_SIZE = 64
LERP_GRID_RANGE = 4.0
BSPLINE_GRID_SIZE = 65
BSPLINE_GRID_RANGE = 4.0


def grid_points(grid_size: int, grid_range: float) -> np.ndarray:
    """The G sample positions linspace(-R, R, G) as float64 (spacing 2R/(G-1); no point at 0 for even G)."""
    if grid_size < 2:
        raise ValueError(f"grid_size must be at least 2, got {grid_size}")
    if not grid_range > 0:
        raise ValueError(f"grid_range must be positive, got {grid_range}")
    return np.linspace(-grid_range, grid_range, grid_size)


def grid_step(grid_size: int, grid_range: float) -> float:
    """Grid samples per unit of input: (G-1)/(2R), so that t = (x + R) * step is the continuous grid coordinate."""
    return (grid_size - 1) / (2.0 * grid_range)


def segment_and_fraction(x, grid_size: int, grid_range: float, index_dtype=None):
    """Segment index i = clamp(floor(t), 0, G-2) and unclamped fraction u = t - i for t = (x + R) * step.

    u < 0 left of -R and u > 1 right of +R, which makes the interpolation extrapolate linearly with the edge slopes.
    Works for numpy arrays (int64 indices) and torch tensors (indices of `index_dtype`, default int64; one float
    temporary, reused for the fraction, so the training hot path can call it with a one-byte index).
    """
    step = grid_step(grid_size, grid_range)
    if isinstance(x, np.ndarray) or np.isscalar(x):
        t = (np.asarray(x) + grid_range) * step
        i = np.clip(np.floor(t), 0, grid_size - 2)
        return i.astype(index_dtype or np.int64), t - i
    import torch

    t = (x + grid_range).mul_(step)
    i = t.floor().clamp_(0, grid_size - 2)
    return i.to(index_dtype or torch.int64), t.sub_(i)
