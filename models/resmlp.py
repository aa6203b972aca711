"""ResMLP (REFERENCE_SPEC 4) in four variants: `relu`, `gelu` (the original ResMLP paper's activation), `lerp_psa`
(ResPSA banks) and `bspline`.

Module and parameter names equal the reference state-dict keys (REFERENCE_STATE_DICT.md), so a reference state dict
loads with `load_state_dict`; construction order equals the reference, so `torch.manual_seed(s)` before
construction reproduces a reference init.

    tokens  = patchify(images)                                   [B, T, P*P*Cin]   (signals [B, Cin, L]: [B, T, P*Cin])
    x       = embed_linear(tokens)                               [B, T, D]
    per block:  x = x + affine_2(token_linear(BN(x) over tokens))
                x = x + affine_2(channel_mlp(BN(x)))
    logits  = classifier(mean_T(BN(x)))

channel_mlp: relu: Linear(D,h) ReLU Linear(h,D); gelu: Linear(D,h) GELU Linear(h,D);
lerp_psa: ResPSA(D) Linear(D,h) ResPSA(h) Linear(h,D); bspline: BSpline(D) Linear(D,h) BSpline(h) Linear(h,D);
h = int(D * hidden_factor).

`spatial_dims` 2 reads images [B, Cin, S, S] cut into P x P patches, 1 reads signals [B, Cin, S] cut into runs of P
samples (e.g. mnist1d). `grid_size` is the number of points of the learnable functions' grid (LERP-PSA default 64;
B-spline knots, odd, default 65; unused by relu and gelu).
"""

import torch
from torch import nn

from psa_finn.common.grid import BSPLINE_GRID_SIZE, LERP_GRID_SIZE
from psa_finn.models.bspline import BSpline
from psa_finn.models.res_psa import ResPSA

VARIANTS = ("relu", "gelu", "lerp_psa", "bspline")
FIXED_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}  # variants whose channel MLP has no learnable function
DEFAULT_GRID_SIZE = {"relu": None, "gelu": None, "lerp_psa": LERP_GRID_SIZE, "bspline": BSPLINE_GRID_SIZE}
SPATIAL_DIMS = (1, 2)
PSA_CONFIG = dict(expansion=8, psa_type="lerp_psa", epsilon=1.0, is_in_residual=True, distill_init=True)
LAYER_SCALE_INIT = 0.1


def patchify(inputs, patch_size: int):
    """Images [B, Cin, H, W] -> [B, (H/P)*(W/P), P*P*Cin]: row-major tokens, each ordered (row, col, channel fastest).

    Signals [B, Cin, L] -> [B, L/P, P*Cin]: tokens in order, each ordered (position, channel fastest).
    """
    if inputs.dim() == 3:
        b, c, length = inputs.shape
        if length % patch_size:
            raise ValueError(f"signal length {length} is not a multiple of patch_size {patch_size}")
        return inputs.reshape(b, c, length // patch_size, patch_size).permute(0, 2, 3, 1).reshape(
            b, length // patch_size, patch_size * c)
    if inputs.dim() != 4:
        raise ValueError(f"patchify expects images [B, Cin, H, W] or signals [B, Cin, L], got shape "
                         f"{tuple(inputs.shape)}")
    b, c, h, w = inputs.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch_size {patch_size}")
    x = inputs.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)


def input_shape(config: dict) -> tuple:
    """The shape of one raw input of a ResMLP `config` without the batch axis: (Cin, S, S) or (Cin, S) when 1-D."""
    return (config["in_channels"],) + (config["img_size"],) * config.get("spatial_dims", 2)


def token_shape(config: dict) -> tuple:
    """(tokens T, values per token) of the patches a ResMLP `config` reads."""
    dims = config.get("spatial_dims", 2)
    return (config["img_size"] // config["patch_size"]) ** dims, config["patch_size"] ** dims * config["in_channels"]


def to_tokens(x, config: dict, owner: str = "ResMLP"):
    """Raw inputs [B, *input_shape(config)] -> patches [B, T, values]; patches pass through after a shape check."""
    if tuple(x.shape[1:]) == input_shape(config):
        return patchify(x, config["patch_size"])
    if tuple(x.shape[1:]) == token_shape(config):
        return x
    kind = "images" if config.get("spatial_dims", 2) == 2 else "signals"
    raw = ", ".join(map(str, input_shape(config)))
    raise ValueError(f"{owner} expects {kind} [B, {raw}] or patches [B, {', '.join(map(str, token_shape(config)))}], "
                     f"got {tuple(x.shape)}")


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

    def __init__(self, variant: str, embed_dim: int, hidden_dim: int, grid_size):
        super().__init__()
        self.affine_1 = ModifiedBatchNorm1d(embed_dim)
        self.affine_2 = Affine(embed_dim)
        if variant in FIXED_ACTIVATIONS:
            self.layers = nn.Sequential(nn.Linear(embed_dim, hidden_dim), FIXED_ACTIVATIONS[variant](),
                                        nn.Linear(hidden_dim, embed_dim))
        elif variant == "lerp_psa":
            psa = dict(PSA_CONFIG, grid_size=grid_size)
            self.layers = nn.Sequential(ResPSA(embed_dim, **psa), nn.Linear(embed_dim, hidden_dim),
                                        ResPSA(hidden_dim, **psa), nn.Linear(hidden_dim, embed_dim))
        else:
            self.layers = nn.Sequential(BSpline(embed_dim, grid_size), nn.Linear(embed_dim, hidden_dim),
                                        BSpline(hidden_dim, grid_size), nn.Linear(hidden_dim, embed_dim))

    def forward(self, x):
        return self.affine_2(self.layers(self.affine_1(x))) + x


class Block(nn.Module):
    """Token mixing then channel mixing (`layers.0`, `layers.1`)."""

    def __init__(self, variant: str, num_tokens: int, embed_dim: int, hidden_dim: int, grid_size):
        super().__init__()
        self.layers = nn.Sequential(TokenMixer(num_tokens, embed_dim),
                                    ChannelMixer(variant, embed_dim, hidden_dim, grid_size))

    def forward(self, x):
        return self.layers(x)


class ResMLP(nn.Module):
    """ResMLP classifier; `config` rebuilds it through `build_model`. See the module docstring for the structure."""

    def __init__(self, variant: str, hidden_factor: float, img_size: int, patch_size: int, in_channels: int,
                 embed_dim: int = 96, depth: int = 4, num_classes: int = 10, spatial_dims: int = 2,
                 grid_size=None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if patch_size < 1 or img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be a positive multiple of patch_size {patch_size}")
        if spatial_dims not in SPATIAL_DIMS:
            raise ValueError(f"spatial_dims must be 1 (signals) or 2 (images), got {spatial_dims!r}")
        grid_size = DEFAULT_GRID_SIZE[variant] if grid_size is None or variant in FIXED_ACTIVATIONS else int(grid_size)
        hidden_dim = int(embed_dim * hidden_factor)
        if hidden_dim < 1:
            raise ValueError(f"hidden_factor {hidden_factor} gives hidden width int({embed_dim} * {hidden_factor}) < 1")
        self.config = dict(variant=variant, hidden_factor=hidden_factor, img_size=img_size, patch_size=patch_size,
                           in_channels=in_channels, embed_dim=embed_dim, depth=depth, num_classes=num_classes,
                           spatial_dims=spatial_dims, grid_size=grid_size)
        self.hidden_dim = hidden_dim
        self.num_tokens, self.patch_dim = token_shape(self.config)
        self.embed_linear = nn.Linear(self.patch_dim, embed_dim)
        self.layers = nn.Sequential(*[Block(variant, self.num_tokens, embed_dim, hidden_dim, grid_size)
                                      for _ in range(depth)])
        self.affine = ModifiedBatchNorm1d(embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)

    @property
    def variant(self) -> str:
        return self.config["variant"]

    def tokens(self, x):
        """Raw inputs (images [B, Cin, H, W] or signals [B, Cin, L]) -> patches; patches pass after a shape check."""
        return to_tokens(x, self.config)

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
               "num_classes", "spatial_dims", "grid_size"}
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"unknown ResMLP config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return ResMLP(**config)
