"""The one check that a model holds no NaN or inf: every loaded checkpoint passes it, so a diverged model is named at
load time (exit 2) instead of failing deep inside a forward pass."""

import torch


def check_finite_parameters(model: torch.nn.Module, what: str):
    """ValueError naming the first parameter or buffer of `model` holding NaN or inf."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{what}: '{name}' has {bad} non-finite value(s) (NaN or inf); retrain or restore "
                             f"the checkpoint from an earlier finite one")
