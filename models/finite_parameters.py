"""The one check that a model holds only finite numbers (used by the checkpoint reader and the export)."""

import torch


def check_finite_parameters(model: torch.nn.Module, what: str):
    """ValueError naming the first parameter or buffer of `model` holding NaN or inf (`what` names the model)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{what}: '{name}' has {bad} non-finite value(s) (NaN or inf); retrain or restore "
                             f"the checkpoint from an earlier finite one")
