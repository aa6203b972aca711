"""Kolmogorov-Arnold networks from public layers: the KAN of `QuantKANLinear`s, the same KAN scaffolded from FINN's
existing layers (the comparison the KAN layer is measured against), and the MLP of the same widths.

    kan:       x [N, F] (flattened on the host) -> QuantKANLinear(F, w1) -> ... -> QuantKANLinear(w_{n-1}, classes)
    scaffold:  per KAN layer (I -> J): QuantLinear fan-out I -> I*J (fixed 0/1 weights) -> QuantBSpline(I*J) (edge
               c = j * I + i holds phi_ji) -> QuantLinear sum I*J -> J (fixed 0/1 weights) -> QuantIdentity

`ScaffoldKAN.from_kan(kan)` copies a trained KAN's edge tables into the scaffold, so both compute the same functions
(the scaffold quantizes each edge's output to the layer's bits, the KAN layer sums exact edge values). The fixed
0/1 weights use `ExactBinaryWeightQuant` (2-bit, not narrow: codes -2..1 at scale 1), which keeps 1 exact.
"""

import torch
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant.fixed_point import Int8WeightPerTensorFixedPoint
from torch import nn

from psa_finn.nn import QuantBSpline, QuantKANLinear
from psa_finn.nn.quant_kan_linear import KAN_GRID_RANGE, KAN_GRID_SIZE
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant, UnsignedActQuant, \
    check_bits


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


class QuantMLP(nn.Module):
    """The MLP of the same widths, the KAN's baseline: QuantIdentity -> [QuantLinear -> QuantReLU] ... -> QuantLinear,
    `bits`-bit weights (power-of-two scale per row) and activations, biases on the accumulator grid."""

    def __init__(self, widths, bits: int = 4):
        super().__init__()
        self.widths, self.bits = [int(w) for w in widths], check_bits(bits)
        layers = [QuantIdentity(SignedActQuant, bit_width=bits, return_quant_tensor=True)]
        pairs = list(zip(self.widths[:-1], self.widths[1:]))
        for n, (inputs, outputs) in enumerate(pairs):
            layers.append(QuantLinear(inputs, outputs, bias=True, weight_quant=ChannelWeightQuant,
                                      weight_bit_width=bits, bias_quant=AccumulatorBiasQuant))
            if n < len(pairs) - 1:
                layers.append(QuantReLU(act_quant=UnsignedActQuant, bit_width=bits, return_quant_tensor=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def prune_network(model, x, threshold: float) -> int:
    """Prune every QuantKANLinear of `model` (`QuantKANLinear.prune_edges` at `threshold`) on the inputs each layer
    sees when `model` runs on x (eval mode); returns the edges kept over all layers."""
    inputs = {}

    def keep_input(module, args):
        inputs[module] = args[0]  # returns None: the input goes on unchanged

    layers = [m for m in model.modules() if isinstance(m, QuantKANLinear)]
    hooks = [layer.register_forward_pre_hook(keep_input) for layer in layers]
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(layer.prune_edges(inputs[layer], threshold) for layer in layers)


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


KAN_VARIANTS = ("bspline", "lerp_psa")
KAN_FORMAT = "psa-finn-kan"
FLOAT_EDGE_BITS = 16


class KANClassifier(nn.Module):
    """The sweeps' `kan` family model: a KAN over flattened inputs, `depth` hidden layers of int(width *
    hidden_factor) features then the classifier layer; float (bits None: no quantizers, 16-bit edge grid) or its
    QAT twin (`to_quant_kan`). `variant` is the edge function ("bspline" or "lerp_psa")."""

    def __init__(self, variant: str, hidden_factor: float, width: int, depth: int, input_shape, num_classes: int,
                 grid_size=None, bits=None):
        super().__init__()
        if variant not in KAN_VARIANTS:
            raise ValueError(f"the kan family's variants are {KAN_VARIANTS}, got {variant!r}")
        self.config = {"variant": variant, "hidden_factor": float(hidden_factor), "width": int(width),
                       "depth": int(depth), "input_shape": list(input_shape), "num_classes": int(num_classes),
                       "grid_size": grid_size}
        self.bits = None if bits is None else check_bits(bits)
        features = int(torch.tensor(input_shape).prod())
        hidden = max(1, int(width * hidden_factor))
        self.hidden_dim = hidden
        widths = [features] + [hidden] * int(depth) + [int(num_classes)]
        quant = {} if self.bits is not None else {"input_quant": None, "output_quant": None,
                                                  "edge_bit_width": FLOAT_EDGE_BITS}
        self.layers = nn.ModuleList(
            QuantKANLinear(i, o, bit_width=self.bits or 8, grid_size=grid_size or KAN_GRID_SIZE, function=variant,
                           base="silu" if variant == "bspline" else None,
                           **{**quant, **({"input_quant": None} if n > 0 else {})},
                           return_quant_tensor=self.bits is not None and n < len(widths) - 2)
            for n, (i, o) in enumerate(zip(widths[:-1], widths[1:])))

    def forward(self, x):
        x = x if x.dim() == 2 else x.flatten(1)  # host side: the exported graph reads [N, features]
        for layer in self.layers:
            x = layer(x)
        return x

    def example_input(self, seed: int = 0):
        """One seeded standard-normal input [1, features] (the exported layout)."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randn((1, self.layers[0].in_features), generator=generator)

    def tv2(self):
        """No spline regulariser for the KAN edges: a zero tensor."""
        return torch.zeros(())


def to_quant_kan(network: KANClassifier, bits: int, calibration_batches=None) -> KANClassifier:
    """The QAT twin of a float KANClassifier at `bits` bits (edge parameters copied), calibrated on the batches."""
    from psa_finn.export.qat import calibrate

    quant = KANClassifier(**network.config, bits=bits)
    missing = quant.load_state_dict(network.state_dict(), strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"to_quant_kan: float parameters {missing.unexpected_keys} have no QAT counterpart")
    if calibration_batches is not None:
        calibrate(quant, calibration_batches)
    return quant.eval()


def save_kan(path, model: KANClassifier, **extra):
    """Write a KANClassifier (either form) with `extra` to `path` atomically."""
    from psa_finn.common.atomic_files import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"format": KAN_FORMAT, "config": dict(model.config), "bits": model.bits,
                    "state_dict": model.state_dict(), **extra}, tmp)


def _load_kan(path, quantized: bool):
    from psa_finn.models.checkpoint import read_torch_file
    from psa_finn.models.finite_parameters import check_finite_parameters

    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != KAN_FORMAT:
        raise ValueError(f"{path}: not a checkpoint of a sweep's KAN (no 'format': '{KAN_FORMAT}' entry)")
    if (payload.get("bits") is not None) != quantized:
        raise ValueError(f"{path}: holds the {'float' if quantized else 'QAT'} form of the KAN")
    model = KANClassifier(**payload["config"], bits=payload["bits"])
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: weights do not fit the stored config {payload['config']}: {err}") from err
    check_finite_parameters(model, str(path))
    extra = {k: v for k, v in payload.items() if k not in ("format", "config", "bits", "state_dict")}
    return model.eval(), extra


def load_float_kan(path):
    """(float KANClassifier in eval mode, extra dict) of a `save_kan` file."""
    return _load_kan(path, quantized=False)


def load_quant_kan(path):
    """(QAT KANClassifier in eval mode, extra dict) of a `save_kan` file."""
    return _load_kan(path, quantized=True)


def check_kan_input(input_shape, depth: int) -> None:
    """Any input shape flattens; a KAN needs depth >= 0."""
    if depth < 0:
        raise ValueError(f"the kan family needs depth >= 0 hidden layers, got {depth}")
