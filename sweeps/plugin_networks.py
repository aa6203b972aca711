"""The plugin's MLP and CNN, as a researcher writes them: a float network of torch layers and psa_finn.nn's float
functions, trained first, then its QAT twin built only from public layers (brevitas.nn, psa_finn.nn) by module
replacement, calibrated, fine-tuned and exported with `export_qonnx`.

    mlp: x [N, *input] flattened on the host -> [Linear(h) -> f] x depth -> Linear(classes)
    cnn: x [N, Cin, S, S] -> [Conv2d(h, 3, padding 1) -> f -> MaxPool2d(2)] x depth -> Flatten -> Linear(classes);
         signals [N, Cin, L] run as [N, Cin, L, 1] (on the host) with 3x1 kernels and 2x1 pooling: finn-plus lowers
         convolutions on 4-D tensors only (a Conv1d export does not build)
    h = int(width * hidden_factor); f, one per variant (float -> QAT):
        relu      nn.ReLU                    -> QuantReLU (unsigned)
        lerp_psa  nn.LerpPSA(h) per channel  -> QuantLerpPSA.from_float    Quant -> LerpPSA -> Quant
        bspline   nn.BSpline(h) per channel  -> QuantBSpline.from_float    Quant -> LerpPSA -> Quant
        gelu      nn.GELU                    -> QuantIdentity -> nn.GELU -> QuantIdentity
        silu      nn.SiLU                    -> QuantIdentity -> nn.SiLU -> QuantIdentity

The QAT form quantizes the input (QuantIdentity), every weight (power-of-two scale per output channel) and every
activation to `bits` bits, with each Linear/Conv bias on its accumulator grid, so torch, the QONNX file and FINN's
integer hardware compute the same bits. `transforms.LowerQuantizedFunctions` turns each `Quant -> f -> Quant` into
a MultiThreshold or a PerChannelLUT. Checkpoints: `save_network` writes either form (`{"format":
"psa-finn-network", "config", "bits" (None for the float form), "state_dict", **extra}`), `load_float_network` and
`load_quant_network` read them back.
"""

import math

import torch
from brevitas.nn import QuantConv2d, QuantReLU
from torch import nn

from psa_finn.common.atomic_files import atomic_path
from psa_finn.common.grid import BSPLINE_GRID_SIZE, LERP_GRID_SIZE
from psa_finn.export.qat import calibrate
from psa_finn.export.quant_resmlp import act_quant, quant_between, quant_linear
from psa_finn.models.checkpoint import read_torch_file
from psa_finn.models.finite_parameters import check_finite_parameters
from psa_finn.nn import BSpline, LerpPSA, QuantBSpline, QuantLerpPSA
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, UnsignedActQuant, check_bits

ARCHITECTURES = ("mlp", "cnn")
STANDARD_FUNCTIONS = {"gelu": nn.GELU, "silu": nn.SiLU}
VARIANTS = ("relu", "lerp_psa", "bspline", *STANDARD_FUNCTIONS)
DEFAULT_GRID_SIZE = {"lerp_psa": LERP_GRID_SIZE, "bspline": BSPLINE_GRID_SIZE}
KERNEL_SIZE = 3
POOL_SIZE = 2
NETWORK_FORMAT = "psa-finn-network"
RESERVED_KEYS = ("format", "config", "bits", "state_dict")


class PerChannel(nn.Module):
    """Apply a channels-last learnable function (LerpPSA, BSpline) along axis 1 of [N, C, ...]."""

    def __init__(self, function: nn.Module):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x.movedim(1, -1)).movedim(-1, 1)


def float_function(variant: str, channels: int, grid_size):
    """The float activation module of `variant` over `channels` channels on axis 1."""
    if variant == "relu":
        return nn.ReLU()
    if variant == "lerp_psa":
        return PerChannel(LerpPSA(channels, grid_size=grid_size))
    if variant == "bspline":
        return PerChannel(BSpline(channels, grid_size))
    return STANDARD_FUNCTIONS[variant]()


class PluginNetwork(nn.Module):
    """The float MLP or CNN (see the module docstring); `config` rebuilds it (`PluginNetwork(**config)`)."""

    def __init__(self, architecture: str, variant: str, hidden_factor: float, width: int, depth: int,
                 input_shape, num_classes: int, grid_size=None):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
        if variant not in VARIANTS:
            raise ValueError(f"{architecture}: unknown variant {variant!r}; choose one of {list(VARIANTS)}")
        hidden_dim = int(width * hidden_factor)
        if hidden_dim < 1 or depth < 1:
            raise ValueError(f"{architecture}: width int({width} * {hidden_factor}) and depth {depth} must be >= 1")
        input_shape = tuple(int(n) for n in input_shape)
        if variant not in DEFAULT_GRID_SIZE:
            grid_size = None
        elif grid_size is None:
            grid_size = DEFAULT_GRID_SIZE[variant]
        self.config = dict(architecture=architecture, variant=variant, hidden_factor=hidden_factor, width=width,
                           depth=depth, input_shape=list(input_shape), num_classes=num_classes, grid_size=grid_size)
        self.hidden_dim = hidden_dim
        build = _mlp_layers if architecture == "mlp" else _cnn_layers
        self.layers = nn.Sequential(*build(input_shape, hidden_dim, depth, num_classes,
                                           lambda: float_function(variant, hidden_dim, grid_size)))

    def forward(self, x):
        return self.layers(host_layout(x, self.config))

    def tv2(self):
        """Sum of the TV(2) regularisers of the B-spline functions (a zero tensor for the other variants)."""
        return spline_tv2(self)


def spline_tv2(network):
    """Sum of the TV(2) regularisers of every BSpline in `network` (QuantBSpline learns one as its `function`)."""
    return sum((m.tv2() for m in network.modules() if isinstance(m, BSpline)), network.layers[0].weight.new_zeros(()))


def _mlp_layers(input_shape, hidden_dim, depth, num_classes, function):
    layers, features = [], math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(features, hidden_dim), function()]
        features = hidden_dim
    return layers + [nn.Linear(features, num_classes)]


def check_input(architecture: str, input_shape, depth: int) -> None:
    """ValueError unless `architecture` at `depth` takes inputs of `input_shape` (without the batch axis): the CNN
    reads [C, L] or [C, H, W] and halves each size `depth` times."""
    if architecture != "cnn":
        return
    sizes = tuple(input_shape)[1:]
    if len(sizes) not in (1, 2):
        raise ValueError(f"cnn: inputs [C, L] or [C, H, W] only, got {list(input_shape)}")
    if any(size % POOL_SIZE ** depth for size in sizes):
        raise ValueError(f"cnn: depth {depth} halves the input {list(input_shape)} {depth} times, so its sizes must "
                         f"be multiples of {POOL_SIZE ** depth}; use a smaller depth")


def _cnn_layers(input_shape, hidden_dim, depth, num_classes, function):
    check_input("cnn", input_shape, depth)
    channels, *sizes = input_shape
    one_d = len(sizes) == 1   # signals [C, L] run as images [C, L, 1]: kernels (3, 1), pooling (2, 1)
    kernel, padding = ((KERNEL_SIZE, 1), (KERNEL_SIZE // 2, 0)) if one_d else (KERNEL_SIZE, KERNEL_SIZE // 2)
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, hidden_dim, kernel, padding=padding), function(),
                   nn.MaxPool2d((POOL_SIZE, 1) if one_d else POOL_SIZE)]
        channels = hidden_dim
    pooled = math.prod(size // POOL_SIZE ** depth for size in sizes)
    return layers + [nn.Flatten(), nn.Linear(channels * pooled, num_classes)]


def host_layout(x, config: dict):
    """Dataset inputs [N, *input_shape] in the layout the network reads, outside the exported graph: flattened for
    the MLP, signals [N, C, L] as [N, C, L, 1] for the CNN; inputs already in that layout pass."""
    if config["architecture"] == "mlp" and x.dim() > 2:
        return x.flatten(1)
    if config["architecture"] == "cnn" and len(config["input_shape"]) == 2 and x.dim() == 3:
        return x[..., None]
    return x


def quant_conv(conv, bits: int):
    """A QuantConv2d holding `conv`'s weights and bias, power-of-two weight scales, exact bias."""
    layer = QuantConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                        padding=conv.padding, bias=True, weight_quant=ChannelWeightQuant, weight_bit_width=bits,
                        bias_quant=AccumulatorBiasQuant)
    with torch.no_grad():
        layer.weight.copy_(conv.weight)
        layer.bias.copy_(conv.bias)
    return layer


def quant_module(module: nn.Module, bits: int) -> nn.Module:
    """The QAT layer of one module of a `PluginNetwork` (pooling and flattening stay as they are)."""
    if isinstance(module, nn.Linear):
        return quant_linear(module.weight, module.bias, bits)
    if isinstance(module, nn.Conv2d):
        return quant_conv(module, bits)
    if isinstance(module, nn.ReLU):
        return QuantReLU(act_quant=UnsignedActQuant, bit_width=bits, return_quant_tensor=True)
    if isinstance(module, PerChannel):
        layer = QuantBSpline if isinstance(module.function, BSpline) else QuantLerpPSA
        return layer.from_float(module.function, channel_dim=1, bit_width=bits, return_quant_tensor=True)
    if isinstance(module, tuple(STANDARD_FUNCTIONS.values())):
        return quant_between(module, bits)
    if isinstance(module, (nn.MaxPool2d, nn.Flatten)):
        return module
    raise ValueError(f"no QAT layer for {type(module).__name__}")


class QuantPluginNetwork(nn.Module):
    """The QAT twin of a `PluginNetwork` at `bits` bits: input quantizer, then each module's QAT layer."""

    def __init__(self, network: PluginNetwork, bits: int):
        super().__init__()
        self.config = dict(network.config)
        self.bits = check_bits(bits)
        self.hidden_dim = network.hidden_dim
        self.input_quant = act_quant(self.bits)
        with torch.no_grad():
            self.layers = nn.Sequential(*[quant_module(m, self.bits) for m in network.layers])
        self.train(network.training)

    def forward(self, x):
        return self.layers(self.input_quant(host_layout(x, self.config)))

    def example_input(self, seed: int = 0):
        """One seeded standard-normal input in the exported layout ([1, features] for the MLP)."""
        generator = torch.Generator().manual_seed(seed)
        return host_layout(torch.randn((1, *self.config["input_shape"]), generator=generator), self.config)

    def tv2(self):
        """Sum of the TV(2) regularisers of the QuantBSpline layers (a zero tensor for the other variants)."""
        return spline_tv2(self)


def to_quant_network(network: PluginNetwork, bits: int, calibration_batches=None) -> QuantPluginNetwork:
    """The QAT form of `network` at `bits` bits, its activation ranges calibrated on `calibration_batches` (dataset
    inputs; None leaves them uncalibrated, e.g. to load a state dict); in eval mode, `network` unchanged."""
    check_finite_parameters(network, "float network")
    quant = QuantPluginNetwork(network, bits)
    if calibration_batches is not None:
        calibrate(quant, calibration_batches)
    return quant.eval()


def save_network(path, model, **extra):
    """Write a `PluginNetwork` or `QuantPluginNetwork` with `extra` to `path` atomically."""
    clash = [key for key in RESERVED_KEYS if key in extra]
    if clash:
        raise ValueError(f"save_network: extra keys {clash} are reserved for the checkpoint itself")
    payload = {"format": NETWORK_FORMAT, "config": dict(model.config), "bits": getattr(model, "bits", None),
               "state_dict": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load(path, quantized: bool):
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != NETWORK_FORMAT:
        raise ValueError(f"{path}: not a checkpoint of a sweep's MLP/CNN (no 'format': '{NETWORK_FORMAT}' entry)")
    if (payload.get("bits") is not None) != quantized:
        raise ValueError(f"{path}: holds the {'float' if quantized else 'QAT'} form of the network, not the "
                         f"{'QAT' if quantized else 'float'} one")
    model = PluginNetwork(**payload["config"])
    if quantized:
        model = to_quant_network(model, payload["bits"])
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: weights do not fit the stored config {payload['config']}: {err}") from err
    check_finite_parameters(model, str(path))
    return model.eval(), {k: v for k, v in payload.items() if k not in RESERVED_KEYS}


def load_float_network(path):
    """(PluginNetwork in eval mode, extra dict) of a `save_network` file of the float form."""
    return _load(path, quantized=False)


def load_quant_network(path):
    """(QuantPluginNetwork in eval mode, extra dict) of a `save_network` file of the QAT form."""
    return _load(path, quantized=True)
