"""`build.py export`: random-init and checkpoint exports, and the clear errors of issue 4 item 6."""

import torch

import build
from psa_finn.export.onnx_eval import load_qonnx_model
from psa_finn.export.qat import save_qat_checkpoint, to_qat_model
from psa_finn.models import ResMLP, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY

SMALL = ["--embed-dim", "16", "--depth", "1", "--calibration-batches", "2", "--batch-size", "32"]


def digits_model(variant, hidden_factor=0.5):
    torch.manual_seed(0)
    return ResMLP(variant, hidden_factor, embed_dim=16, depth=1, **DATASET_GEOMETRY["digits"].model_kwargs()).eval()


def quant_bits(model):
    """{bit width} of the activation and weight Quant nodes (the 32-bit biases on the accumulator grid apart)."""
    return {int(model.get_initializer(n.input[3])) for n in model.graph.node if n.op_type == "Quant"} - {32}


def export(*args):
    return build.main(["export", *args])


def test_random_init_export_writes_a_qonnx_file(tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    assert export("--variant", "bspline", "--hidden-factor", "0.5", "--dataset", "digits", "--random-init",
                  "--bits", "5", "--out", str(out), *SMALL) == 0
    model = load_qonnx_model(out)
    assert model.get_tensor_shape("global_in") == [1, 16, 4]
    assert sum(n.op_type == "LerpPSA" for n in model.graph.node) == 2
    assert quant_bits(model) == {5}
    assert "5-bit" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # no temp file left behind


def test_float_and_qat_checkpoints_export(tmp_path):
    save_checkpoint(tmp_path / "float.pt", digits_model("relu"), dataset="digits")
    assert export("--checkpoint", str(tmp_path / "float.pt"), "--out", str(tmp_path / "f.onnx"), *SMALL) == 0
    assert load_qonnx_model(tmp_path / "f.onnx").get_tensor_shape("global_out") == [1, 10]
    qat = to_qat_model(digits_model("lerp_psa"), 6, [torch.randn(32, 1, 8, 8)])
    save_qat_checkpoint(tmp_path / "qat.pt", qat, dataset="digits")
    assert export("--checkpoint", str(tmp_path / "qat.pt"), "--out", str(tmp_path / "q.onnx")) == 0
    model = load_qonnx_model(tmp_path / "q.onnx")
    assert quant_bits(model) == {6}


def error_of(capsys, *args):
    assert export(*args) == 2
    return capsys.readouterr().err


def test_bits_outside_2_to_8(tmp_path, capsys):
    message = error_of(capsys, "--variant", "relu", "--hidden-factor", "1", "--dataset", "digits", "--random-init",
                       "--bits", "9", "--out", str(tmp_path / "m.onnx"))
    assert "bits must be from 2 to 8" in message and "--bits 8" in message
    assert not (tmp_path / "m.onnx").exists()


def test_random_init_names_the_missing_flags(tmp_path, capsys):
    message = error_of(capsys, "--variant", "relu", "--random-init", "--out", str(tmp_path / "m.onnx"))
    assert "--random-init needs --hidden-factor, --dataset" in message


def test_checkpoint_of_another_variant_or_shape(tmp_path, capsys):
    save_checkpoint(tmp_path / "relu.pt", digits_model("relu"), dataset="digits")
    message = error_of(capsys, "--checkpoint", str(tmp_path / "relu.pt"), "--variant", "lerp_psa",
                       "--hidden-factor", "2", "--out", str(tmp_path / "m.onnx"))
    assert "variant 'relu' (not --variant lerp_psa)" in message
    assert "hidden factor 0.5 (not --hidden-factor 2.0)" in message
    message = error_of(capsys, "--checkpoint", str(tmp_path / "relu.pt"), "--dataset", "cifar10",
                       "--out", str(tmp_path / "m.onnx"))
    assert "not that of --dataset cifar10" in message
    payload = torch.load(tmp_path / "relu.pt", weights_only=True)
    payload["state_dict"]["classifier.weight"] = torch.zeros(10, 17)
    torch.save(payload, tmp_path / "bad_shape.pt")
    assert "do not fit" in error_of(capsys, "--checkpoint", str(tmp_path / "bad_shape.pt"),
                                    "--out", str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


def test_qat_checkpoint_keeps_its_bits(tmp_path, capsys):
    qat = to_qat_model(digits_model("relu"), 4, [torch.randn(32, 1, 8, 8)])
    save_qat_checkpoint(tmp_path / "qat.pt", qat, dataset="digits")
    message = error_of(capsys, "--checkpoint", str(tmp_path / "qat.pt"), "--bits", "8",
                       "--out", str(tmp_path / "m.onnx"))
    assert "trained at 4 bits; omit --bits or pass --bits 4" in message


def test_non_finite_parameters_are_named(tmp_path, capsys):
    model = digits_model("bspline")
    with torch.no_grad():
        model.layers[0].layers[1].layers[0]._coefficients_vect[7] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", model, dataset="digits")
    message = error_of(capsys, "--checkpoint", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "m.onnx"), *SMALL)
    assert "layers.0.layers.1.layers.0._coefficients_vect" in message and "non-finite" in message
    assert not (tmp_path / "m.onnx").exists()


def test_missing_or_foreign_checkpoint(tmp_path, capsys):
    assert "none.pt: no such file" in error_of(capsys, "--checkpoint", str(tmp_path / "none.pt"),
                                            "--out", str(tmp_path / "m.onnx"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert "not a readable torch checkpoint" in error_of(capsys, "--checkpoint", str(tmp_path / "junk.pt"),
                                                         "--out", str(tmp_path / "m.onnx"))


def test_cifar10_checkpoint_without_its_data_calibrates_on_random_images_when_asked(tmp_path, capsys):
    torch.manual_seed(0)
    model = ResMLP("lerp_psa", 0.25, embed_dim=16, depth=1, **DATASET_GEOMETRY["cifar10"].model_kwargs())
    save_checkpoint(tmp_path / "c.pt", model, dataset="cifar10")
    args = ["--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "c.onnx"), "--data-dir",
            str(tmp_path / "no_data"), "--calibration-batches", "1", "--batch-size", "8"]
    message = error_of(capsys, *args)
    assert "cifar" in message.lower() and not (tmp_path / "c.onnx").exists()
    assert export(*args, "--calibration", "random") == 0
    assert load_qonnx_model(tmp_path / "c.onnx").get_tensor_shape("global_in") == [1, 64, 48]
