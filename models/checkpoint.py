"""Our checkpoint format: one torch file holding the model config next to the weights, written atomically.

    {"format": "psa-finn", "config": model.config, "state_dict": model.state_dict(), **extra}

`extra` is plain data (numbers, strings, lists, dicts, tensors) such as metrics or the training arguments; the file
is read with `weights_only=True`.
"""

from pathlib import Path

import torch

from psa_finn.common.atomic_files import atomic_path
from psa_finn.models.resmlp import ResMLP, build_model

CHECKPOINT_FORMAT = "psa-finn"
RESERVED_KEYS = ("format", "config", "state_dict")


def save_checkpoint(path, model: ResMLP, **extra):
    """Write `model` (config + state dict) and `extra` to `path` atomically (temp file in the same folder + rename)."""
    clash = [key for key in RESERVED_KEYS if key in extra]
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {clash} are reserved for the checkpoint itself")
    payload = {"format": CHECKPOINT_FORMAT, "config": dict(model.config), "state_dict": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_torch_file(path):
    """`torch.load(path, weights_only=True)` on CPU, with errors that name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's own text advises weights_only=False: unsafe on an unknown file, never ours
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: a truncated download or "
                         f"another kind of file); pass a .pt written by `build.py train` or a reference "
                         f"*_model.bin") from err


def is_bare_state_dict(payload) -> bool:
    """Whether a loaded torch file is a bare state dict (a reference checkpoint), not one of our checkpoints."""
    return isinstance(payload, dict) and bool(payload) and all(isinstance(v, torch.Tensor) for v in payload.values())


def model_from_payload(payload, source="checkpoint"):
    """(float ResMLP in eval mode, extra dict) of a loaded `save_checkpoint` dict; errors name `source`."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if is_bare_state_dict(payload):
            raise ValueError(f"{source}: a bare state dict, not a psa-finn checkpoint; a reference *_model.bin is "
                             f"read with models.load_reference_checkpoint")
        raise ValueError(f"{source}: not a psa-finn checkpoint (no 'format': '{CHECKPOINT_FORMAT}' entry)")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{source}: psa-finn checkpoint without its '{key}' entry")
    try:
        model = build_model(payload["config"])
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"{source}: its config {payload['config']!r:.160} does not build a model "
                         f"({' '.join(str(err).split())[:120]}); the file is damaged or was not written by "
                         f"psa-finn") from err
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{source}: weights do not fit the stored config {payload['config']}: {err}") from err
    extra = {k: v for k, v in payload.items() if k not in RESERVED_KEYS}
    return model.eval(), extra


def load_checkpoint(path):
    """Read a checkpoint written by `save_checkpoint`: returns (model in eval mode, extra dict). Any kind of model
    file (float, QAT, reference) is read by `psa_finn.export.checkpoints.load_model_file`."""
    return model_from_payload(read_torch_file(path), path)
