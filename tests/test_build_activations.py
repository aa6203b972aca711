"""Modern activations on FINN, end to end, each network trained a few epochs on digits and built with unrolled.yaml
and folded.yaml:

- a ResMLP with GELU (the activation of the original ResMLP paper), trained, QAT-tuned and exported with the CLI
  (`train --variant gelu`, `train --qat`, `export`);
- a small CNN with SiLU written with the public API only (torch, brevitas.nn, psa_finn.export.export_qonnx): trained
  in float, then QAT from the float weights with the SiLU between two Brevitas quantizers.

Every node ends on the hardware, the GELU / SiLU becomes a PerChannelLUT layer, the hardware model computes the
lowered QONNX model bit for bit (`verification.max_abs_diff` 0), and the lowered model the build verified
(step_lower_quantized_functions.onnx) predicts what the 8-bit torch model predicts on every digits test image.
finn-plus's own default steps, run on the same exported files, fail (`pytest -s` prints why). `pytest -s` prints what
the README quotes (accuracies, FPS, LUT, DSP, BRAM18, build seconds, stock finn-plus's unmapped nodes).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.graph.calibrate import calibration_mode
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from psa_finn.build_configs.verify import DEFAULT_SAMPLES
from psa_finn.export import export_qonnx
from psa_finn.export.checkpoints import load_model_file
from psa_finn.export.onnx_eval import run_onnx
from psa_finn.models.datasets import load_digits_split
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant
from psa_finn.transforms.conv_bias_quant_shape import ConvBiasQuantScalarsAsVectors

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("unrolled", "folded")
ESTIMATES = ("--stop-step", "step_generate_estimate_reports")
# finn-plus's default step list (no `steps:`), nothing of psa-finn's: what a user of stock finn-plus runs.
STOCK_CONFIG = """synth_clk_period_ns: 5.0
fpga_part: xcu50-fsvh2104-2-e
target_fps: 32051
save_intermediate_models: true
generate_outputs:
  - estimate_reports
"""
EXACT = dict(weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "XILINX_VIVADO")}
    return subprocess.run([sys.executable, "build.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)


def _ok(result):
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def accuracy(logits, labels) -> float:
    """% of `labels` that the argmax of `logits` hits."""
    return 100.0 * float((torch.as_tensor(logits).argmax(1) == labels).double().mean())


class SiLUCNN(nn.Module):
    """[N, 1, 8, 8] -> Conv3x3(8) -> SiLU -> MaxPool2 -> Conv3x3(16) -> SiLU -> Linear(10), in float or with every
    SiLU between two 8-bit Brevitas quantizers (`quantized`); the module names match, so the float weights load
    into the quantized network."""

    def __init__(self, quantized: bool):
        super().__init__()

        def silu():
            if not quantized:
                return nn.SiLU()
            return nn.Sequential(QuantIdentity(act_quant=SignedActQuant), nn.SiLU(),
                                 QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True))

        conv, linear = (QuantConv2d, QuantLinear) if quantized else (nn.Conv2d, nn.Linear)
        options = EXACT if quantized else {}
        self.input_quant = QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True) if quantized \
            else nn.Identity()
        self.conv1 = conv(1, 8, 3, padding=1, **options)
        self.act1 = silu()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = conv(8, 16, 3, **options)
        self.act2 = silu()
        self.fc = linear(16 * 2 * 2, 10, **options)

    def forward(self, x):
        x = self.pool(self.act1(self.conv1(self.input_quant(x))))
        return self.fc(self.act2(self.conv2(x)).flatten(1))


def train(model, x, y, epochs, lr, seed=0):
    """Adam on shuffled batches of 64, as a user would; returns the model in eval mode."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def silu_cnn(path, digits):
    """Train the SiLU CNN (float, then 8-bit QAT from its weights), export it to `path`; (accuracies, 8-bit test
    logits)."""
    x_train, y_train, x_test, y_test = digits
    torch.manual_seed(0)
    float_model = train(SiLUCNN(quantized=False), x_train, y_train, epochs=6, lr=0.01)
    model = SiLUCNN(quantized=True)
    model.load_state_dict(float_model.state_dict(), strict=False)
    model.eval()
    with torch.no_grad(), calibration_mode(model):
        model(x_train[:256])
    train(model, x_train, y_train, epochs=2, lr=0.001)
    export_qonnx(model, x_test[:1], path)
    with torch.no_grad():
        logits = model(x_test)
        return {"float": accuracy(float_model(x_test), y_test), "8-bit": accuracy(logits, y_test)}, logits


def gelu_resmlp(path, tmp_path):
    """Train a GELU ResMLP (embed 16, depth 1) and its 8-bit QAT form with the CLI, export it to `path`;
    (accuracies, 8-bit test logits)."""
    x_test, y_test = load_digits_split()[2:]
    common = ("--dataset", "digits", "--no-progress")
    _ok(_cli("train", "--variant", "gelu", "--embed-dim", "16", "--depth", "1", "--hidden-factor", "2",
             "--epochs", "20", "--lr", "0.01", "--out", str(tmp_path / "float"), *common))
    _ok(_cli("train", "--qat", "--init", str(tmp_path / "float" / "model.pt"), "--epochs", "2",
             "--out", str(tmp_path / "qat"), *common))
    _ok(_cli("export", "--checkpoint", str(tmp_path / "qat" / "model.pt"), "--out", str(path)))
    float_model, qat_model = (load_model_file(tmp_path / kind / "model.pt")[0].eval() for kind in ("float", "qat"))
    with torch.no_grad():
        logits = qat_model(x_test)
        return {"float": accuracy(float_model(x_test), y_test), "8-bit": accuracy(logits, y_test)}, logits


NETWORKS = {"gelu_resmlp": ("Gelu", 2), "silu_cnn": ("Sigmoid", 0)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """network -> (exported QONNX path, accuracies, 8-bit torch logits on the digits test images)."""
    root = tmp_path_factory.mktemp("activations")
    digits = load_digits_split()
    return {"gelu_resmlp": (root / "gelu_resmlp.onnx", *gelu_resmlp(root / "gelu_resmlp.onnx", root)),
            "silu_cnn": (root / "silu_cnn.onnx", *silu_cnn(root / "silu_cnn.onnx", digits))}


def _build(model, config, out):
    started = time.time()
    result = _cli("build", "--model", str(model), "--config", str(config), "--out", str(out), *ESTIMATES)
    seconds = time.time() - started
    return result, seconds


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_trained_activation_network_builds_on_hardware_bit_exactly(trained, tmp_path, network, config):
    path, accuracies, logits = trained[network]
    result, seconds = _build(path, ROOT / "build_configs" / f"{config}.yaml", tmp_path / "build")
    _ok(result)
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    assert summary["all_nodes_on_hw"] and summary["off_hw_nodes"] == []
    assert all(node.endswith(("(Mul)", "(Add)", "(Transpose)")) for node in summary["host_nodes"])
    assert summary["verification"]["max_abs_diff"] == 0.0 and summary["verification"]["samples"] == DEFAULT_SAMPLES
    report = json.loads((tmp_path / "build" / "report" / "lowering_report.json").read_text())
    activation, residual_joins = NETWORKS[network]
    lowered = [node for node in report["nodes"] if activation in node["ops"]]
    assert lowered and all(node["form"] == "PerChannelLUT full" and not node["monotone"] for node in lowered)
    layers = [layer["op_type"] for layer in summary["layers"]]
    assert sum(op.startswith("PerChannelLUT") for op in layers) == len(lowered)
    assert sum(op.startswith("ElementwiseAdd") for op in layers) == residual_joins
    x_test, y_test = load_digits_split()[2:]
    lowered_model = tmp_path / "build" / "intermediate_models" / "step_lower_quantized_functions.onnx"
    lowered_logits = run_onnx(lowered_model, x_test)
    np.testing.assert_array_equal(lowered_logits.argmax(1), logits.argmax(1).numpy())
    accuracies = dict(accuracies, lowered=accuracy(lowered_logits, y_test))
    scores = ", ".join(f"{kind} {value:.2f}" for kind, value in accuracies.items())
    print(f"\n{network} {config}: accuracy {scores}, {summary['fps']:.0f} FPS, LUT {summary['lut']}, "
          f"DSP {summary['dsp']}, BRAM18 {summary['bram18']}, {summary['build_time_s']} s build "
          f"({seconds:.1f} s wall with the CLI start), lowered: "
          f"{[(node['node'], node['form'], node['channels']) for node in lowered]}")


def _stock_input(trained, network, tmp_path):
    """The exported file; for "silu_cnn_bias_shapes" the CNN with only qonnx's Conv-bias reshape failure worked around
    (ConvBiasQuantScalarsAsVectors), so that stock finn-plus reaches the SiLU."""
    if network != "silu_cnn_bias_shapes":
        return trained[network][0]
    path = tmp_path / "silu_cnn_bias_shapes.onnx"
    ModelWrapper(str(trained["silu_cnn"][0])).transform(ConvBiasQuantScalarsAsVectors()).save(str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("network", sorted(NETWORKS) + ["silu_cnn_bias_shapes"])
def test_stock_finn_plus_does_not_build_them(trained, tmp_path, network):
    (tmp_path / "stock.yaml").write_text(STOCK_CONFIG)
    result, seconds = _build(_stock_input(trained, network, tmp_path), tmp_path / "stock.yaml", tmp_path / "build")
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2), output[-4000:]
    log = (tmp_path / "build" / "build_dataflow.log").read_text()
    errors = [line.strip() for line in log.splitlines() if re.search(r"ERROR|Error:", line)]
    print(f"\n{network} stock finn-plus ({seconds:.1f} s): {output.strip().splitlines()[-1]} | {errors[-3:]}")
