"""Kolmogorov-Arnold networks from public layers: the KAN of `QuantKANLinear`s, and the same KAN scaffolded from
FINN's existing layers (the comparison the KAN layer is measured against).

    kan:       x [N, F] (flattened on the host) -> QuantKANLinear(F, w1) -> ... -> QuantKANLinear(w_{n-1}, classes)
    scaffold:  per KAN layer (I -> J): QuantLinear fan-out I -> I*J (fixed 0/1 weights) -> QuantBSpline(I*J) (edge
               c = j * I + i holds phi_ji) -> QuantLinear sum I*J -> J (fixed 0/1 weights) -> QuantIdentity

`ScaffoldKAN.from_kan(kan)` copies a trained KAN's edge tables into the scaffold, so both compute the same functions
(the scaffold quantizes each edge's output to the layer's bits, the KAN layer sums exact edge values). The fixed
0/1 weights use `ExactBinaryWeightQuant` (2-bit, not narrow: codes -2..1 at scale 1), which keeps 1 exact.
"""

import torch
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant.fixed_point import Int8WeightPerTensorFixedPoint
from torch import nn

from psa_finn.nn import QuantBSpline, QuantKANLinear
from psa_finn.nn.quant_kan_linear import KAN_GRID_RANGE, KAN_GRID_SIZE
from psa_finn.nn.quantizers import SignedActQuant, check_bits


class ExactBinaryWeightQuant(Int8WeightPerTensorFixedPoint):
    """Weights 0/1 (and -2..1) exactly: 2-bit signed, full range, scale 2^0 for a maximum of 1."""

    bit_width = 2
    narrow_range = False


class KANNetwork(nn.Module):
    """A KAN of QuantKANLinear layers over `widths` (input features first, classes last), all at `bits` bits."""

    def __init__(self, widths, bits: int = 4, grid_size: int = KAN_GRID_SIZE, grid_range: float = KAN_GRID_RANGE,
                 function: str = "bspline", base="silu", edge_bit_width: int = None):
        super().__init__()
        bits = check_bits(bits)
        if len(widths) < 2:
            raise ValueError(f"KANNetwork needs at least two widths (inputs, outputs), got {list(widths)}")
        self.widths, self.bits = [int(w) for w in widths], bits
        self.layers = nn.ModuleList(
            QuantKANLinear(i, o, bit_width=bits, grid_size=grid_size, grid_range=grid_range, function=function,
                           base=base, edge_bit_width=edge_bit_width, input_quant=SignedActQuant if n == 0 else None,
                           return_quant_tensor=n < len(self.widths) - 2)
            for n, (i, o) in enumerate(zip(self.widths[:-1], self.widths[1:])))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _fixed(layer: QuantLinear, weight):
    with torch.no_grad():
        layer.weight.copy_(weight)
    layer.weight.requires_grad_(False)
    return layer


class ScaffoldKAN(nn.Module):
    """The KAN built from FINN's existing layers (module docstring); build it with `from_kan`."""

    def __init__(self, widths, bits: int = 4, grid_size: int = KAN_GRID_SIZE, grid_range: float = KAN_GRID_RANGE):
        super().__init__()
        self.widths, self.bits = [int(w) for w in widths], check_bits(bits)
        self.input_quant = QuantIdentity(SignedActQuant, bit_width=bits, return_quant_tensor=True)
        blocks = []
        for n, (inputs, outputs) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            edges = inputs * outputs
            channel = torch.arange(edges)
            fan_out = _fixed(QuantLinear(inputs, edges, bias=False, weight_quant=ExactBinaryWeightQuant,
                                         return_quant_tensor=False),
                             (channel[:, None] % inputs == torch.arange(inputs)[None, :]).float())
            functions = QuantBSpline(edges, channel_dim=-1, bit_width=bits, grid_size=grid_size,
                                     grid_range=grid_range, return_quant_tensor=True)
            summed = _fixed(QuantLinear(edges, outputs, bias=False, weight_quant=ExactBinaryWeightQuant,
                                        return_quant_tensor=False),
                            (channel[None, :] // inputs == torch.arange(outputs)[:, None]).float())
            last = n == len(self.widths) - 2
            output = QuantIdentity(SignedActQuant, bit_width=bits, return_quant_tensor=not last)
            blocks.append(nn.Sequential(fan_out, functions, summed, output))
        self.blocks = nn.ModuleList(blocks)

    @classmethod
    def from_kan(cls, kan: KANNetwork):
        """The scaffold computing `kan`'s edge functions (tables copied; function "bspline" tables on an odd grid)."""
        first = kan.layers[0]
        scaffold = cls(kan.widths, kan.bits, first.grid_size, first.grid_range)
        with torch.no_grad():
            for block, layer in zip(scaffold.blocks, kan.layers):
                block[1].function._coefficients_vect.copy_(layer.tables().reshape(-1))
        return scaffold

    def forward(self, x):
        x = self.input_quant(x)
        for block in self.blocks:
            x = block(x)
        return x


def train_classifier(model, x, y, epochs: int = 40, lr: float = 0.02, batch_size: int = 128, seed: int = 0):
    """Adam on cross-entropy over shuffled mini-batches (the quantizers calibrate on the first batches)."""
    generator = torch.Generator().manual_seed(seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    model.eval()
    return model


def accuracy(model, x, y) -> float:
    """Top-1 accuracy of `model` (eval mode) on (x, y)."""
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())
