"""Training loop: losses, knowledge transfer, exact resume, checkpoints, and the train/eval command line."""

import math

import pytest
import torch
import torch.nn.functional as F

import build
from psa_finn.models import ResMLP, load_checkpoint, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY, ImageSplits, load_digits_split
from psa_finn.models.evaluation import evaluate
from psa_finn.models.training import TrainSettings, Trainer, distillation_loss, set_kt_trainable

DIGITS = DATASET_GEOMETRY["digits"].model_kwargs()


@pytest.fixture(scope="module")
def small_digits():
    """A 256/64-sample slice of the digits split: enough to learn something in a few tiny epochs."""
    x_tr, y_tr, x_te, y_te = load_digits_split()
    return ImageSplits("digits", x_tr[:256], y_tr[:256], x_te[:64], y_te[:64])


def tiny(variant, seed=0, depth=1, hidden_factor=1.0):
    torch.manual_seed(seed)
    return ResMLP(variant, hidden_factor, embed_dim=8, depth=depth, **DIGITS)


def test_distillation_loss_hand_computed():
    # uniform teacher, zero student logits: soft CE = log 10 and CE = log 10, for any alpha
    student, teacher = torch.zeros(2, 10), torch.full((2, 10), 3.0)
    labels = torch.tensor([1, 7])
    assert distillation_loss(student, teacher, labels, 0.8, 1.0).item() == pytest.approx(math.log(10), rel=1e-6)
    # alpha 1: only the soft term; one-hot-ish teacher -> -log q_s[target]; T^2 scaling at T = 2
    teacher = torch.tensor([[0.0, 100.0]])
    student = torch.tensor([[2.0, 0.0]])
    expected = -math.log(math.exp(0.0) / (math.exp(1.0) + math.exp(0.0))) * 4.0  # student/T = [1, 0]
    assert distillation_loss(student, teacher, torch.tensor([0]), 1.0, 2.0).item() == pytest.approx(expected,
                                                                                                   rel=1e-6)
    # alpha 0: plain cross-entropy
    assert distillation_loss(student, teacher, torch.tensor([1]), 0.0, 1.0).item() == pytest.approx(
        F.cross_entropy(student, torch.tensor([1])).item(), rel=1e-6)


@pytest.mark.parametrize("variant", ["relu", "lerp_psa", "bspline"])
def test_loss_falls_on_tiny_problem(small_digits, variant, tmp_path):
    settings = TrainSettings(epochs=6, batch_size=32, lr=1e-2, seed=1)
    history = Trainer(tiny(variant), small_digits, settings, tmp_path, progress=False).run()
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > 25.0  # chance is 10 %
    model, extra = load_checkpoint(tmp_path / "model.pt")
    assert extra["training"]["epoch"] == 6
    assert evaluate(model, small_digits)["accuracy"] == pytest.approx(history[-1]["test_accuracy"])


def test_bspline_coefficients_have_their_own_adam(small_digits, tmp_path):
    trainer = Trainer(tiny("bspline"), small_digits, TrainSettings(epochs=1), tmp_path, progress=False)
    splines = {id(p) for n, p in trainer.model.named_parameters() if n.endswith("_coefficients_vect")}
    assert len(splines) == 2
    main = {id(p) for g in trainer.optimizers["main"].param_groups for p in g["params"]}
    spline = {id(p) for g in trainer.optimizers["main_spline"].param_groups for p in g["params"]}
    assert spline == splines and not main & splines
    assert isinstance(trainer.optimizers["main_spline"], torch.optim.Adam)
    assert isinstance(trainer.optimizers["main"], torch.optim.AdamW)


def _interrupt_after(trainer, epochs_done):
    original = trainer.run_epoch

    def run_epoch(epoch):
        if epoch == epochs_done:
            raise KeyboardInterrupt
        return original(epoch)

    trainer.run_epoch = run_epoch


@pytest.mark.parametrize("variant, kt_epochs, kd", [("bspline", 0, False), ("lerp_psa", 1, True)])
def test_resume_reproduces_uninterrupted_run(small_digits, tmp_path, variant, kt_epochs, kd):
    teacher = tiny("relu", seed=5, depth=2, hidden_factor=2.0).eval()
    settings = TrainSettings(epochs=2, batch_size=64, kt_epochs=kt_epochs, kd=kd, seed=3)
    straight = Trainer(tiny(variant, depth=2), small_digits, settings, tmp_path / "a", teacher=teacher,
                       progress=False)
    straight.run()

    interrupted = Trainer(tiny(variant, depth=2), small_digits, settings, tmp_path / "b", teacher=teacher,
                          progress=False)
    stop = straight.total_epochs - 1
    _interrupt_after(interrupted, stop)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    resumed = Trainer(tiny(variant, seed=99, depth=2), small_digits, settings, tmp_path / "b", teacher=teacher,
                      progress=False)
    resumed.run(resume=True)
    assert [e["epoch"] for e in resumed.history] == list(range(1, straight.total_epochs + 1))
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in straight.history]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in resumed.history]


def test_resume_refuses_other_settings(small_digits, tmp_path):
    Trainer(tiny("relu"), small_digits, TrainSettings(epochs=1, batch_size=64), tmp_path, progress=False).run()
    other = Trainer(tiny("relu"), small_digits, TrainSettings(epochs=1, batch_size=32), tmp_path, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        other.run(resume=True)


def _changed(before, model, prefix):
    return {n for n, p in model.named_parameters() if n.startswith(prefix) and not torch.equal(before[n], p)}


def test_knowledge_transfer_trains_only_the_current_block(small_digits, tmp_path):
    teacher = tiny("relu", seed=5, depth=2, hidden_factor=2.0).eval()
    student = tiny("lerp_psa", depth=2, hidden_factor=0.5)
    trainer = Trainer(student, small_digits, TrainSettings(epochs=1, batch_size=64, kt_epochs=1), tmp_path,
                      teacher=teacher, progress=False)
    assert [trainer.stage_of(e) for e in range(3)] == [("kt", 0), ("kt", 1), ("ce", None)]
    start = {n: p.detach().clone() for n, p in student.named_parameters()}
    trainer.run_epoch(0)
    assert torch.equal(student.embed_linear.weight, teacher.embed_linear.weight)
    assert _changed(start, student, "layers.0.") == {n for n in start if n.startswith("layers.0.")}
    assert not _changed(start, student, "layers.1.")
    assert not _changed(start, student, "classifier.") and not _changed(start, student, "affine.")

    after_block0 = {n: p.detach().clone() for n, p in student.named_parameters()}
    trainer.run_epoch(1)
    assert not _changed(after_block0, student, "layers.0.") and not _changed(after_block0, student, "embed_linear.")
    assert _changed(after_block0, student, "layers.1.")
    assert not _changed(after_block0, student, "classifier.")


def test_set_kt_trainable_freezes_embedding_and_earlier_blocks():
    model = tiny("relu", depth=3)
    set_kt_trainable(model, 1)
    assert not any(p.requires_grad for p in model.embed_linear.parameters())
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert all(p.requires_grad for p in model.layers[1:].parameters())


def test_knowledge_transfer_needs_a_fitting_teacher(small_digits, tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        Trainer(tiny("relu"), small_digits, TrainSettings(kd=True), tmp_path)
    narrow = ResMLP("relu", 1.0, embed_dim=4, depth=1, **DIGITS)
    with pytest.raises(ValueError, match="embed_dim"):
        Trainer(tiny("relu"), small_digits, TrainSettings(kt_epochs=1), tmp_path, teacher=narrow)


def test_cli_train_resume_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--variant", "relu", "--hidden-factor", "0.5", "--embed-dim", "8", "--depth", "1",
            "--epochs", "1", "--batch-size", "256", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert build.main(args) == 0
    _, extra = load_checkpoint(out / "model.pt")
    assert extra["dataset"] == "digits" and extra["training"]["epoch"] == 1
    assert build.main(args + ["--resume"]) == 0  # nothing left to do: the checkpoint stays as it is
    assert load_checkpoint(out / "model.pt")[1]["training"]["history"] == extra["training"]["history"]
    capsys.readouterr()
    assert build.main(["eval", "--checkpoint", str(out / "model.pt"), "--device", "cpu"]) == 0
    accuracy = extra["training"]["history"][-1]["test_accuracy"]
    assert f"accuracy {accuracy:.2f}%" in capsys.readouterr().out


def test_cli_train_from_init_checkpoint(tmp_path):
    init = tiny("bspline")
    save_checkpoint(tmp_path / "init.pt", init, dataset="digits")
    assert build.main(["train", "--init", str(tmp_path / "init.pt"), "--epochs", "1", "--batch-size", "512",
                       "--out", str(tmp_path / "ft"), "--no-progress", "--device", "cpu"]) == 0
    model, _ = load_checkpoint(tmp_path / "ft" / "model.pt")
    assert model.config == init.config


@pytest.mark.slow
def test_cli_qat_fine_tunes_resumes_and_evaluates(tmp_path, capsys):
    from psa_finn.export.qat import load_qat_checkpoint

    save_checkpoint(tmp_path / "float.pt", tiny("lerp_psa"), dataset="digits")
    args = ["train", "--qat", "--bits", "6", "--init", str(tmp_path / "float.pt"), "--epochs", "2", "--lr", "1e-4",
            "--batch-size", "512", "--out", str(tmp_path / "qat"), "--no-progress", "--device", "cpu"]
    assert build.main(args) == 0
    qat, extra = load_qat_checkpoint(tmp_path / "qat" / "model.pt")
    assert qat.bits == 6 and extra["training"]["epoch"] == 2 and extra["init"] == str(tmp_path / "float.pt")
    capsys.readouterr()
    assert build.main(["eval", "--checkpoint", str(tmp_path / "qat" / "model.pt"), "--device", "cpu"]) == 0
    accuracy = extra["training"]["history"][-1]["test_accuracy"]
    assert f"accuracy {accuracy:.2f}%" in capsys.readouterr().out


def test_cli_qat_needs_an_init_checkpoint(tmp_path, capsys):
    assert build.main(["train", "--qat", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--qat fine-tunes a trained float model: pass it with --init CHECKPOINT" in capsys.readouterr().err
