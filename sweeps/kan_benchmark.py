"""KAN benchmark: the QuantKANLinear KAN against the MLP of the same widths and the scaffolded KAN, trained here and
built with finn-plus (no Vivado), printed as Markdown tables (docs/kan.md holds a run of it).

    python -m psa_finn.sweeps.kan_benchmark --out DIR [--epochs 20] [--datasets digits mnist1d moons wine]
    python -m psa_finn.sweeps.kan_benchmark --out DIR --study [--datasets digits mnist1d]   (4-bit training)
    python -m psa_finn.sweeps.kan_benchmark --out DIR --prune [--datasets digits]           (4-bit pruning)

Per dataset and bit width (4, 8): test accuracy (measured on the fixed test split, torch QAT model = the exported
QONNX model bit for bit), and per build config (build_configs/unrolled.yaml: target 32,051 FPS; folded.yaml: PE =
SIMD = 16) the finn-plus estimates of LUT, DSP, BRAM18 and FPS at 5 ns (summary.json; estimates, basis: each
layer's resource model), and the python-mode verification max_abs_diff. The scaffolded KAN (fan-out MVAU ->
per-edge functions -> sum MVAU) starts from the KAN's tables and is fine-tuned; it runs on digits and mnist1d only
(moons and wine are the small KANELE-like sizes: KAN and MLP). Not a test: nothing here is asserted.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.export import export_qonnx
from psa_finn.sweeps.kan_networks import KANNetwork, QuantMLP, ScaffoldKAN, accuracy, prune_network, \
    train_classifier

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"unrolled": "build_configs/unrolled.yaml", "folded": "build_configs/folded.yaml"}
# KANELE's design point: fully parallel, one inference per clock (unrolled.yaml with target_fps = 1 / 5 ns)
PARALLEL_FPS = 200_000_000
# moons 2-2-(1) and wine 13-4-3: the sizes of KANELE's Tran-study models (github.com/Duchstf/KANELE,
# benchmarks/Tran_study: 2 x 2 + 2 x 1 and 13 x 4 + ... edge tables); moons with 2 logits here (cross-entropy)
WIDTHS = {"digits": [64, 16, 10], "mnist1d": [40, 32, 10], "moons": [2, 2, 2], "wine": [13, 4, 3]}
SCAFFOLDED = ("digits", "mnist1d")
SMALL = ("moons", "wine")  # also built fully parallel


def load(dataset):
    """(x_train, y_train, x_test, y_test) as [N, features] float32 and int64 labels."""
    if dataset == "digits":
        from psa_finn.models.datasets import load_digits_split
        split = load_digits_split()
    elif dataset == "mnist1d":
        from psa_finn.models.datasets import load_mnist1d_split
        split = load_mnist1d_split()
    else:
        import numpy as np
        from sklearn.datasets import load_wine, make_moons
        from sklearn.model_selection import train_test_split
        x, y = make_moons(1000, noise=0.2, random_state=0) if dataset == "moons" else load_wine(return_X_y=True)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        mean, std = x_tr.mean(0), x_tr.std(0)
        split = [torch.from_numpy(((a - mean) / std).astype(np.float32)) if a.ndim == 2 else
                 torch.from_numpy(a.astype(np.int64)) for a in (x_tr, y_tr, x_te, y_te)]
    return [t.flatten(1) if t.dim() > 1 else t for t in split]


def config_path(config, work_dir) -> Path:
    """The build config file of `config` ("unrolled", "folded", or "parallel": unrolled.yaml at PARALLEL_FPS,
    written into work_dir)."""
    if config in CONFIGS:
        return ROOT / CONFIGS[config]
    text = (ROOT / CONFIGS["unrolled"]).read_text()
    if "target_fps: " not in text:
        raise ValueError(f"{CONFIGS['unrolled']} has no target_fps line to raise for the parallel build")
    lines = [f"target_fps: {PARALLEL_FPS}" if line.startswith("target_fps:") else line for line in text.splitlines()]
    path = Path(work_dir) / "parallel.yaml"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def build(model_path, config, out_dir):
    """summary.json figures of one finn-plus build (stopped after the estimate reports)."""
    env = {k: v for k, v in os.environ.items() if k != "XILINX_VIVADO"}
    result = subprocess.run([sys.executable, "build.py", "build", "--model", str(model_path), "--config",
                             str(config_path(config, Path(out_dir).parent)), "--out", str(out_dir),
                             "--stop-step", "step_generate_estimate_reports"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        return {"error": (result.stdout + result.stderr).strip().splitlines()[-1]}
    summary = json.loads((Path(out_dir) / "summary.json").read_text())
    return {key: summary[key] for key in ("lut", "dsp", "bram18", "fps", "all_nodes_on_hw")} | \
        {"max_abs_diff": summary["verification"]["max_abs_diff"]}


def models(dataset, bits, epochs, x_train, y_train):
    """(name, trained model) of the KAN, the MLP and (digits, mnist1d) the scaffolded KAN."""
    widths = WIDTHS[dataset]
    torch.manual_seed(0)
    kan = train_classifier(KANNetwork(widths, bits=bits), x_train, y_train, epochs=epochs)
    torch.manual_seed(0)
    mlp = train_classifier(QuantMLP(widths, bits=bits), x_train, y_train, epochs=epochs)
    found = [("KAN (QuantKANLinear)", kan), ("MLP", mlp)]
    if dataset in SCAFFOLDED:
        scaffold = train_classifier(ScaffoldKAN.from_kan(kan), x_train, y_train, epochs=max(1, epochs // 4),
                                    lr=0.002)
        found.append(("scaffolded KAN", scaffold))
    return found


def run(out_dir, datasets, epochs):
    """Train, export, build; return the rows (one per dataset, bits, model, config)."""
    rows = []
    for dataset in datasets:
        x_train, y_train, x_test, y_test = load(dataset)
        for bits in (4, 8):
            for name, model in models(dataset, bits, epochs, x_train, y_train):
                tag = f"{dataset}_{bits}b_{name.split()[0].lower()}"
                path = export_qonnx(model, x_test[:1], Path(out_dir) / f"{tag}.onnx")
                acc = accuracy(model, x_test, y_test)
                for config in list(CONFIGS) + (["parallel"] if dataset in SMALL else []):
                    row = {"dataset": dataset, "widths": "-".join(map(str, WIDTHS[dataset])), "bits": bits,
                           "model": name, "config": config, "accuracy": acc}
                    row.update(build(path, config, Path(out_dir) / f"{tag}_{config}"))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


STUDY = {  # name: (KANNetwork keyword arguments, grid extension (from size, at epoch) or None)
    "grid 17 (baseline)": ({}, None),
    "grid 5 -> 17 at half time (grid extension)": ({"grid_size": 5}, (17, 0.5)),
    "grid 9": ({"grid_size": 9}, None),
    "grid 33": ({"grid_size": 33}, None),
    "no SiLU base": ({"base": None}, None),
    "edge tables 6 bits": ({"edge_bit_width": 6}, None),
    "LERP-PSA edges": ({"function": "lerp_psa", "base": None}, None),
}


def training_study(datasets, epochs, bits=4):
    """Test accuracy of the KAN at `bits` bits under each training choice of STUDY (rows)."""
    rows = []
    for dataset in datasets:
        x_train, y_train, x_test, y_test = load(dataset)
        for name, (kwargs, extension) in STUDY.items():
            torch.manual_seed(0)
            kan = KANNetwork(WIDTHS[dataset], bits=bits, **kwargs)
            if extension is None:
                train_classifier(kan, x_train, y_train, epochs=epochs)
            else:
                first = int(epochs * extension[1])
                train_classifier(kan, x_train, y_train, epochs=first)
                for layer in kan.layers:
                    layer.extend_grid(extension[0])
                train_classifier(kan, x_train, y_train, epochs=epochs - first, lr=0.01, seed=1)
            row = {"dataset": dataset, "bits": bits, "training": name, "epochs": epochs,
                   "accuracy": accuracy(kan, x_test, y_test)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


PRUNE_THRESHOLDS = (0.1, 0.2, 0.3)  # of each layer's largest edge score
PRUNE_FINE_TUNE_EPOCHS = 5


def pruning_study(out_dir, datasets, epochs, bits=4):
    """The KAN at `bits` bits trained `epochs` epochs, then pruned at each of PRUNE_THRESHOLDS (edges whose mean
    |phi| is below the threshold x the layer's largest) and fine-tuned PRUNE_FINE_TUNE_EPOCHS epochs; each built
    fully parallel (the design point where a pruned edge frees its ROM and its addend). Rows."""
    rows = []
    for dataset in datasets:
        x_train, y_train, x_test, y_test = load(dataset)
        torch.manual_seed(0)
        trained = train_classifier(KANNetwork(WIDTHS[dataset], bits=bits), x_train, y_train, epochs=epochs)
        for threshold in (None,) + PRUNE_THRESHOLDS:
            kan = copy.deepcopy(trained).eval()
            row = {"dataset": dataset, "bits": bits, "epochs": epochs, "threshold": threshold,
                   "edges": sum(layer.num_edges for layer in kan.layers)}
            if threshold is None:
                row.update(kept=row["edges"], pruned_accuracy=accuracy(kan, x_test, y_test))
            else:
                row["kept"] = prune_network(kan, x_train, threshold)
                row["pruned_accuracy"] = accuracy(kan, x_test, y_test)
                train_classifier(kan, x_train, y_train, epochs=PRUNE_FINE_TUNE_EPOCHS, lr=0.005, seed=1)
            row["accuracy"] = accuracy(kan, x_test, y_test)
            tag = f"{dataset}_{bits}b_prune{threshold or 0}"
            path = export_qonnx(kan, x_test[:1], Path(out_dir) / f"{tag}.onnx")
            row.update(build(path, "parallel", Path(out_dir) / f"{tag}_parallel"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def pruning_markdown(rows) -> str:
    """The pruning study as a Markdown table."""
    lines = ["| dataset | bits | pruning (threshold x largest edge score) | edges kept (exact count) | test acc. "
             "pruned (measured) | test acc. fine-tuned (measured) | LUT (est., parallel) | BRAM18 (est.) | "
             "verification max_abs_diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = "none (trained only)" if r["threshold"] is None else f"{r['threshold']}, fine-tuned " \
            f"{PRUNE_FINE_TUNE_EPOCHS} epochs"
        figures = f"build failed: {r['error'][:60]} | |" if "error" in r else f"{r['lut']:,} | {r['bram18']}"
        lines.append(f"| {r['dataset']} | {r['bits']} | {name} | {r['kept']:,} of {r['edges']:,} | "
                     f"{100 * r['pruned_accuracy']:.2f} % | {100 * r['accuracy']:.2f} % | {figures} | "
                     f"{r.get('max_abs_diff', '')} |")
    return "\n".join(lines) + "\n"


def study_markdown(rows) -> str:
    """The training study as a Markdown table."""
    lines = ["| dataset | bits | training | epochs | test acc. (measured) |", "|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['bits']} | {r['training']} | {r['epochs']} | {100 * r['accuracy']:.2f} % |"
              for r in rows]
    return "\n".join(lines) + "\n"


def markdown(rows) -> str:
    """The rows as one Markdown table."""
    lines = ["| dataset | widths | bits | model | config | test acc. (measured) | LUT (est.) | DSP (est.) | "
             "BRAM18 (est.) | FPS (est., 5 ns) | verification max_abs_diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['widths']} | {r['bits']} | {r['model']} | {r['config']} | "
                         f"{100 * r['accuracy']:.2f} % | build failed: {r['error'][:80]} | | | | |")
            continue
        lines.append(f"| {r['dataset']} | {r['widths']} | {r['bits']} | {r['model']} | {r['config']} | "
                     f"{100 * r['accuracy']:.2f} % | {r['lut']:,} | {r['dsp']} | {r['bram18']} | {r['fps']:,.0f} | "
                     f"{r['max_abs_diff']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    """CLI: train and build everything, print and write DIR/kan_benchmark.md and .json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (models, builds, tables)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per model (default 20)")
    parser.add_argument("--datasets", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    parser.add_argument("--study", action="store_true",
                        help="instead: the 4-bit training study (grid sizes, grid extension, base, edge bits)")
    parser.add_argument("--prune", action="store_true",
                        help="instead: the 4-bit pruning study (edges pruned by L1 score, fine-tuned, built parallel)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.prune:
        table = pruning_markdown(pruning_study(args.out, args.datasets, args.epochs))
        write_text_atomic(args.out / "kan_pruning_study.md", table)
        print(table, end="")
        return 0
    if args.study:
        table = study_markdown(training_study(args.datasets, args.epochs))
        write_text_atomic(args.out / "kan_training_study.md", table)
        print(table, end="")
        return 0
    rows = run(args.out, args.datasets, args.epochs)
    table = markdown(rows)
    write_text_atomic(args.out / "kan_benchmark.md", table)
    write_text_atomic(args.out / "kan_benchmark.json", json.dumps(rows, indent=1) + "\n")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
