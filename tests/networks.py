"""Small user networks with learnable 1-D functions, exported to QONNX as a researcher would (tests only).

Each is a Brevitas model on digits-sized inputs with seeded random weights and LERP-PSA tables, exported with
Brevitas' export_qonnx and qonnx's clean-up: an MLP, a CNN (Conv2d + MaxPool, NCHW as Brevitas exports it) and
brevitas_examples' TFC with 2-bit activations. A learnable function is `QuantIdentity -> lerp_psa -> QuantIdentity`
(as export/quant_resmlp.py's QuantLerpPSA). In the CNN it runs channels-last between two permutes ("cnn_permuted");
"cnn" is the same graph with the permutes dropped and the LerpPSA node on channel_axis 1 (NCHW), as a layer with a
channel dimension exports it.
"""

import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model
from torch import nn

import psa_finn.custom_ops  # noqa: F401  (LerpPSA shape and datatype inference in the clean-up)
from psa_finn.custom_ops.domain import CHANNEL_AXIS_ATTR, LERP_PSA_OP, OPS_DOMAIN, OPS_DOMAIN_VERSION, is_op, \
    match_quantized_function
from psa_finn.nn.lerp_psa_function import lerp_psa
from psa_finn.nn.quantizers import SignedActQuant, UnsignedActQuant

GRID_SIZE = 64
GRID_RANGE = 4.0


class LearnableFunction(nn.Module):
    """`act_quant(lerp_psa(input_quant(x)))` over the last axis, one random table per channel.

    `shape` "wavy" draws non-monotone tables (PerChannelLUT), "monotone" rising and falling ones (MultiThreshold,
    falling channels included). `input_quant=False`: the input already comes from a quantizer.
    """

    def __init__(self, channels, bits, shape="wavy", input_quant=None, act_quant=None):
        super().__init__()
        grid = torch.linspace(-GRID_RANGE, GRID_RANGE, GRID_SIZE)
        if shape == "wavy":
            table = torch.sin(grid[None] * torch.rand(channels, 1) * 3) * torch.rand(channels, 1) * 2
        else:
            sign = torch.where(torch.arange(channels) % 2 == 0, 1.0, -1.0)[:, None]
            table = sign * torch.tanh(grid[None] * (0.5 + torch.rand(channels, 1)))
        self.table = nn.Parameter(table)
        self.input_quant = nn.Identity() if input_quant is False else \
            QuantIdentity(act_quant=input_quant or SignedActQuant, bit_width=bits)
        self.act_quant = QuantIdentity(act_quant=act_quant or SignedActQuant, bit_width=bits)

    def forward(self, x):
        return self.act_quant(lerp_psa(self.input_quant(x), self.table, GRID_RANGE))


class ChannelsLast(nn.Module):
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
                         LearnableFunction(32, bits),
                         QuantLinear(32, 16, bias=True, weight_bit_width=bits),
                         QuantReLU(act_quant=UnsignedActQuant, bit_width=bits),
                         QuantLinear(16, 10, bias=True, weight_bit_width=bits))


class CNN(nn.Module):
    """[N, 1, 8, 8] -> Conv3x3(8) -> LERP-PSA -> MaxPool2 -> Conv3x3(16) -> ReLU -> Linear(10)."""

    def __init__(self, bits=4):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=SignedActQuant, bit_width=8)
        self.conv1 = QuantConv2d(1, 8, 3, padding=1, bias=True, weight_bit_width=bits)
        self.act1 = ChannelsLast(LearnableFunction(8, bits))
        self.pool = nn.MaxPool2d(2)
        self.conv2 = QuantConv2d(8, 16, 3, bias=True, weight_bit_width=bits)
        self.act2 = QuantReLU(act_quant=UnsignedActQuant, bit_width=bits)
        self.fc = QuantLinear(16 * 2 * 2, 10, bias=True, weight_bit_width=bits)

    def forward(self, x):
        x = self.pool(self.act1(self.conv1(self.input_quant(x))))
        x = self.act2(self.conv2(x))
        return self.fc(x.flatten(1))


class TFCWithLerpPSA(nn.Module):
    """brevitas_examples' TFC (tfc_2w2a: 2-bit weights and activations, 3x64) on 8x8 inputs, with a monotone
    LERP-PSA bank (rising and falling channels) after each hidden activation."""

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
                features.append(LearnableFunction(64, 2, "monotone", False, CommonActQuant))
        self.fc.features = nn.ModuleList(features)

    def forward(self, x):
        return self.fc(x)


NETWORKS = {"mlp": (mlp, (1, 64)), "cnn_permuted": (CNN, (1, 1, 8, 8)), "tfc": (TFCWithLerpPSA, (1, 1, 8, 8))}


def drop_permutes_around_functions(model):
    """`Transpose(NHWC) -> Quant -> LerpPSA -> Quant -> Transpose(NCHW)` -> the chain on NCHW, channel_axis 1."""
    for node in list(model.graph.node):
        if not is_op(node, LERP_PSA_OP):
            continue
        chain = match_quantized_function(model, node)
        before = model.find_producer(chain.quant_in.input[0])
        after = model.find_consumer(chain.quant_out.output[0])
        chain.quant_in.input[0] = before.input[0]
        for consumer in model.find_consumers(after.output[0]):
            consumer.input[:] = [chain.quant_out.output[0] if i == after.output[0] else i for i in consumer.input]
        model.graph.node.remove(before)
        model.graph.node.remove(after)
        node.attribute.append(helper.make_attribute(CHANNEL_AXIS_ATTR, 1))
    for value_info in list(model.graph.value_info):
        model.graph.value_info.remove(value_info)
    return model.transform(InferShapes())


def export_network(name, path, seed=0):
    """Build network `name` with seed `seed`, calibrate it on random inputs, export the cleaned QONNX to `path`."""
    if name == "cnn":
        export_network("cnn_permuted", path, seed)
        drop_permutes_around_functions(ModelWrapper(str(path))).save(str(path))
        return path
    factory, shape = NETWORKS[name]
    torch.manual_seed(seed)
    model = factory()
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, *shape[1:]) * 2 - 1)
    model.eval()
    export_qonnx(model, args=torch.rand(shape), export_path=str(path), dynamo=False,
                 custom_opsets={OPS_DOMAIN: OPS_DOMAIN_VERSION})
    cleanup_model(ModelWrapper(str(path))).save(str(path))
    return path
