"""Datasets without torchvision (CIFAR-10 pickles, SVHN .mat), the torch augmentation, and evaluation of
reference-format checkpoints (single file and the README table over an output tree)."""

import pickle

import numpy as np
import pytest
import torch

import build
from psa_finn.models import ResMLP
from psa_finn.models.augmentation import (RANDAUGMENT_OPS, augment_batch, rand_augment, random_crop,
                                 random_horizontal_flip)
from psa_finn.models.datasets import (CHANNEL_MEAN_STD, CIFAR10_FOLDER, DATASET_GEOMETRY, DatasetNotFoundError,
                             load_dataset)
from psa_finn.models.evaluation import evaluate, format_accuracy_table

CIFAR = DATASET_GEOMETRY["cifar10"].model_kwargs()


def write_fake_cifar(root, per_batch=6, seed=0):
    """CIFAR-10's python layout with `per_batch` random images per batch file; returns the test images/labels."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    return data.reshape(-1, 3, 32, 32), labels


def test_cifar10_pickles_are_read_and_normalised(tmp_path):
    images, labels = write_fake_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert tuple(data.x_train.shape) == (30, 3, 32, 32) and data.x_train.dtype == torch.uint8
    x, y = next(data.test_batches(4))
    mean, std = CHANNEL_MEAN_STD["cifar10"]
    expected = (images[:4, 1].astype(np.float32) / 255.0 - mean[1]) / std[1]
    np.testing.assert_allclose(x[:, 1].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert y.tolist() == labels[:4]
    batches = list(data.train_batches(8, torch.Generator().manual_seed(0)))
    assert len(batches) == 3 and all(tuple(b.shape) == (8, 3, 32, 32) for b, _ in batches)  # last 6 dropped
    # the whole test split at once equals its batches in order (what QONNX models are scored on)
    x_all, y_all = data.test_tensors()
    batched = list(data.test_batches(7))
    assert torch.equal(x_all, torch.cat([b for b, _ in batched]))
    assert torch.equal(y_all, torch.cat([t for _, t in batched]))


def test_svhn_mat_files_are_read_with_label_10_as_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    for name, n in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        savemat(tmp_path / name, {"X": x, "y": np.array([[10], [1], [2], [10], [9]][:n], dtype=np.uint8)})
    data = load_dataset("svhn", tmp_path)
    assert data.y_test.tolist() == [0, 1, 2]
    assert tuple(data.x_train.shape) == (5, 3, 32, 32)
    from scipy.io import loadmat

    x_mat = loadmat(tmp_path / "train_32x32.mat")["X"]
    assert torch.equal(data.x_train[0], torch.from_numpy(x_mat[..., 0].transpose(2, 0, 1).copy()))


@pytest.mark.parametrize("name, missing", [("cifar10", "data_batch_1"), ("svhn", "train_32x32.mat")])
def test_missing_dataset_says_how_to_get_it(tmp_path, name, missing):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, tmp_path / "nowhere")
    message = str(err.value)
    assert missing in message and "--download" in message and "--data-dir" in message


def test_cli_reports_missing_data(tmp_path, capsys):
    code = build.main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                       "--epochs", "1", "--no-progress"])
    assert code == 2
    assert "--download" in capsys.readouterr().err


def test_random_crop_and_flip_move_pixels_as_stated():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    cropped = random_crop(x, 1, generator)
    generator.set_state(state)
    dy, dx = torch.randint(0, 3, (2,), generator=generator), torch.randint(0, 3, (2,), generator=generator)
    for b in range(2):
        padded = torch.nn.functional.pad(x[b, 0], (1, 1, 1, 1))
        assert torch.equal(cropped[b, 0], padded[dy[b]:dy[b] + 4, dx[b]:dx[b] + 4])
    flipped = random_horizontal_flip(x.repeat(16, 1, 1, 1), torch.Generator().manual_seed(1))
    mirrored = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flipped)]
    kept = [torch.equal(f, x[i % 2]) for i, f in enumerate(flipped)]
    assert all(m != k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_augmentation_is_reproducible_and_stays_in_range():
    x = torch.rand(40, 3, 32, 32)
    a = augment_batch(x, torch.Generator().manual_seed(7))
    b = augment_batch(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(8)))
    for op in RANDAUGMENT_OPS:
        out = op(x[:4], torch.tensor([1.0, -1.0, 1.0, -1.0]))
        assert out.shape == x[:4].shape and out.min() >= 0.0 and out.max() <= 1.0, op.__name__
    assert rand_augment(x, torch.Generator().manual_seed(0), num_ops=0) is x


def test_equalize_follows_pil_rule():
    from psa_finn.models.augmentation import _equalize

    # 512 pixels at level 10, 512 at 20: step = (1024 - 512) // 255 = 2, lut[10] = (0 + 1) // 2 = 0,
    # lut[20] = (512 + 1) // 2 = 256 -> 255
    x = torch.full((1, 1, 32, 32), 10 / 255.0)
    x[..., 16:, :] = 20 / 255.0
    out = (_equalize(x, None) * 255).round()
    assert torch.equal(out[..., :16, :], torch.zeros(1, 1, 16, 32))
    assert torch.equal(out[..., 16:, :], torch.full((1, 1, 16, 32), 255.0))
    # fewer than 256 pixels outside the top level: step 0, the image is left alone
    small = torch.zeros(1, 1, 4, 4)
    small[..., 2:, :] = 101 / 255.0
    assert torch.equal(_equalize(small, None), small)


def test_eval_of_a_reference_state_dict(tmp_path, capsys):
    write_fake_cifar(tmp_path / "data", per_batch=10)
    torch.manual_seed(0)
    model = ResMLP("lerp_psa", 0.25, **CIFAR).eval()
    torch.save(model.state_dict(), tmp_path / "h_div_4_model.bin")
    direct = evaluate(model, load_dataset("cifar10", tmp_path / "data"))
    assert build.main(["eval", "--checkpoint", str(tmp_path / "h_div_4_model.bin"), "--data-dir",
                       str(tmp_path / "data"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"accuracy {direct['accuracy']:.2f}%" in out and f"loss {direct['loss']:.4f}" in out
    assert "cifar10 test (10 samples)" in out


def test_eval_all_prints_the_readme_table(tmp_path, capsys):
    write_fake_cifar(tmp_path / "data", per_batch=10)
    tree = tmp_path / "output" / "cifar10" / "resmlp_layers_4_h_4_embed_96"
    accuracies = {}
    for row, column, variant, factor in (("baseline", "h_mul_2", "relu", 2.0),
                                         ("lerp_psa_64", "h_div_2", "lerp_psa", 0.5)):
        torch.manual_seed(1)
        model = ResMLP(variant, factor, **CIFAR).eval()
        (tree / row).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), tree / row / f"{column}_model.bin")
        accuracies[(row, column)] = evaluate(model, load_dataset("cifar10", tmp_path / "data"))["accuracy"]
    assert build.main(["eval", "--all", str(tree), "--data-dir", str(tmp_path / "data"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    table = format_accuracy_table(accuracies)
    assert table in out
    lines = table.splitlines()
    assert lines[0] == "| activation | h = 2.0 (192) | h = 1.0 (96) | h = 0.5 (48) | h = 0.25 (24) |"
    assert lines[2].startswith(f"| Baseline (ReLU) | {accuracies[('baseline', 'h_mul_2')]:.1f} | — |")
    assert lines[3] == "| B-Spline (64, λ=1e-5) | — | — | — | — |"
    assert lines[4].endswith(f"| {accuracies[('lerp_psa_64', 'h_div_2')]:.1f} | — |")


def test_eval_all_on_an_empty_folder_says_what_it_expects(tmp_path, capsys):
    assert build.main(["eval", "--all", str(tmp_path)]) == 2
    assert "h_mul_2" in capsys.readouterr().err


def _cifar_archive(path):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            payload = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})
            info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    path.write_bytes(buffer.getvalue())
    import hashlib

    return hashlib.md5(buffer.getvalue()).hexdigest()


def test_download_checks_md5_and_unpacks(tmp_path, monkeypatch):
    import psa_finn.models.datasets as datasets

    md5 = _cifar_archive(tmp_path / "served.tar.gz")
    url = (tmp_path / "served.tar.gz").as_uri()
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", (datasets.DownloadFile(url, md5, "cifar.tar.gz"),))
    data = load_dataset("cifar10", tmp_path / "data", download=True)
    assert tuple(data.x_train.shape) == (10, 3, 32, 32) and data.y_test.tolist() == [1, 2]
    monkeypatch.setitem(datasets.DOWNLOADS, "cifar10", (datasets.DownloadFile(url, "0" * 32, "cifar.tar.gz"),))
    with pytest.raises(OSError, match="md5 mismatch"):
        load_dataset("cifar10", tmp_path / "other", download=True)
    assert list((tmp_path / "other").iterdir()) == []  # no partial file left behind
