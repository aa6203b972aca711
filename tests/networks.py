"""Small user networks with learnable 1-D functions, written and exported as a researcher would (tests only).

Each is a Brevitas model on digits-sized inputs with seeded random weights and LERP-PSA functions
(`psa_finn.nn.QuantLerpPSA`), calibrated on random inputs and exported with `psa_finn.export.export_qonnx`: an MLP,
a CNN (Conv2d + MaxPool, NCHW as Brevitas exports it, its LERP-PSA bank on channel_dim 1), the same CNN with the bank
run channels-last between two permutes ("cnn_permuted", channel_dim -1), a CNN with a residual join of branches on
different power-of-two grids ("residual_cnn"), brevitas_examples' TFC with 2-bit activations and a LERP-PSA bank
after each hidden activation, and a KAN ("fanout_kan"): a learnable function on every edge, written with fixed 0/1
QuantLinear fan-outs and sums around QuantLerpPSA.
"""

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from torch import nn

from psa_finn.export import export_qonnx
from psa_finn.nn import QuantLerpPSA
from psa_finn.nn.quantizers import SignedActQuant, TensorWeightQuant, UnsignedActQuant


def rising_and_falling(layer: QuantLerpPSA) -> QuantLerpPSA:
    """Make every function of `layer` linear, rising on even channels and falling on odd ones (random slopes)."""
    psa = layer.function
    channels = layer.num_channels
    with torch.no_grad():
        psa.v_weight.copy_((0.5 + torch.rand(channels, 1)).expand_as(psa.v_weight))
        psa.o_weight.copy_(torch.where(torch.arange(channels) % 2 == 0, 1.0, -1.0))
    return layer


class Permuted(nn.Module):
    """Apply `inner` to an NCHW tensor along its channels: NHWC permute, inner, NCHW permute."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def mlp(bits=4):
    """64 -> 32 -> LERP-PSA -> 16 -> ReLU -> 10 on flattened 8x8 digits."""
    return nn.Sequential(QuantIdentity(act_quant=SignedActQuant, bit_width=8),
                         QuantLinear(64, 32, bias=True, weight_bit_width=bits),
                         QuantLerpPSA(32, bit_width=bits, distill_init=False),
                         QuantLinear(32, 16, bias=True, weight_bit_width=bits),
                         QuantReLU(act_quant=UnsignedActQuant, bit_width=bits),
                         QuantLinear(16, 10, bias=True, weight_bit_width=bits))


class CNN(nn.Module):
    """[N, 1, 8, 8] -> Conv3x3(8) -> LERP-PSA -> MaxPool2 -> Conv3x3(16) -> ReLU -> Linear(10); the LERP-PSA bank on
    the NCHW channels, or channels-last between permutes (`permuted`)."""

    def __init__(self, bits=4, permuted=False):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8)
        self.conv1 = QuantConv2d(1, 8, 3, padding=1, bias=True, weight_bit_width=bits)
        if permuted:
            self.act1 = Permuted(QuantLerpPSA(8, channel_dim=-1, bit_width=bits, distill_init=False))
        else:
            self.act1 = QuantLerpPSA(8, channel_dim=1, bit_width=bits, distill_init=False)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = QuantConv2d(8, 16, 3, bias=True, weight_bit_width=bits)
        self.act2 = QuantReLU(act_quant=UnsignedActQuant, bit_width=bits)
        self.fc = QuantLinear(16 * 2 * 2, 10, bias=True, weight_bit_width=bits)

    def forward(self, x):
        x = self.pool(self.act1(self.conv1(self.input_quant(x))))
        x = self.act2(self.conv2(x))
        return self.fc(x.flatten(1))


class ResidualCNN(nn.Module):
    """[N, 1, 8, 8] -> Conv3x3(8) -> LERP-PSA = a; a -> Conv3x3(8) -> ReLU = b; Quant(a + b) -> MaxPool2 -> Linear(10):
    a residual join of two branches with different power-of-two quantizer scales (signed and unsigned)."""

    def __init__(self, bits=4):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8)
        self.conv1 = QuantConv2d(1, 8, 3, padding=1, bias=True, weight_bit_width=bits)
        self.act1 = QuantLerpPSA(8, channel_dim=1, bit_width=bits, distill_init=False, return_quant_tensor=True)
        self.conv2 = QuantConv2d(8, 8, 3, padding=1, bias=True, weight_bit_width=bits)
        self.act2 = QuantReLU(act_quant=UnsignedActQuant, bit_width=bits, return_quant_tensor=True)
        self.join_quant = QuantIdentity(act_quant=SignedActQuant, bit_width=bits)
        self.pool = nn.MaxPool2d(2)
        self.fc = QuantLinear(8 * 4 * 4, 10, bias=True, weight_bit_width=bits)

    def forward(self, x):
        a = self.act1(self.conv1(self.input_quant(x)))
        b = self.act2(self.conv2(a))
        x = self.pool(self.join_quant(a.value + b.value))
        return self.fc(x.flatten(1))


class TFCWithLerpPSA(nn.Module):
    """brevitas_examples' TFC (tfc_2w2a: 2-bit weights and activations, 3x64) on 8x8 inputs, with a LERP-PSA bank
    of rising and falling functions after each hidden activation (reading that activation's quantizer)."""

    def __init__(self):
        super().__init__()
        from brevitas_examples.bnn_pynq.models.common import CommonActQuant
        from brevitas_examples.bnn_pynq.models.FC import FC

        self.fc = FC(num_classes=10, weight_bit_width=2, act_bit_width=2, in_bit_width=2, in_channels=1,
                     out_features=[64, 64, 64], in_features=(8, 8))
        features = []
        for module in self.fc.features:
            features.append(module)
            if isinstance(module, QuantIdentity) and len(features) > 1:
                features.append(rising_and_falling(
                    QuantLerpPSA(64, bit_width=2, input_quant=None, act_quant=CommonActQuant)))
        self.fc.features = nn.ModuleList(features)

    def forward(self, x):
        return self.fc(x)


def fixed_linear(weight):
    """A QuantLinear without bias holding the constant 0/1 matrix `weight` [out, in] (not trained)."""
    layer = QuantLinear(weight.shape[1], weight.shape[0], bias=False, weight_quant=TensorWeightQuant,
                        weight_bit_width=2)  # codes -1, 0, 1 at scale 1: the 0/1 matrix exactly
    with torch.no_grad():
        layer.weight.copy_(weight)
    layer.weight.requires_grad_(False)
    return layer


def kan_layer(inputs, outputs):
    """One KAN layer: out_j = sum_i f_ji(x_i), as a 0/1 fan-out (edge j * inputs + i reads input i), a LERP-PSA
    bank of inputs x outputs functions, and a 0/1 sum of each output's edges."""
    edges = inputs * outputs
    fan_out = torch.zeros(edges, inputs)
    fan_out[torch.arange(edges), torch.arange(edges) % inputs] = 1.0
    total = torch.zeros(outputs, edges)
    total[torch.arange(edges) // inputs, torch.arange(edges)] = 1.0
    return [fixed_linear(fan_out), QuantLerpPSA(edges, bit_width=8, distill_init=False), fixed_linear(total)]


def fanout_kan():
    """64 -> 8 -> 10 KAN on flattened 8x8 digits, 8-bit."""
    return nn.Sequential(QuantIdentity(act_quant=SignedActQuant, bit_width=8), *kan_layer(64, 8),
                         QuantIdentity(act_quant=SignedActQuant, bit_width=8), *kan_layer(8, 10))


NETWORKS = {"mlp": (mlp, (1, 64)), "cnn": (CNN, (1, 1, 8, 8)),
            "cnn_permuted": (lambda: CNN(permuted=True), (1, 1, 8, 8)), "tfc": (TFCWithLerpPSA, (1, 1, 8, 8)),
            "residual_cnn": (ResidualCNN, (1, 1, 8, 8)), "fanout_kan": (fanout_kan, (1, 64))}


def export_network(name, path, seed=0):
    """Build network `name` with seed `seed`, calibrate it on random inputs, export it to `path` with
    psa_finn.export.export_qonnx."""
    factory, shape = NETWORKS[name]
    torch.manual_seed(seed)
    model = factory()
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, *shape[1:]) * 2 - 1)
    return export_qonnx(model.eval(), torch.rand(shape), path)
