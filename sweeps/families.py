"""Model families a sweep can train: how to build the float model of a trial, its QAT twin, and export it.

A family is what a trial needs from the model code, nothing else: `build(spec, geometry)` -> float nn.Module,
`to_qat(model, bits, calibration_batches)` -> calibrated QAT module, the float and QAT checkpoint writers and readers
for `models.training.Trainer`, and `export(qat, path)` -> QONNX file. Every model has `config`, `layers` (the Trainer
counts its blocks), `tv2()` and, in QAT form, `example_input()` (the exported input).

    resmlp  the paper's ResMLP (models.ResMLP; its QAT form export.quant_resmlp.QuantResMLP)
    mlp     the plugin's MLP: [Linear -> f] x depth -> Linear, on flattened inputs
    cnn     the plugin's CNN: [Conv 3 -> f -> MaxPool 2] x depth -> Linear, on images (or 1-D signals)
    kan     a KAN of QuantKANLinear layers (`sweeps.kan_networks.KANClassifier`): depth hidden layers of width, then
            the classifier; variants bspline, lerp_psa (the edge functions); no ReLU teacher (give no `teacher:`)

The space's `model: {embed_dim, depth}` sizes every family: the ResMLP's embedding and blocks; the MLP's hidden
width at hidden factor 1 (`int(embed_dim * hidden_factor)` units per layer) and its layers; the CNN's channels at
hidden factor 1 and its convolution blocks. MLP and CNN (`sweeps.plugin_networks`) add the standard activations
gelu and silu to relu, lerp_psa and bspline.
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch


@dataclass(frozen=True)
class ModelFamily:
    """The model-side functions one sweep trial calls."""

    name: str
    variants: tuple
    build: Callable
    to_qat: Callable
    save_float: Callable
    load_float: Callable
    save_qat: Callable
    load_qat: Callable
    export: Callable
    check_input: Callable = None    # (input_shape, depth): ValueError when the family cannot read such inputs


def _build_resmlp(spec, geometry):
    from psa_finn.models import ResMLP

    torch.manual_seed(spec.seed)
    return ResMLP(spec.variant, spec.hidden_factor, embed_dim=spec.embed_dim, depth=spec.depth,
                  grid_size=spec.grid_size, **geometry.model_kwargs())


def _export_on_example_input(qat, path):
    from psa_finn.export import export_qonnx

    return export_qonnx(qat, qat.example_input(), path)


def resmlp_family() -> ModelFamily:
    """The paper's ResMLP (models.ResMLP, export.qat, export.qonnx_export)."""
    from psa_finn.export.qat import load_qat_checkpoint, save_qat_checkpoint, to_qat_model
    from psa_finn.models import load_checkpoint, save_checkpoint
    from psa_finn.models.resmlp import VARIANTS

    return ModelFamily("resmlp", VARIANTS, _build_resmlp, to_qat_model, save_checkpoint, load_checkpoint,
                       save_qat_checkpoint, load_qat_checkpoint, _export_on_example_input)


def _build_plugin_network(architecture, spec, geometry):
    from psa_finn.sweeps.plugin_networks import PluginNetwork

    torch.manual_seed(spec.seed)
    return PluginNetwork(architecture, spec.variant, spec.hidden_factor, width=spec.embed_dim, depth=spec.depth,
                         input_shape=geometry.input_shape, num_classes=geometry.num_classes,
                         grid_size=spec.grid_size)


def plugin_family(architecture: str) -> ModelFamily:
    """The plugin's MLP or CNN (`sweeps.plugin_networks`: public layers only, exported with export_qonnx)."""
    from psa_finn.sweeps.plugin_networks import (VARIANTS, check_input, load_float_network, load_quant_network,
                                                 save_network, to_quant_network)

    return ModelFamily(architecture, VARIANTS, partial(_build_plugin_network, architecture), to_quant_network,
                       save_network, load_float_network, save_network, load_quant_network, _export_on_example_input,
                       partial(check_input, architecture))


def _build_kan(spec, geometry):
    from psa_finn.sweeps.kan_networks import KANClassifier

    torch.manual_seed(spec.seed)
    return KANClassifier(spec.variant, spec.hidden_factor, width=spec.embed_dim, depth=spec.depth,
                         input_shape=geometry.input_shape, num_classes=geometry.num_classes, grid_size=spec.grid_size)


def kan_family() -> ModelFamily:
    """KANs of QuantKANLinear layers (`sweeps.kan_networks`), exported with export_qonnx."""
    from psa_finn.sweeps.kan_networks import (KAN_VARIANTS, check_kan_input, load_float_kan, load_quant_kan, save_kan,
                                              to_quant_kan)

    return ModelFamily("kan", KAN_VARIANTS, _build_kan, to_quant_kan, save_kan, load_float_kan, save_kan,
                       load_quant_kan, _export_on_example_input, check_kan_input)


FAMILIES = {"resmlp": resmlp_family, "mlp": partial(plugin_family, "mlp"), "cnn": partial(plugin_family, "cnn"),
            "kan": kan_family}


def model_family(name: str) -> ModelFamily:
    """The family called `name` (ValueError naming the known ones otherwise)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]()
