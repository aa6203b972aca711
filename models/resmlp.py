"""ResMLP (REFERENCE_SPEC 4) in its three variants: `relu`, `lerp_psa` (ResPSA banks) and `bspline`.

Module and parameter names equal the reference state-dict keys (REFERENCE_STATE_DICT.md), so a reference state dict
loads with `load_state_dict`; construction order equals the reference, so `torch.manual_seed(s)` before
construction reproduces a reference init.

    tokens  = patchify(images)                                   [B, T, P*P*Cin]
    x       = embed_linear(tokens)                               [B, T, D]
    per block:  x = x + affine_2(token_linear(BN(x) over tokens))
                x = x + affine_2(channel_mlp(BN(x)))
    logits  = classifier(mean_T(BN(x)))

channel_mlp: relu: Linear(D,h) ReLU Linear(h,D); lerp_psa: ResPSA(D) Linear(D,h) ResPSA(h) Linear(h,D);
bspline: BSpline(D) Linear(D,h) BSpline(h) Linear(h,D); h = int(D * hidden_factor).
"""

import torch
from torch import nn

from psa_finn.models.bspline import BSpline
from psa_finn.models.res_psa import ResPSA

VARIANTS = ("relu", "lerp_psa", "bspline")
PSA_CONFIG = dict(expansion=8, psa_type="lerp_psa", epsilon=1.0, is_in_residual=True, distill_init=True)
LAYER_SCALE_INIT = 0.1


def patchify(images, patch_size: int):
    """[B, Cin, H, W] -> [B, (H/P)*(W/P), P*P*Cin]: row-major tokens, each ordered (row, col, channel fastest)."""
    if images.dim() != 4:
        raise ValueError(f"patchify expects images [B, Cin, H, W], got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch_size {patch_size}")
    x = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)


class ModifiedBatchNorm1d(nn.Module):
    """BatchNorm1d over the last (channel) axis of [B, ..., C]: statistics per channel over batch and tokens."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_channels)

    def forward(self, x):
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return self.bn(flat.transpose(1, 2)).transpose(1, 2).reshape(x.shape)


class Affine(nn.Module):
    """Per-channel `x * weight + bias` on the last axis (layer scale with bias); weight starts at `alpha_init`."""

    def __init__(self, num_channels: int, alpha_init: float = LAYER_SCALE_INIT):
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_channels,), float(alpha_init)))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return x * self.weight + self.bias


class TokenMixer(nn.Module):
    """`x + affine_2(Linear(T, T) along tokens of affine_1(x))` (the cross-patch sub-layer)."""

    def __init__(self, num_tokens: int, embed_dim: int):
        super().__init__()
        self.affine_1 = ModifiedBatchNorm1d(embed_dim)
        self.affine_2 = Affine(embed_dim)
        self.layers = nn.Linear(num_tokens, num_tokens)

    def forward(self, x):
        z = self.layers(self.affine_1(x).transpose(1, 2)).transpose(1, 2)
        return self.affine_2(z) + x


class ChannelMixer(nn.Module):
    """`x + affine_2(mlp(affine_1(x)))` with the variant's channel MLP as `layers` (the cross-channel sub-layer)."""

    def __init__(self, variant: str, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.affine_1 = ModifiedBatchNorm1d(embed_dim)
        self.affine_2 = Affine(embed_dim)
        if variant == "relu":
            self.layers = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embed_dim))
        elif variant == "lerp_psa":
            self.layers = nn.Sequential(ResPSA(embed_dim, **PSA_CONFIG), nn.Linear(embed_dim, hidden_dim),
                                        ResPSA(hidden_dim, **PSA_CONFIG), nn.Linear(hidden_dim, embed_dim))
        else:
            self.layers = nn.Sequential(BSpline(embed_dim), nn.Linear(embed_dim, hidden_dim),
                                        BSpline(hidden_dim), nn.Linear(hidden_dim, embed_dim))

    def forward(self, x):
        return self.affine_2(self.layers(self.affine_1(x))) + x


class Block(nn.Module):
    """Token mixing then channel mixing (`layers.0`, `layers.1`)."""

    def __init__(self, variant: str, num_tokens: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.Sequential(TokenMixer(num_tokens, embed_dim), ChannelMixer(variant, embed_dim, hidden_dim))

    def forward(self, x):
        return self.layers(x)


class ResMLP(nn.Module):
    """ResMLP classifier; `config` rebuilds it through `build_model`. See the module docstring for the structure."""

    def __init__(self, variant: str, hidden_factor: float, img_size: int, patch_size: int, in_channels: int,
                 embed_dim: int = 96, depth: int = 4, num_classes: int = 10):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if patch_size < 1 or img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be a positive multiple of patch_size {patch_size}")
        hidden_dim = int(embed_dim * hidden_factor)
        if hidden_dim < 1:
            raise ValueError(f"hidden_factor {hidden_factor} gives hidden width int({embed_dim} * {hidden_factor}) < 1")
        self.config = dict(variant=variant, hidden_factor=hidden_factor, img_size=img_size, patch_size=patch_size,
                           in_channels=in_channels, embed_dim=embed_dim, depth=depth, num_classes=num_classes)
        self.hidden_dim = hidden_dim
        self.num_tokens = (img_size // patch_size) ** 2
        self.patch_dim = patch_size * patch_size * in_channels
        self.embed_linear = nn.Linear(self.patch_dim, embed_dim)
        self.layers = nn.Sequential(*[Block(variant, self.num_tokens, embed_dim, hidden_dim) for _ in range(depth)])
        self.affine = ModifiedBatchNorm1d(embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)

    @property
    def variant(self) -> str:
        return self.config["variant"]

    def tokens(self, x):
        """Images [B, Cin, H, W] -> patches [B, T, P*P*Cin]; patches pass through after a shape check."""
        if x.dim() == 4:
            expected = (self.config["in_channels"], self.config["img_size"], self.config["img_size"])
            if tuple(x.shape[1:]) != expected:
                raise ValueError(f"ResMLP expects images [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
            return patchify(x, self.config["patch_size"])
        if x.dim() == 3 and tuple(x.shape[1:]) == (self.num_tokens, self.patch_dim):
            return x
        raise ValueError(f"ResMLP expects images [B, {self.config['in_channels']}, {self.config['img_size']}, "
                         f"{self.config['img_size']}] or patches [B, {self.num_tokens}, {self.patch_dim}], "
                         f"got {tuple(x.shape)}")

    def forward(self, x, early_exit_after_block=None):
        """Logits [B, classes]; with `early_exit_after_block=k` the [B, T, D] representation after block k."""
        x = self.embed_linear(self.tokens(x))
        if early_exit_after_block is not None:
            if not 0 <= early_exit_after_block <= len(self.layers):
                raise ValueError(f"early_exit_after_block must be in 0..{len(self.layers)}, "
                                 f"got {early_exit_after_block}")
            return self.layers[:early_exit_after_block](x)
        x = self.affine(self.layers(x))
        return self.classifier(x.mean(dim=1))

    def learnable_functions(self):
        """[(name, module)] of the learnable 1-D function banks (ResPSA, BSpline), each with `table()` [C, G]."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, (ResPSA, BSpline))]

    def tv2(self):
        """Sum of the TV(2) regularisers of all BSpline banks (a zero tensor for the other variants)."""
        total = self.classifier.weight.new_zeros(())
        for module in self.modules():
            if isinstance(module, BSpline):
                total = total + module.tv2()
        return total


def build_model(config: dict) -> ResMLP:
    """Rebuild a ResMLP from its `config` dict."""
    allowed = {"variant", "hidden_factor", "img_size", "patch_size", "in_channels", "embed_dim", "depth",
               "num_classes"}
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"unknown ResMLP config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return ResMLP(**config)
