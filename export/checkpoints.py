"""The one reader (and writer) of the model files every command takes: our float checkpoints (`.pt`,
`models.save_checkpoint`), QAT checkpoints (`.pt`, `export.qat.save_qat_checkpoint`) and reference state dicts
(`*_model.bin`, `models.load_reference_checkpoint`), told apart by their content.

    model, extra = load_model_file(path)        # models.ResMLP or export.quant_resmlp.QuantResMLP, in eval mode
    save_model_file(path, model, **extra)       # the writer of the model's kind, atomic

Every model read holds finite numbers only (a NaN or inf parameter is an error naming it).
"""

from pathlib import Path

from psa_finn.export.qat import is_qat_checkpoint, qat_model_from_payload, save_qat_checkpoint
from psa_finn.export.quant_resmlp import QuantResMLP
from psa_finn.models.checkpoint import is_bare_state_dict, model_from_payload, read_torch_file, save_checkpoint
from psa_finn.models.finite_parameters import check_finite_parameters
from psa_finn.models.reference_import import load_reference_checkpoint

# What a model file is named: our checkpoints, exported QONNX classifiers, the reference's state dicts.
MODEL_FILE_SUFFIXES = (".pt", ".onnx", ".bin")


def load_model_file(path):
    """(model in eval mode, extra dict) of any model file: float or QAT checkpoint, or a reference state dict.

    `extra` holds what the checkpoint stored beside the model (e.g. "dataset", "training"); empty for a reference
    state dict. FileNotFoundError / ValueError name the file and what is wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(entry.name for entry in path.iterdir() if entry.suffix in MODEL_FILE_SUFFIXES)
        hint = (f"pass the model file in it (e.g. {path / found[0]})" if found else
                f"it holds no {', '.join(MODEL_FILE_SUFFIXES)} file: pass a training run's model.pt or an exported "
                f".onnx")
        raise ValueError(f"{path} is a folder, not a checkpoint file; {hint}")
    payload = read_torch_file(path)
    if is_qat_checkpoint(payload):
        model, extra = qat_model_from_payload(payload, path)
    elif is_bare_state_dict(payload):
        model, extra = load_reference_checkpoint(path), {}
    else:
        model, extra = model_from_payload(payload, path)
    check_finite_parameters(model, str(path))
    return model, extra


def save_model_file(path, model, **extra):
    """Write `model` (float ResMLP or QuantResMLP) with `extra` to `path` atomically, in the format of its kind."""
    if isinstance(model, QuantResMLP):
        save_qat_checkpoint(path, model, **extra)
    else:
        save_checkpoint(path, model, **extra)
