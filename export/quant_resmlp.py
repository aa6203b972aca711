"""Brevitas QAT twin of `models.ResMLP`: the same structure and names, with the affines folded and quantizers added.

    x_q   = input_quant(patches)                                     host-side patchify: input [N, T, P*P*Cin]
    x     = embed_linear(x_q)
    per block (token mixer, then channel mixer), q = the sub-layer's `residual_quant`:
        r = q(x)                                  the residual stream, quantized once ...
        x = q(body(r)) + r                        ... and the same quantizer on both inputs of the Add
      token body  : affine_2(output_quant(layers(input_quant(affine_1(r)) along tokens)))   BN affine and layer
                                                                      scale stay Mul/Add before a quantizer
      channel body: relu     Linear(BN folded) -> QuantReLU -> Linear(layer scale folded)
                    lerp_psa / bspline
                             LUT(r; BN as in_scale/in_bias) -> Linear(BN-free) -> quant -> LUT -> Linear(layer scale
                             folded); a LUT is one LerpPSA node followed by its output quantizer
    logits = classifier(pool_quant(mean over tokens of x))          final BN folded into the classifier; no output
                                                                    quantizer, so the dequantisation stays on the host
Every learnable 1-D function therefore reads a quantizer (the residual stream's or a Linear's output quantizer) and
feeds its own output quantizer. All scales are powers of two (export.quantizers), biases stay float and are added
after the matmul, so `forward` equals the exported graph bit for bit.
"""

import torch
import torch.nn.functional as F
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from psa_finn.export.lerp_psa_function import lerp_psa
from psa_finn.export.quantizers import ChannelWeightQuant, SignedActQuant, TensorWeightQuant, UnsignedActQuant, check_bits
from psa_finn.models.resmlp import VARIANTS, to_tokens, token_shape


def act_quant(bits: int) -> QuantIdentity:
    """A signed per-tensor activation quantizer of `bits` bits."""
    return QuantIdentity(act_quant=SignedActQuant, bit_width=bits)


class ChannelAffine(nn.Module):
    """`x * weight + bias` on the last axis of [N, T, C], as two ops (exported Mul then Add, each rounded once).

    The parameters enter the graph as [1, 1, C] initializers: FINN's MoveTransposePastEltwise transposes an
    initializer with the full 3-axis permutation and fails on a rank-1 one.
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x):
        return x * self.weight.view(1, 1, -1) + self.bias.view(1, 1, -1)


class QuantLinearFloatBias(QuantLinear):
    """QuantLinear with quantized weights and a float bias added after the matmul (exported MatMul -> Add).

    Keeping the bias out of torch's fused addmm makes the accumulation exact (integer codes times powers of two),
    then one float32 rounding at the Add, exactly as in the exported graph.
    """

    def __init__(self, in_features: int, out_features: int, bits: int, weight_quant=ChannelWeightQuant):
        super().__init__(in_features, out_features, bias=True, weight_quant=weight_quant, weight_bit_width=bits,
                         bias_quant=None)

    def inner_forward_impl(self, x, quant_weight, quant_bias):
        y = F.linear(x, quant_weight)
        return y if quant_bias is None else y + quant_bias


class QuantLerpPSA(nn.Module):
    """A learnable 1-D function bank as its table: `output_quant(LerpPSA(x, table[, in_scale, in_bias]))`.

    `table` [C, G] holds the function at `grid_points(G, grid_range)` (a ResPSA residual already added); with
    `input_affine` the preceding per-channel affine (the channel mixer's BN) is `in_scale`, `in_bias`. The input
    must come from a quantizer.
    """

    def __init__(self, num_channels: int, grid_size: int, grid_range: float, bits: int, input_affine: bool):
        super().__init__()
        self.grid_range = float(grid_range)
        self.table = nn.Parameter(torch.zeros(num_channels, grid_size))
        self.in_scale = nn.Parameter(torch.ones(num_channels)) if input_affine else None
        self.in_bias = nn.Parameter(torch.zeros(num_channels)) if input_affine else None
        self.output_quant = act_quant(bits)

    def forward(self, x):
        return self.output_quant(lerp_psa(x, self.table, self.grid_range, self.in_scale, self.in_bias))

    def extra_repr(self):
        return f"channels={self.table.shape[0]}, grid_size={self.table.shape[1]}, grid_range={self.grid_range}, " \
               f"input_affine={self.in_scale is not None}"


class QuantTokenMixer(nn.Module):
    """`q(affine_2(output_quant(Linear_T(input_quant(affine_1(r)))))) + r` with `r = q(x)`, q = `residual_quant`.

    `output_quant` acts in the transposed [N, C, T] frame, right after the token Linear: its per-token bias is then
    on the last axis and folds into that quantizer's thresholds, while the per-channel layer scale folds into q's.
    (Both offsets before one quantizer would form a [T, C] bias that no per-channel threshold can absorb.)
    """

    def __init__(self, num_tokens: int, embed_dim: int, bits: int):
        super().__init__()
        self.residual_quant = act_quant(bits)
        self.affine_1 = ChannelAffine(embed_dim)
        self.input_quant = act_quant(bits)
        self.layers = QuantLinearFloatBias(num_tokens, num_tokens, bits, weight_quant=TensorWeightQuant)
        self.output_quant = act_quant(bits)
        self.affine_2 = ChannelAffine(embed_dim)

    def forward(self, x):
        r = self.residual_quant(x)
        z = self.input_quant(self.affine_1(r))
        z = self.output_quant(self.layers(z.transpose(1, 2))).transpose(1, 2)
        return self.residual_quant(self.affine_2(z)) + r


class QuantChannelMixer(nn.Module):
    """`q(layers(r)) + r` with `r = q(x)`; `layers` is the variant's MLP with the BN and layer scale folded in."""

    def __init__(self, variant: str, embed_dim: int, hidden_dim: int, bits: int, grid_size: int,
                 grid_range: float):
        super().__init__()
        self.residual_quant = act_quant(bits)
        if variant == "relu":
            self.layers = nn.Sequential(QuantLinearFloatBias(embed_dim, hidden_dim, bits),
                                        QuantReLU(act_quant=UnsignedActQuant, bit_width=bits),
                                        QuantLinearFloatBias(hidden_dim, embed_dim, bits))
        else:
            self.layers = nn.Sequential(QuantLerpPSA(embed_dim, grid_size, grid_range, bits, input_affine=True),
                                        QuantLinearFloatBias(embed_dim, hidden_dim, bits),
                                        act_quant(bits),
                                        QuantLerpPSA(hidden_dim, grid_size, grid_range, bits, input_affine=False),
                                        QuantLinearFloatBias(hidden_dim, embed_dim, bits))

    def forward(self, x):
        r = self.residual_quant(x)
        return self.residual_quant(self.layers(r)) + r


class QuantBlock(nn.Module):
    """Token mixing then channel mixing (`layers.0`, `layers.1`), as `models.resmlp.Block`."""

    def __init__(self, variant, num_tokens, embed_dim, hidden_dim, bits, grid_size, grid_range):
        super().__init__()
        self.layers = nn.Sequential(QuantTokenMixer(num_tokens, embed_dim, bits),
                                    QuantChannelMixer(variant, embed_dim, hidden_dim, bits, grid_size, grid_range))

    def forward(self, x):
        return self.layers(x)


class QuantResMLP(nn.Module):
    """QAT ResMLP for the float `config` of a `models.ResMLP` at `bits` bits (weights and activations).

    `grid_size`/`grid_range` give the LUT tables' grid (unused by the relu variant). Built empty; `export.qat`
    fills it from a float model. `forward` takes images [B, Cin, H, W] (patchified here, as on the host) or
    patches [B, T, P*P*Cin].
    """

    def __init__(self, config: dict, hidden_dim: int, bits: int, grid_size: int, grid_range: float):
        super().__init__()
        if config["variant"] not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {config['variant']!r}")
        self.config = dict(config)
        self.bits = check_bits(bits)
        self.hidden_dim = hidden_dim
        self.grid_size = grid_size
        self.grid_range = float(grid_range)
        self.num_tokens, self.patch_dim = token_shape(config)
        embed_dim = config["embed_dim"]
        self.input_quant = act_quant(bits)
        self.embed_linear = QuantLinearFloatBias(self.patch_dim, embed_dim, bits)
        self.layers = nn.Sequential(*[QuantBlock(config["variant"], self.num_tokens, embed_dim, hidden_dim, bits,
                                                 grid_size, grid_range) for _ in range(config["depth"])])
        self.pool_quant = act_quant(bits)
        self.classifier = QuantLinearFloatBias(embed_dim, config["num_classes"], bits)

    @property
    def variant(self) -> str:
        return self.config["variant"]

    @property
    def input_shape(self) -> tuple:
        """Shape of one exported input: [1, T, P*P*Cin]."""
        return (1, self.num_tokens, self.patch_dim)

    def tokens(self, x):
        """Raw inputs (images or signals) -> patches [B, T, values]; patches pass through after a shape check."""
        return to_tokens(x, self.config, "QuantResMLP")

    def forward(self, x):
        x = self.embed_linear(self.input_quant(self.tokens(x)))
        x = self.layers(x)
        return self.classifier(self.pool_quant(x.mean(dim=1)))

    def lut_banks(self):
        """[(name, QuantLerpPSA)] of every table (empty for the relu variant)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, QuantLerpPSA)]
