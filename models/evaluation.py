"""Test-set accuracy and loss of a ResMLP, of any checkpoint file, and of a reference output tree as the README table.

`evaluate` runs one pass over the test split in eval mode (any model file is read by
`export.checkpoints.load_model_file`).
`evaluate_reference_tree` walks a folder laid out like the reference `output/cifar10/resmlp_layers_4_h_4_embed_96/`
(`baseline/`, `bspline_65_1e-5/`, `lerp_psa_64/`, each with `h_{mul_2,mul_1,div_2,div_4}_model.bin`) and
`format_accuracy_table` prints the result in the layout of the reference README.
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from psa_finn.models.datasets import DATASET_GEOMETRY

# Rows and columns of the reference README accuracy table, with the folder / file stem each comes from.
TABLE_ROWS = (("Baseline (ReLU)", "baseline"), ("B-Spline (64, λ=1e-5)", "bspline_65_1e-5"),
              ("LERP-PSA (64)", "lerp_psa_64"))
TABLE_COLUMNS = (("h = 2.0 (192)", "h_mul_2"), ("h = 1.0 (96)", "h_mul_1"), ("h = 0.5 (48)", "h_div_2"),
                 ("h = 0.25 (24)", "h_div_4"))
MODEL_FILE_SUFFIXES = (".bin", ".pt")


@torch.no_grad()
def evaluate(model, data, batch_size: int = 256, device="cpu") -> dict:
    """{'accuracy': % correct, 'loss': mean cross-entropy per sample, 'samples': N} over `data`'s test split.

    Leaves the model in the mode it was in.
    """
    was_training = model.training
    model.eval()
    correct, loss_sum, seen = 0, 0.0, 0
    for x, y in data.test_batches(batch_size):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=-1) == y).sum())
        seen += len(y)
    model.train(was_training)
    return {"accuracy": 100.0 * correct / seen, "loss": loss_sum / seen, "samples": seen}


def dataset_of_config(config: dict) -> str:
    """The first dataset whose geometry matches a model config (cifar10 for 32x32x3 patch 4: SVHN looks alike)."""
    for name, geometry in DATASET_GEOMETRY.items():
        if all(config.get(k) == v for k, v in geometry.model_kwargs().items()):
            return name
    raise ValueError(f"no dataset has the input geometry of this model ({config}); pass --dataset")


def find_reference_models(root) -> dict:
    """{(row stem, column stem): path} for every `<row>/<column>_model.{bin,pt}` present below `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; --all expects a tree like "
                                f"output/cifar10/resmlp_layers_4_h_4_embed_96/ with baseline/, lerp_psa_64/, ...")
    found = {}
    for _, row in TABLE_ROWS:
        for _, column in TABLE_COLUMNS:
            for suffix in MODEL_FILE_SUFFIXES:
                candidate = root / row / f"{column}_model{suffix}"
                if candidate.is_file():
                    found[(row, column)] = candidate
                    break
    if not found:
        raise FileNotFoundError(f"no <variant>/<h>_model.bin below {root} (variants "
                                f"{[r for _, r in TABLE_ROWS]}, h {[c for _, c in TABLE_COLUMNS]})")
    return found


def format_accuracy_table(accuracies: dict) -> str:
    """Markdown table of {(row stem, column stem): accuracy %} in the reference README layout; '—' where missing."""
    lines = ["| activation | " + " | ".join(title for title, _ in TABLE_COLUMNS) + " |",
             "|---|" + "---|" * len(TABLE_COLUMNS)]
    for title, row in TABLE_ROWS:
        cells = [f"{accuracies[(row, column)]:.1f}" if (row, column) in accuracies else "—"
                 for _, column in TABLE_COLUMNS]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
