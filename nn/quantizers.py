"""psa-finn's default quantizers (Brevitas fixed-point: power-of-two scales) and the one check of their bit width.

Every scale is a power of two (Brevitas fixed-point quantizers): then each weight and activation is an integer times
a power of two, every MatMul, ReduceMean over 2^k tokens and rescaling in the exported graph is exact in float32,
and the fake-quant torch model computes bit for bit what the QONNX graph computes. Activation ranges start from a
calibration pass and are learned during QAT; weight ranges follow the weights (maximum absolute value).
`QuantLerpPSA` / `QuantBSpline` use `SignedActQuant` for their input and output; pass them to Brevitas layers as
any quantizer class (`QuantLinear(..., weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)`).
"""

from brevitas.quant.fixed_point import (Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint,
                                        Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint)
from brevitas.quant.scaled_int import Int32Bias

from psa_finn.common.bit_widths import MAX_BITS, MIN_BITS

DEFAULT_BITS = 8


def check_bits(bits) -> int:
    """`bits` as an int when it is an integer from 2 to 8; a ValueError that says so otherwise."""
    if isinstance(bits, bool) or not isinstance(bits, int) and not (isinstance(bits, float) and bits.is_integer()):
        raise ValueError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(f"bits must be from {MIN_BITS} to {MAX_BITS} (weights and activations), got {bits}; "
                         f"pass e.g. --bits {DEFAULT_BITS}")
    return int(bits)


class SignedActQuant(Int8ActPerTensorFixedPoint):
    """Signed activations, one power-of-two scale per tensor, initialised from the 99.999th percentile of |x|."""


class UnsignedActQuant(Uint8ActPerTensorFixedPoint):
    """Unsigned activations (after ReLU), one power-of-two scale per tensor."""


class ChannelWeightQuant(Int8WeightPerChannelFixedPoint):
    """Narrow-range signed weights, one power-of-two scale per output channel (max |w| of the row)."""


class TensorWeightQuant(Int8WeightPerTensorFixedPoint):
    """Narrow-range signed weights, one power-of-two scale per tensor (the token-mixing Linear: its output channels
    are tokens, and a per-token scale could not be absorbed by the per-channel thresholds that follow)."""


class AccumulatorBiasQuant(Int32Bias):
    """Biases on the accumulator grid: 32-bit integers times (input scale * weight scale), a power of two per output
    channel with the weight and activation quantizers above. The layer's input must be a QuantTensor (the previous
    quantizer with `return_quant_tensor=True`, or the layer's own `input_quant`). Then `x @ W + b` is exact in
    float32, in torch, in the QONNX graph and in FINN's integer thresholds alike."""
