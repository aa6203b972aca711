"""The training augmentation of the reference recipe, done in torch on whole batches (no torchvision, no PIL).

`augment_batch` applies, per sample: random crop with 4 pixels of zero padding, random horizontal flip, then a
RandAugment-like step (2 ops drawn uniformly from the 14 of torchvision's RandAugment, magnitude 9 of 31 bins, signed
ops with a random sign). Images are float tensors [B, C, H, W] in [0, 1], as after ToTensor and before Normalize.

Differences from torchvision's PIL path, deliberately small: geometric ops rotate/shear about the image centre with
nearest-neighbour sampling and zero fill (torchvision shears about the top-left corner); pixel ops work on the
[0, 1] floats and round to 8-bit levels only where the op is defined on levels (posterize, equalize).
All randomness comes from the given `torch.Generator`, so a seeded generator reproduces a batch exactly.
"""

import math

import torch
import torch.nn.functional as F

CROP_PADDING = 4
RANDAUGMENT_NUM_OPS = 2
RANDAUGMENT_MAGNITUDE = 9
RANDAUGMENT_BINS = 31


def _magnitude(max_value: float) -> float:
    """torchvision's linspace(0, max_value, 31)[9]."""
    return max_value * RANDAUGMENT_MAGNITUDE / (RANDAUGMENT_BINS - 1)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad every side by `padding` and cut a random window of the original size per sample."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_horizontal_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(x: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (degenerate + factor[:, None, None, None] * (x - degenerate)).clamp(0.0, 1.0)


def _affine(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample with per-sample 2x3 matrices in normalised coordinates (output -> input), nearest, zero fill."""
    grid = F.affine_grid(matrices.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _identity_matrices(n: int) -> torch.Tensor:
    return torch.eye(2, 3).repeat(n, 1, 1)


def _shear_x(x, signs):
    m = _identity_matrices(x.shape[0])
    m[:, 0, 1] = signs * _magnitude(0.3)
    return _affine(x, m)


def _shear_y(x, signs):
    m = _identity_matrices(x.shape[0])
    m[:, 1, 0] = signs * _magnitude(0.3)
    return _affine(x, m)


def _translate_x(x, signs):
    m = _identity_matrices(x.shape[0])
    pixels = _magnitude(150.0 / 331.0 * x.shape[-1])
    m[:, 0, 2] = -signs * 2.0 * pixels / x.shape[-1]
    return _affine(x, m)


def _translate_y(x, signs):
    m = _identity_matrices(x.shape[0])
    pixels = _magnitude(150.0 / 331.0 * x.shape[-2])
    m[:, 1, 2] = -signs * 2.0 * pixels / x.shape[-2]
    return _affine(x, m)


def _rotate(x, signs):
    angle = signs * math.radians(_magnitude(30.0))
    cos, sin = torch.cos(angle), torch.sin(angle)
    m = torch.zeros(x.shape[0], 2, 3)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return _affine(x, m)


def _brightness(x, signs):
    return _blend(x, torch.zeros_like(x), 1.0 + signs * _magnitude(0.9))


def _color(x, signs):
    return _blend(x, _grayscale(x).expand_as(x), 1.0 + signs * _magnitude(0.9))


def _contrast(x, signs):
    mean = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), 1.0 + signs * _magnitude(0.9))


def _sharpness(x, signs):
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return _blend(x, smooth, 1.0 + signs * _magnitude(0.9))


def _posterize(x, signs):
    bits = 8 - int(round(RANDAUGMENT_MAGNITUDE / ((RANDAUGMENT_BINS - 1) / 4)))
    levels = (x * 255.0).round().to(torch.int64)
    return (levels & ((0xFF << (8 - bits)) & 0xFF)).to(x.dtype) / 255.0


def _solarize(x, signs):
    threshold = (255.0 - _magnitude(255.0)) / 255.0
    return torch.where(x >= threshold, 1.0 - x, x)


def _autocontrast(x, signs):
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    span = high - low
    stretched = (x - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, stretched, x)


def _equalize(x, signs):
    """Histogram equalisation per image and channel on 8-bit levels (PIL's rule, as torchvision's tensor path)."""
    b, c, h, w = x.shape
    levels = (x * 255.0).round().to(torch.int64).reshape(b * c, h * w)
    hist = torch.zeros(b * c, 256, dtype=torch.int64).scatter_add_(1, levels, torch.ones_like(levels))
    last_count = hist.gather(1, levels.amax(dim=1, keepdim=True))
    step = (h * w - last_count) // 255
    safe_step = step.clamp(min=1)
    lut = (hist.cumsum(dim=1) + safe_step // 2) // safe_step
    lut = torch.cat([torch.zeros(b * c, 1, dtype=torch.int64), lut[:, :-1]], dim=1).clamp(0, 255)
    equalized = lut.gather(1, levels)
    out = torch.where(step > 0, equalized, levels)
    return out.reshape(b, c, h, w).to(x.dtype) / 255.0


def _identity(x, signs):
    return x


RANDAUGMENT_OPS = (_identity, _shear_x, _shear_y, _translate_x, _translate_y, _rotate, _brightness, _color,
                   _contrast, _sharpness, _posterize, _solarize, _autocontrast, _equalize)


def rand_augment(x: torch.Tensor, generator: torch.Generator, num_ops: int = RANDAUGMENT_NUM_OPS) -> torch.Tensor:
    """Apply `num_ops` ops drawn uniformly per sample from RANDAUGMENT_OPS, each with a random sign."""
    out = x
    for _ in range(num_ops):
        choice = torch.randint(0, len(RANDAUGMENT_OPS), (x.shape[0],), generator=generator)
        signs = torch.where(torch.rand(x.shape[0], generator=generator) < 0.5, -1.0, 1.0)
        result = out.clone()
        for index, op in enumerate(RANDAUGMENT_OPS):
            members = (choice == index).nonzero().flatten()
            if members.numel():
                result[members] = op(out[members], signs[members])
        out = result
    return out


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The reference training transform on [B, C, H, W] floats in [0, 1]: crop(pad 4), flip, RandAugment(2, 9)."""
    x = random_crop(x, CROP_PADDING, generator)
    x = random_horizontal_flip(x, generator)
    return rand_augment(x, generator)
