"""The paper's hardware comparison, rebuilt (prints figures and ratios; not a test).

    .venv/bin/python scripts/bench_paper_comparison.py --out bench_paper [--configs unrolled folded] \
        [--models relu192 relu96 lerp96 bspline96]

Exports the CIFAR-shaped random-init 8-bit ResMLPs (`build.py export --random-init --dataset cifar10`), builds each
with each config (`build.py build`, the commands a user runs) and prints, per config, one Markdown row per model:
FPS, then psa-finn's complete estimate (LUT, DSP, BRAM18, LUT+DSP and its ratio over the first model; basis
"psa-finn model" per layer, FIFOs by finn-plus, docs/hardware_numbers.md) and finn-plus's own LUT+DSP and ratio.
Every figure is an estimate; none is a synthesis result. A build folder that holds a finished build of the same
model and config is reused (delete it to rebuild). Writes OUT/comparison.json.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {  # name: (variant, hidden factor)
    "relu192": ("relu", "2"),
    "relu96": ("relu", "1"),
    "lerp96": ("lerp_psa", "1"),
    "bspline96": ("bspline", "1"),
}
LABELS = {"relu192": "ReLU h=192", "relu96": "ReLU h=96", "lerp96": "LERP-PSA h=96", "bspline96": "B-spline h=96"}


def run(args):
    """Run `build.py ARGS` with this interpreter; stop with its output on failure."""
    done = subprocess.run([sys.executable, str(REPO / "build.py"), *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"build.py {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")


def build(out: Path, name: str, config: str) -> dict:
    """The summary of model `name` built with build_configs/CONFIG.yaml (exported and built if not yet there)."""
    model = out / f"{name}.onnx"
    if not model.exists():
        variant, factor = MODELS[name]
        run(["export", "--random-init", "--variant", variant, "--hidden-factor", factor, "--dataset", "cifar10",
             "--calibration", "random", "--out", str(model)])
    build_dir = out / f"{name}_{config}"
    summary_path = build_dir / "summary.json"
    if not summary_path.exists():
        run(["build", "--model", str(model), "--config", str(REPO / "build_configs" / f"{config}.yaml"),
             "--out", str(build_dir)])
    return json.loads(summary_path.read_text())


def rows(summaries: dict) -> list:
    """One dict per model with the figures of the table; ratios over the first model."""
    base = next(iter(summaries.values()))
    table = []
    for name, s in summaries.items():
        finn = s["finn_totals"]["luts_plus_dsp"]
        table.append({"model": name, "fps": s["fps"], "lut": s["lut"], "dsp": s["dsp"], "bram18": s["bram18"],
                      "luts_plus_dsp": s["luts_plus_dsp"], "ratio": s["luts_plus_dsp"] / base["luts_plus_dsp"],
                      "fps_ratio": s["fps"] / base["fps"], "finn_luts_plus_dsp": finn,
                      "finn_ratio": finn / base["finn_totals"]["luts_plus_dsp"],
                      "verification": s["verification"]["max_abs_diff"] if s.get("verification") else None})
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", default=["unrolled", "folded"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for config in args.configs:
        results[config] = rows({name: build(args.out, name, config) for name in args.models})
        print(f"\n{config} (estimates: complete psa-finn model; finn-plus's own beside it)\n")
        print("| model | FPS | FPS vs first | LUT | DSP | BRAM18 | LUT+DSP | vs first | finn-plus LUT+DSP | vs first "
              "| max_abs_diff |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results[config]:
            print(f"| {LABELS[r['model']]} | {r['fps']:,.0f} | {r['fps_ratio']:.3f} | {r['lut']:,} | {r['dsp']:,} | "
                  f"{r['bram18']:,} | {r['luts_plus_dsp']:,} | {r['ratio']:.3f} | {r['finn_luts_plus_dsp']:,} | "
                  f"{r['finn_ratio']:.3f} | {r['verification']} |")
    (args.out / "comparison.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
