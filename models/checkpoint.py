"""Our checkpoint format: one torch file holding the model config next to the weights, written atomically.

    {"format": "psa-finn", "config": model.config, "state_dict": model.state_dict(), **extra}

`extra` is plain data (numbers, strings, lists, dicts, tensors) such as metrics or the training arguments; the file
is read with `weights_only=True`.
"""

from pathlib import Path

import torch

from psa_finn.common.atomic_files import atomic_path
from psa_finn.common.cli_errors import BadInput
from psa_finn.models.finite_parameters import check_finite_parameters
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
    if path.is_dir():
        raise BadInput(f"{path} is a directory; pass the checkpoint file in it (e.g. {path / 'model.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable torch checkpoint (truncated download or a different kind of "
                         f"file?): {type(err).__name__}: {err}") from err


def load_checkpoint(path):
    """Read a checkpoint written by `save_checkpoint`: returns (model in eval mode, extra dict)."""
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise ValueError(f"{path}: a bare state dict, not a psa-finn checkpoint; a reference *_model.bin is "
                             f"read with models.load_reference_checkpoint")
        raise ValueError(f"{path}: not a psa-finn checkpoint (no 'format': '{CHECKPOINT_FORMAT}' entry)")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path}: psa-finn checkpoint without its '{key}' entry")
    model = build_model(payload["config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: weights do not fit the stored config {payload['config']}: {err}") from err
    check_finite_parameters(model, str(path))
    extra = {k: v for k, v in payload.items() if k not in RESERVED_KEYS}
    return model.eval(), extra
