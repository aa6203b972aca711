"""The reference B-spline kernel (DeepSplines' `DeepBSpline`, save_memory=True; REFERENCE_SPEC 3 and 7).

REFERENCE_SPEC 7 times LERP-PSA against this kernel. `models.bspline.BSpline` computes the same function as a LERP
of its coefficient table and shares that kernel with LerpPSA (models/lerp.py), so the kernel benchmark reports
both: this one as the paper's baseline (`bspline`) and ours (`bspline_lerp`). The algorithm, per element:

    x~ = clamp(x, -half*T, (half-1)*T),  k = floor(x~ / T),  u = x~ / T - k,  j = c*G + half + k   (int64)
    y  = coef[j+1] * u + coef[j] * (1 - u)
       + clamp(x + half*T, max=0) * left_slope + clamp(x - (half-1)*T, min=0) * right_slope

with the edge slopes (coef[1] - coef[0]) / T and (coef[G-1] - coef[G-2]) / T per channel. Only the input is saved;
the backward recomputes x~, k, u and j, and scatter-adds the interpolation and extrapolation terms into the
coefficient gradient.
"""

import torch

from psa_finn.models.bspline import BSpline


class DeepBSplineFunction(torch.autograd.Function):
    """The DeepBSpline forward/backward above for x [M, C] and coefficients [C * G] (channel-major)."""

    @staticmethod
    def _segments(x, spacing: float, half: int, zero_knots):
        clamped = x.clamp(-half * spacing, (half - 1) * spacing)
        knot = torch.floor(clamped / spacing)
        fraction = clamped / spacing - knot
        return (zero_knots + knot).long(), fraction

    @staticmethod
    def _extrapolation_distances(x, spacing: float, half: int):
        return (x + half * spacing).clamp(max=0), (x - (half - 1) * spacing).clamp(min=0)

    @staticmethod
    def forward(ctx, x, coefficients, spacing, grid_size):
        half = grid_size // 2
        num_channels = coefficients.numel() // grid_size
        zero_knots = torch.arange(num_channels, device=x.device) * grid_size + half
        index, fraction = DeepBSplineFunction._segments(x, spacing, half, zero_knots)
        y = coefficients[index + 1] * fraction + coefficients[index] * (1 - fraction)
        table = coefficients.view(num_channels, grid_size)
        left_slope = (table[:, 1] - table[:, 0]) / spacing
        right_slope = (table[:, -1] - table[:, -2]) / spacing
        left, right = DeepBSplineFunction._extrapolation_distances(x, spacing, half)
        ctx.spacing, ctx.grid_size = spacing, grid_size
        ctx.save_for_backward(x, coefficients, zero_knots)
        return y + (left * left_slope + right * right_slope)

    @staticmethod
    def backward(ctx, grad_y):
        x, coefficients, zero_knots = ctx.saved_tensors
        spacing, half = ctx.spacing, ctx.grid_size // 2
        index, fraction = DeepBSplineFunction._segments(x, spacing, half, zero_knots)
        grad_x = (coefficients[index + 1] - coefficients[index]) / spacing * grad_y
        left, right = DeepBSplineFunction._extrapolation_distances(x, spacing, half)
        grad_coefficients = torch.zeros_like(coefficients)
        flat, right_flat = index.view(-1), index.view(-1) + 1
        grad_coefficients.scatter_add_(0, right_flat, (fraction * grad_y).view(-1))
        grad_coefficients.scatter_add_(0, flat, ((1 - fraction) * grad_y).view(-1))
        for distance in (left / spacing, right / spacing):
            grad_coefficients.scatter_add_(0, flat, (-distance * grad_y).view(-1))
            grad_coefficients.scatter_add_(0, right_flat, (distance * grad_y).view(-1))
        return grad_x, grad_coefficients, None, None


class DeepBSpline(BSpline):
    """BSpline (same parameter, initialisation and TV2) evaluated by the reference kernel in its save_memory=True
    form (the one REFERENCE_SPEC 7 times; `save_memory` is not used); input [..., C]."""

    def forward(self, x):
        if x.shape[-1] != self.num_channels:
            raise ValueError(f"input has {x.shape[-1]} channels on its last axis, the spline has {self.num_channels}")
        rows = x.reshape(-1, self.num_channels)
        y = DeepBSplineFunction.apply(rows, self._coefficients_vect, self.knot_spacing, self.grid_size)
        return y.view(x.shape)
