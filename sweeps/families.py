"""Model families a sweep can train: how to build the float model of a trial, its QAT twin, and export it.

A family is what a trial needs from the model code, nothing else: `build(spec, geometry)` -> float nn.Module,
`to_qat(model, bits, calibration_batches)` -> calibrated QAT module, the QAT checkpoint writer and reader for
`models.training.Trainer`, the float checkpoint reader, and `export(qat, path)` -> QONNX file. The ResMLP study is the first family; a plugin
model built from `psa_finn.nn` layers adds its own entry here.
"""

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class ModelFamily:
    """The model-side functions one sweep trial calls."""

    name: str
    variants: tuple
    build: Callable
    to_qat: Callable
    save_qat: Callable
    load_qat: Callable
    load_float: Callable
    export: Callable


def _build_resmlp(spec, geometry):
    from psa_finn.models import ResMLP

    torch.manual_seed(spec.seed)
    return ResMLP(spec.variant, spec.hidden_factor, embed_dim=spec.embed_dim, depth=spec.depth,
                  grid_size=spec.grid_size, **geometry.model_kwargs())


def _export_resmlp(qat, path):
    from psa_finn.export import export_qonnx

    return export_qonnx(qat, qat.example_input(), path)


def resmlp_family() -> ModelFamily:
    """The paper's ResMLP (models.ResMLP, export.qat, export.qonnx_export)."""
    from psa_finn.export.qat import load_qat_checkpoint, save_qat_checkpoint, to_qat_model
    from psa_finn.models import load_checkpoint
    from psa_finn.models.resmlp import VARIANTS

    return ModelFamily("resmlp", VARIANTS, _build_resmlp, to_qat_model, save_qat_checkpoint, load_qat_checkpoint,
                       load_checkpoint, _export_resmlp)


FAMILIES = {"resmlp": resmlp_family}


def model_family(name: str) -> ModelFamily:
    """The family called `name` (ValueError naming the known ones otherwise)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]()
