"""The QAT form of `models.ResMLP`: ordinary Brevitas layers and `nn.QuantLerpPSA` / `nn.QuantBSpline`, built from
the float model by module replacement (`QuantResMLP.from_float`), with the affines folded and quantizers added.

    x_q   = input_quant(patches)                                     host-side patchify: input [N, T, P*P*Cin]
    x     = embed_linear(x_q)
    per block (token mixer, then channel mixer), q = the sub-layer's `residual_quant`:
        r = q(x)                                  the residual stream, quantized once ...
        x = q(body(r)) + r                        ... and the same quantizer on both inputs of the Add
      token body  : affine_2(output_quant(layers(input_quant(affine_1(r)) along tokens)))   BN affine and layer
                                                                      scale stay Mul/Add before a quantizer
      channel body: the float MLP's modules, each replaced by its quant layer (Linear -> QuantLinear, ReLU ->
                    QuantReLU, GELU -> the GELU between two signed quantizers, ResPSA -> QuantLerpPSA with the
                    residual in its table, BSpline -> QuantBSpline);
                    the BN folds into the first (a Linear's weights, or a function's in_scale/in_bias: it then
                    reads r directly, input_quant=None), the layer scale into the last Linear
    logits = classifier(pool_quant(mean over tokens of x))          final BN folded into the classifier; no output
                                                                    quantizer, so the dequantisation stays on the host
Every learnable 1-D function (and the GELU) therefore reads a quantizer (the residual stream's or its own input
quantizer) and feeds its own output quantizer: the lowering tabulates it. All scales are powers of two
(nn.quantizers) and every Linear's bias sits on its accumulator grid (`AccumulatorBiasQuant`), so `forward` equals
the exported graph, and FINN's integer thresholds equal both, bit for bit.
"""

import copy

import torch
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant_tensor import _unpack_quant_tensor
from torch import nn

from psa_finn.export.affine_folding import (batchnorm_affine, exact_identity, fold_input_affine,
                                            fold_output_affine)
from psa_finn.models.bspline import BSpline
from psa_finn.models.psa import PSA
from psa_finn.models.res_psa import ResPSA
from psa_finn.models.resmlp import ResMLP, input_shape, to_tokens
from psa_finn.nn.quant_bspline import QuantBSpline
from psa_finn.nn.quant_lerp_psa import QuantLerpPSA
from psa_finn.nn.quant_table_function import QuantTableFunction
from psa_finn.nn.quantizers import (AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant, TensorWeightQuant,
                                    UnsignedActQuant, check_bits)


def act_quant(bits: int) -> QuantIdentity:
    """A signed per-tensor activation quantizer of `bits` bits that passes on a QuantTensor (its scale feeds the
    next Linear's bias quantizer)."""
    return QuantIdentity(act_quant=SignedActQuant, bit_width=bits, return_quant_tensor=True)


def quant_linear(weight, bias, bits: int, weight_quant=ChannelWeightQuant) -> QuantLinear:
    """A QuantLinear holding `weight` [out, in] and `bias` [out] (float64 folds, stored in float32), its bias on the
    accumulator grid."""
    out_features, in_features = weight.shape
    layer = QuantLinear(in_features, out_features, bias=True, weight_quant=weight_quant, weight_bit_width=bits,
                        bias_quant=AccumulatorBiasQuant)
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.dtype))
        layer.bias.copy_(bias.to(layer.bias.dtype))
    return layer


class ChannelAffine(nn.Module):
    """`x * weight + bias` on the last axis of [N, T, C], as two ops (exported Mul then Add, each rounded once).

    The parameters enter the graph as [1, 1, C] initializers: FINN's MoveTransposePastEltwise transposes an
    initializer with the full 3-axis permutation and fails on a rank-1 one.
    """

    def __init__(self, scale, shift):
        super().__init__()
        self.weight = nn.Parameter(exact_identity(scale.double(), 1.0).float())
        self.bias = nn.Parameter(exact_identity(shift.double(), 0.0).float())

    def forward(self, x):
        return x * self.weight.view(1, 1, -1) + self.bias.view(1, 1, -1)


class QuantTokenMixer(nn.Module):
    """`q(affine_2(output_quant(Linear_T(input_quant(affine_1(r)))))) + r` with `r = q(x)`, q = `residual_quant`.

    `output_quant` acts in the transposed [N, C, T] frame, right after the token Linear: its per-token bias is then
    on the last axis and folds into that quantizer's thresholds, while the per-channel layer scale folds into q's.
    (Both offsets before one quantizer would form a [T, C] bias that no per-channel threshold can absorb.)
    """

    def __init__(self, mixer, bits: int):
        super().__init__()
        self.residual_quant = act_quant(bits)
        self.affine_1 = ChannelAffine(*batchnorm_affine(mixer.affine_1))
        self.input_quant = act_quant(bits)
        self.layers = quant_linear(mixer.layers.weight, mixer.layers.bias, bits, weight_quant=TensorWeightQuant)
        self.output_quant = act_quant(bits)
        self.affine_2 = ChannelAffine(mixer.affine_2.weight, mixer.affine_2.bias)

    def forward(self, x):
        r = _unpack_quant_tensor(self.residual_quant(x))
        z = self.input_quant(self.affine_1(r))
        z = _unpack_quant_tensor(self.output_quant(self.layers(z.transpose(1, 2)))).transpose(1, 2)
        return _unpack_quant_tensor(self.residual_quant(self.affine_2(z))) + r


def quant_between(function: nn.Module, bits: int) -> nn.Sequential:
    """A copy of the elementwise `function` (nn.GELU, nn.SiLU, ...) between a signed input quantizer and a signed
    output quantizer (passing on a QuantTensor for the next Linear's bias): exported `Quant -> f -> Quant`, which the
    lowering turns into a per-channel LUT. GELU and SiLU need the input quantizer: they are not monotone, so no
    threshold can read the accumulator in its place."""
    input_quant = QuantIdentity(act_quant=SignedActQuant, bit_width=bits)
    return nn.Sequential(input_quant, copy.deepcopy(function), act_quant(bits))


def quant_channel_mlp(float_layers: nn.Sequential, bits: int, input_affine, output_affine) -> nn.Sequential:
    """The float channel MLP with each module replaced by its quant layer; `input_affine` (scale, shift) folded into
    the first module, `output_affine` into the last (a Linear)."""
    layers = []
    last = len(float_layers) - 1
    for index, module in enumerate(float_layers):
        if isinstance(module, nn.Linear):
            weight, bias = module.weight, module.bias
            if index == 0:
                weight, bias = fold_input_affine(weight, bias, *input_affine)
            if index == last:
                weight, bias = fold_output_affine(weight, bias, *output_affine)
            layers.append(quant_linear(weight, bias, bits))
        elif isinstance(module, nn.ReLU):
            layers.append(QuantReLU(act_quant=UnsignedActQuant, bit_width=bits, return_quant_tensor=True))
        elif isinstance(module, nn.GELU):
            layers.append(quant_between(module, bits))
        elif isinstance(module, (ResPSA, PSA, BSpline)) and index != last:
            layer = QuantBSpline if isinstance(module, BSpline) else QuantLerpPSA
            first = index == 0
            layers.append(layer.from_float(module, channel_dim=-1, bit_width=bits,
                                           input_quant=None if first else SignedActQuant, return_quant_tensor=True,
                                           input_affine=input_affine if first else None))
        else:
            raise ValueError(f"channel MLP module {index} ({type(module).__name__}) has no quant layer here; "
                             f"expected Linear, ReLU, GELU, ResPSA, PSA or BSpline, ending with a Linear")
    return nn.Sequential(*layers)


class QuantChannelMixer(nn.Module):
    """`q(layers(r)) + r` with `r = q(x)`; `layers` is the float MLP's quant form with the BN and layer scale
    folded in."""

    def __init__(self, mixer, bits: int):
        super().__init__()
        self.residual_quant = act_quant(bits)
        self.layers = quant_channel_mlp(mixer.layers, bits, batchnorm_affine(mixer.affine_1),
                                        (mixer.affine_2.weight, mixer.affine_2.bias))

    def forward(self, x):
        r = self.residual_quant(x)
        return _unpack_quant_tensor(self.residual_quant(self.layers(r))) + _unpack_quant_tensor(r)


class QuantBlock(nn.Module):
    """Token mixing then channel mixing (`layers.0`, `layers.1`), as `models.resmlp.Block`."""

    def __init__(self, block, bits: int):
        super().__init__()
        token, channel = block.layers
        self.layers = nn.Sequential(QuantTokenMixer(token, bits), QuantChannelMixer(channel, bits))

    def forward(self, x):
        return self.layers(x)


class QuantResMLP(nn.Module):
    """QAT ResMLP of a float `models.ResMLP` at `bits` bits (weights and activations); `from_float` builds it.

    `forward` takes raw inputs (images or signals, patchified here as on the host) or patches [B, T, values].
    """

    def __init__(self, model: ResMLP, bits: int):
        super().__init__()
        self.config = dict(model.config)
        self.bits = check_bits(bits)
        self.hidden_dim = model.hidden_dim
        self.num_tokens = model.num_tokens
        self.patch_dim = model.patch_dim
        self.input_quant = act_quant(bits)
        self.embed_linear = quant_linear(model.embed_linear.weight, model.embed_linear.bias, bits)
        self.layers = nn.Sequential(*[QuantBlock(block, bits) for block in model.layers])
        self.pool_quant = act_quant(bits)
        self.classifier = quant_linear(*fold_input_affine(model.classifier.weight, model.classifier.bias,
                                                          *batchnorm_affine(model.affine)), bits)

    @classmethod
    def from_float(cls, model: ResMLP, bits: int) -> "QuantResMLP":
        """The QAT form of `model` (uncalibrated, in the float model's mode); the float model is not modified."""
        with torch.no_grad():
            return cls(model, bits).train(model.training)

    @property
    def variant(self) -> str:
        return self.config["variant"]

    @property
    def input_shape(self) -> tuple:
        """Shape of one exported input: [1, T, P*P*Cin]."""
        return (1, self.num_tokens, self.patch_dim)

    def example_input(self, seed: int = 0):
        """One seeded standard-normal input as exported (patches [1, T, values]): what `export_qonnx` checks on."""
        generator = torch.Generator().manual_seed(seed)
        return self.tokens(torch.randn((1, *input_shape(self.config)), generator=generator))

    def tokens(self, x):
        """Raw inputs (images or signals) -> patches [B, T, values]; patches pass through after a shape check."""
        return to_tokens(x, self.config, "QuantResMLP")

    def forward(self, x):
        x = self.embed_linear(self.input_quant(self.tokens(x)))
        x = self.layers(x)
        return self.classifier(self.pool_quant(x.mean(dim=1)))

    def lut_banks(self):
        """[(name, QuantLerpPSA or QuantBSpline)] of every learnable function (empty for the relu variant)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, QuantTableFunction)]

    def tv2(self):
        """Sum of the TV(2) regularisers of the QuantBSpline layers (a zero tensor for the other variants)."""
        total = self.classifier.weight.new_zeros(())
        for module in self.modules():
            if isinstance(module, QuantBSpline):
                total = total + module.tv2()
        return total
