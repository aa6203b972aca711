"""The digits KAN 64-16-10 at 4 bits from QuantKANLinear against the same KAN scaffolded from FINN's existing layers
(fan-out MVAU -> per-edge functions -> sum MVAU), both built in this run with build_configs/unrolled.yaml: the KAN
layer is on the hardware, verified exactly, at <= 0.25 x the scaffold's LUT + DSP, <= its BRAM18, >= its FPS (all
finn-plus estimates, the same kind for both: summary.json of each build). The scaffold is built from FINN's layers
only: without psa-finn's requantizer steps (IntegerRequant, identity requantizers bypassed), which bring it down to
2,131 LUT + DSP, 0.29 x of which the KAN layer is (measured on this test's models)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from psa_finn.export import export_qonnx
from psa_finn.models.datasets import load_digits_split
from psa_finn.sweeps.kan_networks import KANNetwork, ScaffoldKAN, accuracy, train_classifier

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "build_configs/unrolled.yaml"
REQUANTIZER_STEPS = ("step_convert_requantizers_to_hw", "step_remove_identity_requantizers")


def _stock_thresholds_config(path):
    """unrolled.yaml without psa-finn's requantizer steps: every requantizer stays a FINN Thresholding layer."""
    lines = (ROOT / CONFIG).read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not any(step in line for step in REQUANTIZER_STEPS)))
    return path


def _build(model, out, config=CONFIG):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "XILINX_VIVADO")}
    result = subprocess.run([sys.executable, "build.py", "build", "--model", str(model), "--config", str(config),
                             "--out", str(out), "--stop-step", "step_generate_estimate_reports"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_digits_kan_layer_beats_the_scaffolded_kan(tmp_path):
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = (t.flatten(1) if t.dim() > 1 else t for t in load_digits_split())
    kan = train_classifier(KANNetwork([64, 16, 10], bits=4), x_train, y_train, epochs=10)
    assert accuracy(kan, x_test, y_test) >= 0.90
    scaffold = ScaffoldKAN.from_kan(kan)
    scaffold.train()
    with torch.no_grad():
        scaffold(x_train)  # the scaffold's quantizers calibrate on the training set
    export_qonnx(kan, x_test[:1], tmp_path / "kan.onnx")
    export_qonnx(scaffold, x_test[:1], tmp_path / "scaffold.onnx")
    ours = _build(tmp_path / "kan.onnx", tmp_path / "kan")
    theirs = _build(tmp_path / "scaffold.onnx", tmp_path / "scaffold",
                    _stock_thresholds_config(tmp_path / "stock_thresholds.yaml"))
    for summary in (ours, theirs):
        assert summary["all_nodes_on_hw"] and summary["verification"]["max_abs_diff"] == 0
    assert [layer["op_type"].rsplit("_", 1)[0] for layer in ours["layers"]].count("KANLinear") == 2
    assert ours["luts_plus_dsp"] <= 0.25 * theirs["luts_plus_dsp"]
    assert ours["bram18"] <= theirs["bram18"]
    assert ours["fps"] >= theirs["fps"]
