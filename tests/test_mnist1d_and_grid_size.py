"""mnist1d as a built-in 1-D dataset (generated offline, signals cut into tokens) and the LERP grid size as a model
parameter that the QAT form, the exported LerpPSA op and the lowering carry through bit-exactly."""

import random

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from psa_finn.build import main
from psa_finn.export.onnx_eval import run_onnx
from psa_finn.export.qat import empty_qat_model, to_qat_model
from psa_finn.export.qonnx_export import export_qonnx
from psa_finn.models import ResMLP, build_model, patchify
from psa_finn.models.datasets import DATASET_GEOMETRY, load_dataset, load_mnist1d_split
from psa_finn.transforms.lower_and_report import lower_model_file

MNIST1D = DATASET_GEOMETRY["mnist1d"]


@pytest.fixture(scope="module")
def splits():
    return load_mnist1d_split()


def test_mnist1d_is_generated_offline_deterministic_and_leaves_global_rngs_alone(splits, monkeypatch):
    import mnist1d.data

    def no_download(*args, **kwargs):
        raise AssertionError("the mnist1d download path was called")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_download)
    monkeypatch.setattr(mnist1d.data.requests, "get", no_download)
    np.random.seed(7)
    random.seed(7)
    x_tr, y_tr, x_te, y_te = load_mnist1d_split()
    assert np.random.randint(1 << 30) == np.random.RandomState(7).randint(1 << 30)
    assert random.random() == random.Random(7).random()
    assert (x_tr.shape, x_te.shape, x_tr.dtype, y_tr.dtype) == ((4000, 1, 40), (1000, 1, 40), torch.float32,
                                                                torch.int64)
    assert sorted(y_te.unique().tolist()) == list(range(10))
    assert all(torch.equal(a, b) for a, b in zip((x_tr, y_tr, x_te, y_te), splits))


def test_signal_patches_are_consecutive_runs_with_channels_fastest():
    signals = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)   # [B, Cin, L]
    tokens = patchify(signals, 5)
    assert tokens.shape == (2, 2, 15)
    # token 1 of sample 0: positions 5..9, each (channel 0, 1, 2)
    assert tokens[0, 1].tolist() == [float(c * 10 + p) for p in range(5, 10) for c in range(3)]
    with pytest.raises(ValueError, match="signal length 10 is not a multiple of patch_size 4"):
        patchify(signals, 4)


def test_mnist1d_resmlp_reads_signals_and_patches(splits):
    model = ResMLP("relu", 1.0, embed_dim=8, depth=1, **MNIST1D.model_kwargs()).eval()
    assert (model.num_tokens, model.patch_dim, MNIST1D.input_shape) == (8, 5, (1, 40))
    x = splits[0][:3]
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(patchify(x, 5)), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"signals \[B, 1, 40\] or patches \[B, 8, 5\]"):
        model(torch.zeros(3, 1, 8, 8))


def test_grid_size_is_part_of_the_config_and_the_checkpoint_shapes():
    model = ResMLP("lerp_psa", 0.5, embed_dim=8, depth=1, grid_size=16, **MNIST1D.model_kwargs())
    assert model.config["grid_size"] == 16
    assert all(m.table().shape[1] == 16 for _, m in model.learnable_functions())
    assert build_model(model.config).state_dict()["layers.0.layers.1.layers.0.psa.grid"].shape == (16, 8)
    assert ResMLP("bspline", 1.0, embed_dim=8, depth=1, **MNIST1D.model_kwargs()).config["grid_size"] == 65
    assert ResMLP("relu", 1.0, embed_dim=8, depth=1, grid_size=16, **MNIST1D.model_kwargs()).config["grid_size"] \
        is None
    with torch.no_grad():
        assert empty_qat_model(model.config, 4).lut_banks()[0][1].table().shape == (8, 16)
    with pytest.raises(ValueError, match="grid_size must be odd"):
        ResMLP("bspline", 1.0, embed_dim=8, depth=1, grid_size=16, **MNIST1D.model_kwargs())


def test_grid_size_32_mnist1d_model_exports_and_lowers_bit_exactly(splits, tmp_path):
    torch.manual_seed(3)
    model = ResMLP("lerp_psa", 1.0, embed_dim=8, depth=1, grid_size=32, **MNIST1D.model_kwargs()).eval()
    x = splits[0][:64]
    qat = to_qat_model(model, 6, [x[:32], x[32:]])
    exported = ModelWrapper(str(export_qonnx(qat, qat.example_input(), tmp_path / "model.onnx")))
    tables = [exported.get_initializer(n.input[1]) for n in exported.graph.node if n.op_type == "LerpPSA"]
    assert [t.shape for t in tables] == [(8, 32), (8, 32)]
    with torch.no_grad():
        expected = qat(x[:16]).numpy()
    onnx_logits = run_onnx(tmp_path / "model.onnx", x[:16])
    np.testing.assert_allclose(onnx_logits, expected, rtol=0, atol=1e-5)
    for mode in ("auto", "full"):
        lowered, report = lower_model_file(tmp_path / "model.onnx", mode)
        assert len(report) == 2 and not any(n.op_type == "LerpPSA" for n in lowered.graph.node)
        np.testing.assert_array_equal(run_onnx(lowered, x[:16]), onnx_logits)


@pytest.mark.slow
def test_cli_trains_and_evaluates_on_mnist1d(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist1d", "--variant", "lerp_psa", "--grid-size", "16", "--embed-dim", "8",
                 "--depth", "1", "--epochs", "1", "--batch-size", "256", "--no-progress", "--out", str(out)]) == 0
    assert main(["eval", "--checkpoint", str(out / "model.pt")]) == 0
    printed = capsys.readouterr().out
    assert "on mnist1d test (1000 samples)" in printed
    data = load_dataset("mnist1d")
    assert data.geometry.spatial_dims == 1 and data.num_train_batches(256) == 15


@pytest.mark.slow
def test_accuracy_bench_runs_on_mnist1d(tmp_path):
    from psa_finn.models.bench_accuracy import AccuracyBenchConfig, run_accuracy_bench

    config = AccuracyBenchConfig(seeds=1, epochs=1, teacher_epochs=0, embed_dim=8, depth=1, batch_size=256,
                                 hidden_factors={"relu": (1.0,), "lerp_psa": (0.5,)}, dataset="mnist1d")
    report = run_accuracy_bench(config, json_path=tmp_path / "acc.json")
    assert report["dataset"] == "mnist1d" and report["config"]["dataset"] == "mnist1d"
    assert report["results"]["lerp_psa"]["0.5"]["hidden_dim"] == 4
    assert [(c["relu_hidden_factor"], c["lerp_psa_hidden_factor"]) for c in
            report["claim_lerp_psa_half_width_vs_relu"]] == [(1.0, 0.5)]


def test_accuracy_bench_takes_only_built_in_datasets(capsys):
    from psa_finn.models.bench_accuracy import AccuracyBenchConfig, run_accuracy_bench

    assert main(["bench", "accuracy", "--dataset", "cifar10"]) == 2
    assert "argument --dataset: invalid choice: 'cifar10'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runs on a built-in dataset"):
        run_accuracy_bench(AccuracyBenchConfig(dataset="svhn"))
