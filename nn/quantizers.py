"""psa-finn's default quantizers (Brevitas fixed-point: power-of-two scales) and the one check of their bit width.

Every scale is a power of two (Brevitas fixed-point quantizers): then each weight and activation is an integer times
a power of two, every MatMul, ReduceMean over 2^k tokens and rescaling in the exported graph is exact in float32,
and the fake-quant torch model computes bit for bit what the QONNX graph computes. Activation ranges start from a
calibration pass and are learned during QAT; weight ranges follow the weights (maximum absolute value).
`QuantLerpPSA` / `QuantBSpline` use `SignedActQuant` for their input and output; pass them to Brevitas layers as
any quantizer class (`QuantLinear(..., weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)`).
"""

from typing import Optional

import torch
from brevitas.core.stats import AbsMax
from brevitas.quant.fixed_point import (Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint,
                                        Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint)
from brevitas.quant.scaled_int import Int32Bias

from psa_finn.common.bit_widths import MAX_BITS, MIN_BITS

DEFAULT_BITS = 8


def check_bits(bits, name: str = "bits", example: str = f"--bits {DEFAULT_BITS}") -> int:
    """`bits` as an int when it is an integer from 2 to 8; a ValueError that says so otherwise, naming `name` (the
    flag or argument) and `example` (the fix)."""
    if isinstance(bits, bool) or not isinstance(bits, int) and not (isinstance(bits, float) and bits.is_integer()):
        raise ValueError(f"{name} must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}; pass e.g. {example}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(f"{name} must be from {MIN_BITS} to {MAX_BITS} (weights and activations), got {bits}; "
                         f"pass e.g. {example}")
    return int(bits)


def check_layer_bit_width(layer: str, bit_width) -> int:
    """check_bits for the `bit_width` argument of a psa-finn layer class named `layer`."""
    return check_bits(bit_width, f"{layer} bit_width", f"bit_width={DEFAULT_BITS}")


class SignedActQuant(Int8ActPerTensorFixedPoint):
    """Signed activations, one power-of-two scale per tensor, initialised from the 99.999th percentile of |x|."""


class UnsignedActQuant(Uint8ActPerTensorFixedPoint):
    """Unsigned activations (after ReLU), one power-of-two scale per tensor."""


class NarrowRangeAbsMax(AbsMax):
    """max |w| scaled by 2^(b-1) / (2^(b-1) - 1): Brevitas' power-of-two weight scale is 2^ceil(log2(stat)) / 2^(b-1),
    which leaves room for 2^(b-1) codes, one more than the narrow range holds, so a row whose maximum is a power of
    two (a fixed 0/1 routing matrix, a KAN fan-out) lost one code (1.0 became 127/128). With this statistic the
    scale is the smallest power of two that holds the maximum in 2^(b-1) - 1 codes."""

    def __init__(self, bit_width: int, stats_reduce_dim: Optional[int] = None, keepdim: bool = False) -> None:
        super().__init__(stats_reduce_dim=stats_reduce_dim, keepdim=keepdim)
        half = 2.0 ** (int(bit_width) - 1)
        self.room = half / (half - 1.0)

    def forward(self, x: torch.Tensor):
        return super().forward(x) * self.room


class ChannelWeightQuant(Int8WeightPerChannelFixedPoint):
    """Narrow-range signed weights, one power-of-two scale per output channel: the smallest that holds max |w| of the
    row without clipping (`NarrowRangeAbsMax`)."""

    scaling_stats_impl = NarrowRangeAbsMax


class TensorWeightQuant(Int8WeightPerTensorFixedPoint):
    """Narrow-range signed weights, one power-of-two scale per tensor (the token-mixing Linear: its output channels
    are tokens, and a per-token scale could not be absorbed by the per-channel thresholds that follow); its maximum
    held without clipping (`NarrowRangeAbsMax`)."""

    scaling_stats_impl = NarrowRangeAbsMax


class AccumulatorBiasQuant(Int32Bias):
    """Biases on the accumulator grid: 32-bit integers times (input scale * weight scale), a power of two per output
    channel with the weight and activation quantizers above. The layer's input must be a QuantTensor (the previous
    quantizer with `return_quant_tensor=True`, or the layer's own `input_quant`). Then `x @ W + b` is exact in
    float32, in torch, in the QONNX graph and in FINN's integer thresholds alike."""
