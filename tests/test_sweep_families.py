"""The sweep's MLP and CNN families (sweeps.plugin_networks, sweeps.families): every variant's QAT twin holds the float
weights, exports bit-exactly and lowers to a graph with the same logits, on digits and on mnist1d (the 1-D CNN as
[N, C, L, 1]); checkpoints read back; clear errors for unknown families and variants; each CNN variant builds on
hardware equal to its QONNX model; a tiny MLP sweep (lerp_psa and gelu, distilled from a ReLU MLP) on local Ray."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from psa_finn.common.cli_errors import BadInput
from psa_finn.export import export_qonnx
from psa_finn.export.onnx_eval import load_qonnx_model, run_onnx
from psa_finn.models import ResMLP, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY, load_dataset
from psa_finn.sweeps.families import model_family
from psa_finn.sweeps.plugin_networks import (ARCHITECTURES, VARIANTS, PluginNetwork, load_float_network,
                                             load_quant_network, save_network, to_quant_network)
from psa_finn.sweeps.space import load_space, parse_space
from psa_finn.transforms.cli import lower_model_file
from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS, LEFT_TO_FINN

WIDTH, DEPTH = 8, 2
CASES = [(architecture, variant, "digits") for architecture in ARCHITECTURES for variant in VARIANTS]
CASES += [("mlp", "gelu", "mnist1d"), ("cnn", "lerp_psa", "mnist1d"), ("cnn", "relu", "mnist1d")]
EXPORTED_INPUT = {("mlp", "digits"): [1, 64], ("cnn", "digits"): [1, 1, 8, 8], ("mlp", "mnist1d"): [1, 40],
                  ("cnn", "mnist1d"): [1, 1, 40, 1]}


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name) for name in ("digits", "mnist1d")}


def networks(architecture, variant, data, bits=4, seed=0):
    """(float network, calibrated QAT twin) of `architecture`/`variant` for `data`, seeded random weights."""
    geometry = DATASET_GEOMETRY[data.name]
    torch.manual_seed(seed)
    network = PluginNetwork(architecture, variant, 1.0, WIDTH, DEPTH, geometry.input_shape,
                            geometry.num_classes).eval()
    return network, to_quant_network(network, bits, data.calibration_batches(64, 2))


@pytest.mark.parametrize("architecture, variant, dataset", CASES)
def test_every_variant_exports_bit_exactly_and_lowers_to_the_same_logits(datasets, tmp_path, architecture, variant,
                                                                         dataset):
    data = datasets[dataset]
    _, quant = networks(architecture, variant, data)
    path = export_qonnx(quant, quant.example_input(), tmp_path / "model.onnx", tolerance=0.0)
    exported = load_qonnx_model(path)
    assert exported.get_tensor_shape(exported.graph.input[0].name) == EXPORTED_INPUT[architecture, dataset]
    x = data.x_test[:64]
    with torch.no_grad():
        expected = quant(x).numpy()
    assert np.array_equal(run_onnx(path, x), expected)
    for mode in ("auto", "full"):
        lowered, report = lower_model_file(path, mode)
        forms = [entry.form for entry in report]
        if variant == "relu":
            assert forms == [LEFT_TO_FINN] * DEPTH
        else:
            assert len(forms) == DEPTH and not set(forms) & set(KEPT_FORMS), forms
            assert not lowered.get_nodes_by_op_type("LerpPSA")
        lowered.save(str(tmp_path / f"{mode}.onnx"))
        assert np.array_equal(run_onnx(tmp_path / f"{mode}.onnx", x), expected), mode


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_qat_twin_starts_from_the_float_weights(datasets, architecture, variant):
    data = datasets["digits"]
    network, quant = networks(architecture, variant, data, bits=8)
    x = data.x_test[:200]
    with torch.no_grad():
        reference, quantized = network(x), quant(x)
    assert float((quantized - reference).abs().max() / reference.abs().max()) < 0.25
    assert float((quantized.argmax(1) == reference.argmax(1)).float().mean()) >= 0.9


def test_checkpoints_of_both_forms_read_back_the_same_network(datasets, tmp_path):
    data = datasets["digits"]
    network, quant = networks("cnn", "bspline", data)
    save_network(tmp_path / "float.pt", network, dataset="digits")
    save_network(tmp_path / "qat.pt", quant)
    x = data.x_test[:32]
    loaded, extra = load_float_network(tmp_path / "float.pt")
    assert extra == {"dataset": "digits"} and loaded.config == network.config
    loaded_quant, _ = load_quant_network(tmp_path / "qat.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), network(x)) and torch.equal(loaded_quant(x), quant(x))
    with pytest.raises(ValueError, match=r"float.pt: holds the float form of the network, not the QAT one"):
        load_quant_network(tmp_path / "float.pt")
    save_checkpoint(tmp_path / "resmlp.pt", ResMLP("relu", 1.0, img_size=8, patch_size=2, in_channels=1,
                                                   embed_dim=8, depth=1))
    with pytest.raises(ValueError, match=r"resmlp.pt: not a checkpoint of a sweep's MLP/CNN"):
        load_float_network(tmp_path / "resmlp.pt")


def test_bspline_networks_give_the_trainer_their_tv2_regulariser(datasets):
    network, quant = networks("mlp", "bspline", datasets["digits"])
    # each of the 2 x 8 channels starts as leaky ReLU (slope 0.01): one kink, second difference 0.99 T, divided by T
    assert network.tv2().item() == pytest.approx(DEPTH * WIDTH * 0.99) and quant.tv2().item() == network.tv2().item()
    assert networks("mlp", "relu", datasets["digits"])[0].tv2().item() == 0.0


def test_unknown_families_variants_and_sizes_are_clear_errors():
    with pytest.raises(ValueError, match=r"mlp: unknown variant 'tanh'; choose one of \['relu', 'lerp_psa', "
                                         r"'bspline', 'gelu', 'silu'\]"):
        PluginNetwork("mlp", "tanh", 1.0, 8, 1, (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"unknown architecture 'rnn'; choose one of \['mlp', 'cnn'\]"):
        PluginNetwork("rnn", "relu", 1.0, 8, 1, (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"unknown model family 'rnn'; known: \['cnn', 'kan', 'mlp', 'resmlp'\]"):
        model_family("rnn")
    space = {"dataset": "digits", "model": {"family": "mlp"}, "axes": {"variant": ["gelu"], "hidden_factor": [1]}}
    assert [spec.variant for _, spec in parse_space(space, "s.yaml").grid_points()] == ["gelu"]
    with pytest.raises(BadInput, match=r"s.yaml: model.family: must be one of \['resmlp', 'mlp', 'cnn', 'kan'\], "
                                       r"got 'rnn'"):
        parse_space({**space, "model": {"family": "rnn"}}, "s.yaml")
    with pytest.raises(BadInput, match=r"s.yaml: axes.variant: must be one of \['relu', 'lerp_psa', 'bspline', "
                                       r"'gelu', 'silu'\], got 'tanh'"):
        parse_space({**space, "axes": {"variant": ["tanh"], "hidden_factor": [1]}}, "s.yaml")
    with pytest.raises(BadInput, match=r"s.yaml: model.depth: cnn: depth 4 halves the input \[1, 8, 8\] 4 times, "
                                       r"so its sizes must be multiples of 16; use a smaller depth \(dataset digits\)"):
        parse_space({**space, "model": {"family": "cnn", "depth": 4}}, "s.yaml")


SPACES = Path(__file__).resolve().parents[1] / "sweeps" / "spaces"


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "mnist1d_cnn"])
def test_shipped_family_spaces_hold_the_trials_their_header_says(name):
    path = SPACES / f"{name}.yaml"
    stated = int(re.search(r"(\d+) trials:", path.read_text()).group(1))
    space = load_space(path)
    assert space.family == name.split("_")[1] and len(space.grid_points()) == stated <= 16


@pytest.mark.slow
@pytest.mark.parametrize("variant, dataset", [(variant, "digits") for variant in VARIANTS] + [("lerp_psa", "mnist1d")])
def test_every_cnn_variant_builds_on_hardware_and_computes_its_qonnx_model(datasets, tmp_path, variant, dataset):
    from test_build_networks import ROOT, _build, _check_on_hardware_and_exact

    _, quant = networks("cnn", variant, datasets[dataset])
    path = export_qonnx(quant, quant.example_input(), tmp_path / "cnn.onnx")
    summary = _build(path, ROOT / "build_configs" / "unrolled.yaml", tmp_path / "build")
    _check_on_hardware_and_exact(summary)
    assert {"ConvolutionInputGenerator", "MVAU", "Pool"} <= {layer["op_type"].rsplit("_", 1)[0]
                                                             for layer in summary["layers"]}
    report = json.loads((tmp_path / "build" / "report" / "lowering_report.json").read_text())
    if variant != "relu":
        assert len(report["nodes"]) == DEPTH


TINY_MLP_SPACE = """\
dataset: digits
model: {family: mlp, embed_dim: 8, depth: 1}
training: {epochs: 1, batch_size: 256, qat_epochs: 1}
teacher: {hidden_factor: 2.0, epochs: 1}
axes:
  variant: [lerp_psa, gelu]
  hidden_factor: [0.5]
resources: {cpus_per_trial: 1}
"""


@pytest.mark.slow
def test_tiny_mlp_sweep_runs_every_variant_on_local_ray(tmp_path):
    from test_sweep_ray import run_sweep, trial_records

    (tmp_path / "mlp.yaml").write_text(TINY_MLP_SPACE)
    done = run_sweep(tmp_path / "mlp.yaml", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    records = trial_records(tmp_path / "out")
    assert sorted(r["spec"]["variant"] for r in records.values()) == ["gelu", "lerp_psa"]
    for record in records.values():
        metrics = record["metrics"]
        assert record["status"] == "ok" and record["spec"]["family"] == "mlp" and metrics["hidden_dim"] == 4
        assert metrics["accuracy_lowered"] == pytest.approx(metrics["accuracy_qat"], abs=1e-3)
        assert metrics["all_nodes_on_hw"] and metrics["fps"] > 0 and metrics["lut"] > 0
        assert sum(count for form, count in record["lowering_forms"].items() if form not in KEPT_FORMS) == 1
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["trials"]) == 2
