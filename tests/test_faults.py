"""Faults and bad input against every subcommand (issue 15): each case asserts the exit code of
`psa_finn.common.cli_errors`, ONE error line on stderr that names the file/node/flag, and that the outputs which
existed before are intact (byte for byte).

Full disk and read-only targets use a small tmpfs, which needs root (skipped otherwise, with the reason); kill -9
and SIGTERM run `build.py` in a child process. Everything else runs in-process through `build.main`.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import build
from psa_finn.models import ResMLP, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY

ROOT = Path(__file__).resolve().parents[1]
DIGITS = DATASET_GEOMETRY["digits"].model_kwargs()
TINY = ["--embed-dim", "16", "--depth", "1", "--batch-size", "256", "--no-progress", "--device", "cpu"]
UNROLLED = str(ROOT / "build_configs" / "unrolled.yaml")
ESTIMATES = ["--stop-step", "step_generate_estimate_reports"]
ERROR_LINE = re.compile(r"^(psa-finn|build\.py) (\S+): error: (.+)$")


# ------------------------------------------------------------------------------------------------ helpers

def run_cli(capsys, *args):
    """`build.main(args)` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = build.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str, command: str) -> str:
    """The one error line of a failed command (asserts that there is exactly one line, and no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{err[-3000:]}"
    match = ERROR_LINE.match(lines[0])
    assert match and match.group(2) == command, lines[0]
    return match.group(3)


def expect_error(capsys, code, command, *args, names=()):
    """Run a failing command; assert its exit code and that its one error line holds every string of `names`."""
    status, out, err = run_cli(capsys, command, *args)
    assert status == code, f"exit {status}, expected {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    message = error_line(err, command)
    for name in names:
        assert str(name) in message, f"{name!r} not in: {message}"
    return message


def snapshot(path: Path) -> dict:
    """{relative path: bytes} of every file under `path` (or of the file itself)."""
    path = Path(path)
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list:
    """Temporary files or folders that a write left behind in `folder` (dot-prefixed names)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def fake_build(path: Path) -> Path:
    """A finished build directory as `build.py build` leaves it (the files that matter for replacing it)."""
    (path / "report").mkdir(parents=True)
    (path / "build_dataflow.log").write_text("finished build\n")
    (path / "summary.json").write_text('{"fps": 1000.0, "marker": "previous build"}\n')
    (path / "report" / "estimate_network_performance.json").write_text('{"max_cycles": 10}\n')
    return path


def tiny_model(variant, seed=0):
    torch.manual_seed(seed)
    return ResMLP(variant, 1.0, embed_dim=16, depth=1, **DIGITS).eval()


def root_only():
    return pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (full disk, read-only) needs root")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m"):
    """A tmpfs of `size` mounted at `path` for the block (unmounted afterwards)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(path: Path, leave_kb: int):
    """Fill the file system of `path` until about `leave_kb` KiB are free."""
    stats = os.statvfs(path)
    free = stats.f_bavail * stats.f_frsize
    (path / "filler").write_bytes(b"\0" * max(0, free - leave_kb * 1024))


def remount_read_only(path: Path):
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny inputs of every kind: float checkpoints, a finished training run, a QAT checkpoint, QONNX models."""
    from psa_finn.export.qat import save_qat_checkpoint, to_qat_model
    from psa_finn.export.qonnx_export import export_qonnx

    base = tmp_path_factory.mktemp("fault_inputs")
    found = {}
    for variant in ("relu", "lerp_psa"):
        found[f"{variant}.pt"] = base / f"{variant}.pt"
        save_checkpoint(found[f"{variant}.pt"], tiny_model(variant), dataset="digits")
    qat = to_qat_model(tiny_model("relu"), 8, [torch.randn(32, 1, 8, 8)])
    found["qat.pt"] = base / "qat.pt"
    save_qat_checkpoint(found["qat.pt"], qat, dataset="digits")
    found["lerp.onnx"] = base / "lerp.onnx"
    lerp_qat = to_qat_model(tiny_model("lerp_psa"), 8, [torch.randn(32, 1, 8, 8)])
    export_qonnx(lerp_qat, lerp_qat.example_input(0), found["lerp.onnx"])
    assert build.main(["train", "--variant", "relu", "--epochs", "1", "--out", str(base / "run"), *TINY]) == 0
    found["run"] = base / "run"
    return found


def edited_onnx(source: Path, target: Path, edit) -> Path:
    """A copy of a QONNX file with `edit(model)` applied (qonnx ModelWrapper), saved without any check."""
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(str(source))
    edit(model)
    model.save(str(target))
    return target


def set_quant_bits(bits):
    def edit(model):
        for node in model.graph.node:
            if node.op_type == "Quant":
                model.set_initializer(node.input[3], np.array(bits, dtype=np.float32))
    return edit


def first_lerp_psa(model):
    return next(node for node in model.graph.node if node.op_type == "LerpPSA")


def nan_table(model):
    node = first_lerp_psa(model)
    table = model.get_initializer(node.input[1]).copy()
    table[0, 3] = np.nan
    model.set_initializer(node.input[1], table)


def batch_of_8(model):
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8


def short_table(model):
    node = first_lerp_psa(model)
    model.set_initializer(node.input[1], model.get_initializer(node.input[1])[:-1])


# ------------------------------------------------------------------------------------------------ build

@pytest.fixture
def previous_build(tmp_path):
    """A finished build directory (to be kept intact by every failing build) and its snapshot."""
    out = fake_build(tmp_path / "build")
    return out, snapshot(out)


def config_with(tmp_path, old, new, name="typo.yaml"):
    text = Path(UNROLLED).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


CONFIG_ERRORS = {
    "unknown key": (lambda tmp: config_with(tmp, "target_fps:", "target_fsp:"), ["typo.yaml", "target_fsp",
                                                                                 "target_fps"]),
    "invalid yaml": (lambda tmp: config_with(tmp, "target_fps: 32051", "target_fps: [32051"), ["typo.yaml"]),
    "scalar yaml": (lambda tmp: (tmp / "scalar.yaml").write_text("unrolled\n") and tmp / "scalar.yaml",
                    ["scalar.yaml"]),
    "wrong type": (lambda tmp: config_with(tmp, "target_fps: 32051", "target_fps: abc"), ["typo.yaml",
                                                                                          "target_fps"]),
    "unknown part": (lambda tmp: config_with(tmp, "fpga_part: xcu50-fsvh2104-2-e",
                                             "fpga_part: xcnonexistent-part-1-e"),
                     ["typo.yaml", "xcnonexistent-part-1-e"]),
    "package typo": (lambda tmp: config_with(tmp, "fpga_part: xcu50-fsvh2104-2-e", "fpga_part: xcu50-fsvh2014-2-e"),
                     ["typo.yaml", "fsvh2014", "xcu50-fsvh2104"]),
    "unknown step": (lambda tmp: config_with(tmp, "  - step_tidy_up\n", "  - step_tidy_upp\n"),
                     ["typo.yaml", "step_tidy_upp"]),
    "missing config": (lambda tmp: tmp / "none.yaml", ["none.yaml"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_build_config_error_keeps_the_previous_build(tmp_path, capsys, files, previous_build, case):
    make_config, names = CONFIG_ERRORS[case]
    out, before = previous_build
    expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", make_config(tmp_path),
                 "--out", out, names=names)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_build_unknown_stop_step_lists_the_valid_ones(capsys, files, previous_build):
    out, before = previous_build
    message = expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out,
                           "--stop-step", "step_bogus", names=["--stop-step", "step_bogus",
                                                               "step_generate_estimate_reports"])
    assert "step_tidy_up" in message
    assert snapshot(out) == before


MODEL_ERRORS = {
    "torch file": (lambda tmp, f: f["relu.pt"], 2, ["relu.pt"]),
    "truncated": (lambda tmp, f: (tmp / "cut.onnx").write_bytes(f["lerp.onnx"].read_bytes()[:3000])
                  and tmp / "cut.onnx", 2, ["cut.onnx"]),
    "nan table": (lambda tmp, f: edited_onnx(f["lerp.onnx"], tmp / "nan.onnx", nan_table), 2,
                  ["nan.onnx", "LerpPSA"]),
    "1-bit": (lambda tmp, f: edited_onnx(f["lerp.onnx"], tmp / "b1.onnx", set_quant_bits(1)), 2,
              ["b1.onnx", "1 bit"]),
    "16-bit": (lambda tmp, f: edited_onnx(f["lerp.onnx"], tmp / "b16.onnx", set_quant_bits(16)), 2,
               ["b16.onnx", "16 bit"]),
    "table shape": (lambda tmp, f: edited_onnx(f["lerp.onnx"], tmp / "short.onnx", short_table), 2,
                    ["short.onnx", "LerpPSA"]),
    "batch 8": (lambda tmp, f: edited_onnx(f["lerp.onnx"], tmp / "b8.onnx", batch_of_8), 2,
                ["b8.onnx", "batch 1", "[1, ...]"]),
    "missing": (lambda tmp, f: tmp / "none.onnx", 2, ["none.onnx"]),
    "directory": (lambda tmp, f: tmp, 2, [" is a directory"]),
}


@pytest.mark.parametrize("case", sorted(MODEL_ERRORS))
def test_build_bad_model_keeps_the_previous_build(tmp_path, capsys, files, previous_build, case):
    make_model, code, names = MODEL_ERRORS[case]
    out, before = previous_build
    expect_error(capsys, code, "build", "--model", make_model(tmp_path, files), "--config", UNROLLED, "--out", out,
                 *ESTIMATES, names=names)
    assert snapshot(out) == before


@pytest.mark.parametrize("case", ["table shape", "nan table", "truncated", "torch file", "16-bit"])
def test_lower_bad_model_keeps_the_previous_output(tmp_path, capsys, files, case):
    make_model, code, names = MODEL_ERRORS[case]
    out = tmp_path / "low" / "lowered.onnx"
    out.parent.mkdir()
    out.write_bytes(b"previous model")
    out.with_suffix(".json").write_text("previous report")
    expect_error(capsys, code, "lower", "--model", make_model(tmp_path, files), "--out", out, names=names)
    assert snapshot(out.parent) == {"lowered.onnx": b"previous model", "lowered.json": b"previous report"}


def test_build_out_is_a_file_or_foreign_folder(tmp_path, capsys, files):
    (tmp_path / "file").write_text("mine")
    expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                 tmp_path / "file", *ESTIMATES, names=["--out", "file"])
    assert (tmp_path / "file").read_text() == "mine"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    expect_error(capsys, 2, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                 tmp_path / "docs", *ESTIMATES, names=["--out", "docs"])
    assert snapshot(tmp_path / "docs") == {"notes.txt": b"mine"}


def test_build_out_under_proc_is_an_environment_error(capsys, files):
    expect_error(capsys, 3, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                 "/proc/psa_finn_build", *ESTIMATES, names=["/proc/psa_finn_build"])


@root_only()
def test_build_read_only_out_fails_before_building(tmp_path, capsys, files):
    with small_tmpfs(tmp_path / "mnt") as mnt:
        fake_build(mnt / "build")
        before = snapshot(mnt / "build")
        remount_read_only(mnt)
        expect_error(capsys, 3, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                     mnt / "build", *ESTIMATES, names=["build", "read-only"])
        assert snapshot(mnt / "build") == before


# ------------------------------------------------------------------------------------------------ lower

def test_lower_writes_model_and_report_together_or_not_at_all(tmp_path, capsys, files):
    out = tmp_path / "lowered.onnx"
    out.write_bytes(b"previous model")
    out.with_suffix(".json").mkdir()  # the report cannot be written where a folder is
    expect_error(capsys, 2, "lower", "--model", files["lerp.onnx"], "--out", out, names=["lowered.json"])
    assert out.read_bytes() == b"previous model"
    out.with_suffix(".json").rmdir()
    status, _, _ = run_cli(capsys, "lower", "--model", files["lerp.onnx"], "--out", out)
    assert status == 0 and out.with_suffix(".json").is_file() and out.read_bytes() != b"previous model"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command, source", [("lower", ("--model", "lerp.onnx")),
                                             ("export", ("--checkpoint", "relu.pt"))])
def test_file_output_that_is_a_folder_or_unwritable(tmp_path, capsys, files, command, source):
    flag, name = source
    (tmp_path / "dir.onnx").mkdir()
    expect_error(capsys, 2, command, flag, files[name], "--out", tmp_path / "dir.onnx", names=["dir.onnx"])
    expect_error(capsys, 3, command, flag, files[name], "--out", "/proc/psa_finn/m.onnx", names=["/proc/psa_finn"])


@root_only()
def test_lower_on_a_full_disk_keeps_the_previous_pair(tmp_path, capsys, files):
    with small_tmpfs(tmp_path / "mnt") as mnt:
        out = mnt / "lowered.onnx"
        out.write_bytes(b"previous model")
        out.with_suffix(".json").write_text("previous report")
        fill_disk(mnt, leave_kb=4)
        expect_error(capsys, 3, "lower", "--model", files["lerp.onnx"], "--out", out, names=["No space left"])
        assert out.read_bytes() == b"previous model" and out.with_suffix(".json").read_text() == "previous report"
        assert leftovers(mnt) == []



@root_only()
@pytest.mark.parametrize("command, leave_kb", [("export", 4), ("lower", 4), ("build", 4), ("build", 200)])
def test_a_full_disk_names_the_output_and_keeps_the_previous_one(tmp_path, capsys, files, command, leave_kb):
    """Export, lower and build on a full disk: exit 3, one line naming the output and the fix, the previous output
    as it was (a build with 4 KiB left sent finn-plus's log handler into a RecursionError; with 200 KiB a step's
    write failed without a file name)."""
    with small_tmpfs(tmp_path / "mnt") as mnt:
        if command == "build":
            out = fake_build(mnt / "build")
            args = ["--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out, *ESTIMATES]
        else:
            out = mnt / "model.onnx"
            out.write_bytes(b"previous model")
            args = (["--checkpoint", files["lerp_psa.pt"]] if command == "export" else ["--model", files["lerp.onnx"]])
            args += ["--out", out]
        before = snapshot(out)
        fill_disk(mnt, leave_kb=leave_kb)
        message = expect_error(capsys, 3, command, *args, names=["No space left on device", "free some space"])
        named = [out] + ([out.with_suffix(".json")] if command == "lower" else [])  # lower writes a report too
        assert any(message.startswith(f"{path}: ") for path in named), message
        assert snapshot(out) == before
        assert leftovers(mnt) == []


# ------------------------------------------------------------------------------------------------ train

FLAG_ERRORS = {
    "epochs 0": (["--epochs", "0"], "--epochs"),
    "epochs negative": (["--epochs", "-3"], "--epochs"),
    "batch size 0": (["--epochs", "1", "--batch-size", "0"], "--batch-size"),
    "hidden factor nan": (["--epochs", "1", "--hidden-factor", "nan"], "--hidden-factor"),
    "hidden factor inf": (["--epochs", "1", "--hidden-factor", "inf"], "--hidden-factor"),
    "embed dim 0": (["--epochs", "1", "--embed-dim", "0"], "--embed-dim"),
    "depth 0": (["--epochs", "1", "--depth", "0"], "--depth"),
    "lr negative": (["--epochs", "1", "--lr", "-1"], "--lr"),
}


@pytest.mark.parametrize("case", sorted(FLAG_ERRORS))
def test_train_bad_flag_is_named_and_writes_nothing(tmp_path, capsys, case):
    flags, flag = FLAG_ERRORS[case]
    args = ["--variant", "relu", "--out", tmp_path / "run", *TINY]
    args = [a for a in args if a not in ("--batch-size", "256")] if "--batch-size" in flags else args
    args = [a for a in args if a not in ("--embed-dim", "16")] if "--embed-dim" in flags else args
    args = [a for a in args if a not in ("--depth", "1")] if "--depth" in flags else args
    expect_error(capsys, 2, "train", *args, *flags, names=[flag])
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_finished_run_without_resume_or_force(tmp_path, capsys, files):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.pt").write_bytes(files["run"].joinpath("model.pt").read_bytes())
    before = snapshot(out)
    expect_error(capsys, 2, "train", "--variant", "lerp_psa", "--epochs", "1", "--out", out, *TINY,
                 names=["model.pt", "--resume", "--force"])
    assert snapshot(out) == before
    status, _, _ = run_cli(capsys, "train", "--variant", "lerp_psa", "--epochs", "1", "--out", out, "--force",
                           *TINY)
    assert status == 0 and snapshot(out) != before


def test_train_diverging_run_stops_non_zero_and_keeps_the_last_good_checkpoint(tmp_path, capsys, files):
    out = tmp_path / "run"
    expect_error(capsys, 1, "train", "--variant", "relu", "--epochs", "2", "--lr", "1e12", "--out", out, *TINY,
                 names=["non-finite", "--lr"])
    assert not (out / "model.pt").exists(), "a diverged epoch is never saved"
    expect_error(capsys, 1, "train", "--variant", "lerp_psa", "--epochs", "2", "--lr", "1e12", "--out",
                 tmp_path / "lerp", *TINY, names=["non-finite"])


@pytest.mark.parametrize("variant", ["relu", "lerp_psa"])
def test_eval_and_teacher_of_a_checkpoint_with_nan_weights(tmp_path, capsys, variant):
    model = tiny_model(variant)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", model, dataset="digits")
    expect_error(capsys, 2, "eval", "--checkpoint", tmp_path / "nan.pt", "--device", "cpu",
                 names=["nan.pt", "non-finite"])
    expect_error(capsys, 2, "train", "--variant", "relu", "--epochs", "1", "--kd", "--teacher",
                 tmp_path / "nan.pt", "--out", tmp_path / "run", *TINY, names=["nan.pt", "non-finite"])
    assert not (tmp_path / "run").exists()


def test_checkpoint_that_is_a_directory_says_so(tmp_path, capsys):
    for command, *rest in (("eval", "--device", "cpu"), ("export", "--out", tmp_path / "m.onnx")):
        message = expect_error(capsys, 2, command, "--checkpoint", tmp_path, *rest, names=[str(tmp_path)])
        assert "is a directory" in message or "is a folder" in message, message


def test_train_out_that_is_a_file_or_unwritable(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    expect_error(capsys, 2, "train", "--variant", "relu", "--epochs", "1", "--out", tmp_path / "file", *TINY,
                 names=["--out", "file"])
    assert (tmp_path / "file").read_text() == "mine"
    status, out, err = run_cli(capsys, "train", "--variant", "relu", "--epochs", "3", "--out", "/proc/psa_finn_run",
                               *TINY[:-3], "--device", "cpu")
    assert status == 3 and "epoch 1/3" not in out, "an unwritable --out fails before the first epoch"
    assert "/proc/psa_finn_run" in error_line(err, "train")


def test_train_qat_init_from_a_qat_checkpoint(tmp_path, capsys, files):
    expect_error(capsys, 2, "train", "--qat", "--init", files["qat.pt"], "--epochs", "1", "--out", tmp_path / "q",
                 *TINY[4:], names=["qat.pt", "QAT"])


def test_train_init_refuses_conflicting_model_flags(tmp_path, capsys, files):
    expect_error(capsys, 2, "train", "--init", files["relu.pt"], "--variant", "lerp_psa", "--epochs", "1",
                 "--out", tmp_path / "ft", *TINY[4:], names=["--variant", "relu.pt"])
    assert not (tmp_path / "ft").exists()


def test_qat_resume_equals_the_uninterrupted_run_bit_for_bit(tmp_path, capsys, monkeypatch, files):
    """Item 10 of issue 23: a QAT run stopped after epoch 1 and resumed ends in the same state dict (every activation
    scale included: Brevitas makes them new Parameters on load, so the optimisers must be made after it) and
    exports the same ONNX file as a run that was never stopped."""
    from psa_finn.export.qat import load_qat_checkpoint
    from psa_finn.models.training import Trainer

    qat = ["train", "--qat", "--bits", "6", "--init", files["lerp_psa.pt"], "--epochs", "2", "--lr", "1e-3",
           *TINY[4:]]
    assert run_cli(capsys, *qat, "--out", tmp_path / "straight")[0] == 0
    run_epoch = Trainer.run_epoch

    def stop_at_epoch_2(trainer, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return run_epoch(trainer, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", stop_at_epoch_2)
    assert run_cli(capsys, *qat, "--out", tmp_path / "resumed")[0] == 130
    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    assert run_cli(capsys, *qat, "--out", tmp_path / "resumed", "--resume")[0] == 0
    (straight, _), (resumed, _) = (load_qat_checkpoint(tmp_path / run / "model.pt") for run in ("straight", "resumed"))
    a, b = straight.state_dict(), resumed.state_dict()
    assert list(a) == list(b)
    differ = [name for name in a if not torch.equal(a[name], b[name])]
    assert differ == []
    for run in ("straight", "resumed"):
        assert run_cli(capsys, "export", "--checkpoint", tmp_path / run / "model.pt", "--out",
                       tmp_path / f"{run}.onnx")[0] == 0
    assert (tmp_path / "straight.onnx").read_bytes() == (tmp_path / "resumed.onnx").read_bytes()


@root_only()
def test_train_full_disk_keeps_the_last_good_checkpoint(tmp_path, capsys, files):
    """An unfinished run (epoch 1 of 2) resumed on a full disk: exit 3, 'No space left', epoch 1 kept."""
    payload = torch.load(files["run"] / "model.pt", weights_only=True)
    payload["training"]["settings"]["epochs"] = 2
    with small_tmpfs(tmp_path / "mnt") as mnt:
        torch.save(payload, mnt / "model.pt")
        before = snapshot(mnt)
        fill_disk(mnt, leave_kb=8)
        expect_error(capsys, 3, "train", "--variant", "relu", "--epochs", "2", "--resume", "--out", mnt, *TINY,
                     names=["No space left"])
        (mnt / "filler").unlink()
        assert snapshot(mnt) == before


@root_only()
def test_train_read_only_out_fails_before_the_first_epoch(tmp_path, capsys):
    with small_tmpfs(tmp_path / "mnt") as mnt:
        remount_read_only(mnt)
        status, out, err = run_cli(capsys, "train", "--variant", "relu", "--epochs", "3", "--out", mnt / "run",
                                   *TINY[:-3], "--device", "cpu")
        assert status == 3 and "epoch 1/3" not in out
        assert "read-only" in error_line(err, "train")


def _train_child(out, epochs=200):
    """A training run of a model big enough that saving its checkpoint takes a while, in a child process."""
    return subprocess.Popen([sys.executable, "build.py", "train", "--variant", "lerp_psa", "--embed-dim", "256",
                             "--depth", "4", "--epochs", str(epochs), "--batch-size", "1024", "--no-progress",
                             "--device", "cpu", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _signal_mid_save(process, out, sig, timeout=240):
    """Send `sig` to `process` as soon as a temporary checkpoint file appears in `out`; True when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and any(p.name.startswith(".model.pt.") for p in out.iterdir()):
            process.send_signal(sig)
            return True
        time.sleep(0.0005)
    process.kill()
    return False


def test_sigterm_as_the_temporary_file_is_created_removes_it(tmp_path, monkeypatch):
    """A SIGTERM that lands inside `tempfile.mkstemp`, after the file exists and before the writer knows its name,
    is held back until `atomic_path` owns the file, then removes it (exit 130 in the CLI)."""
    import tempfile

    from psa_finn.common.atomic_files import atomic_path
    from psa_finn.common.cli_errors import Terminated, interrupts_as_exceptions

    create = tempfile.mkstemp

    def mkstemp_then_sigterm(*args, **kwargs):
        made = create(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_sigterm)
    with pytest.raises(Terminated), interrupts_as_exceptions():
        with atomic_path(tmp_path / "model.pt") as temp:
            Path(temp).write_bytes(b"never reached")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_mid_save_removes_the_temporary_file(tmp_path):
    out = tmp_path / "run"
    process = _train_child(out)
    hit = _signal_mid_save(process, out, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert hit, "the run ended before its first checkpoint save"
    assert process.returncode == 130
    assert "interrupted" in error_line(err, "train")
    assert not out.exists() or leftovers(out) == []  # the folder it made is removed once empty


@pytest.mark.slow
def test_kill_9_mid_save_leftover_is_removed_by_the_next_run(tmp_path, capsys):
    out = tmp_path / "run"
    process = _train_child(out)
    hit = _signal_mid_save(process, out, signal.SIGKILL)
    process.communicate(timeout=120)
    assert hit and process.returncode == -signal.SIGKILL
    assert leftovers(out), "kill -9 leaves the temporary checkpoint behind"
    kept = snapshot(out / "model.pt") if (out / "model.pt").exists() else None
    expect_error(capsys, 2, "train", "--variant", "lerp_psa", "--embed-dim", "256", "--depth", "4", "--epochs",
                 "0", "--out", out, names=["--epochs"])
    status, _, _ = run_cli(capsys, "train", "--variant", "relu", "--epochs", "1", "--out", out, "--force", *TINY)
    assert status == 0 and leftovers(out) == []
    assert kept is None or snapshot(out / "model.pt") != kept


@pytest.mark.slow
def test_kill_9_mid_build_keeps_the_previous_build(tmp_path, capsys, files):
    """A build killed while it runs leaves the previous build as it was; the next build clears the leftover."""
    out = tmp_path / "build"
    lowered = tmp_path / "lowered.onnx"
    assert build.main(["lower", "--model", str(files["lerp.onnx"]), "--out", str(lowered)]) == 0
    assert build.main(["build", "--model", str(lowered), "--config", UNROLLED, "--out", str(out), *ESTIMATES]) == 0
    before = snapshot(out)
    saved = [name for name, data in before.items() if name.startswith("intermediate_models")]
    assert saved and not any(b".partial" in before[name] for name in saved), "models name the final folder"
    process = subprocess.Popen([sys.executable, "build.py", "build", "--model", str(lowered), "--config", UNROLLED,
                                "--out", str(out), *ESTIMATES], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(leftovers(tmp_path)) == 0:
        time.sleep(0.01)
    time.sleep(1.0)
    process.kill()
    process.communicate(timeout=60)
    assert snapshot(out) == before
    status, _, _ = run_cli(capsys, "build", "--model", lowered, "--config", UNROLLED, "--out", out, *ESTIMATES)
    assert status == 0 and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ the rest

def test_export_of_a_float_checkpoint_says_it_calibrates(tmp_path, capsys, files):
    status, out, _ = run_cli(capsys, "export", "--checkpoint", files["relu.pt"], "--out", tmp_path / "m.onnx",
                             "--calibration-batches", "1")
    assert status == 0 and "calibrat" in out.lower()


def test_usage_errors_are_one_line(capsys):
    expect_error(capsys, 2, "train", "--out", "x", "--no-such-flag", names=["--no-such-flag"])
    expect_error(capsys, 2, "lower", "--model", "x.onnx", names=["--out"])


def test_report_over_a_folder_that_is_no_build(tmp_path, capsys):
    expect_error(capsys, 2, "report", tmp_path, "--out", tmp_path / "r", names=[str(tmp_path)])


def test_no_warning_wall_on_help():
    result = subprocess.run([sys.executable, "build.py", "export", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    assert "exit status" in result.stdout


def test_outputs_of_long_runs_are_checked_before_the_work(tmp_path, capsys):
    """bench and demo fail on an unwritable output before any work: nothing of the work was written."""
    expect_error(capsys, 3, "bench", "accuracy", "--json", "/proc/psa_finn/a.json", names=["--json"])
    expect_error(capsys, 3, "demo", "--out", "/proc/psa_finn_demo", names=["/proc/psa_finn_demo"])


def test_report_into_an_unwritable_folder(tmp_path, capsys):
    fake_build(tmp_path / "b")
    (tmp_path / "b" / "summary.json").write_text(
        '{"fps": 1.0, "latency_ns": 1.0, "lut": 1, "dsp": 0, "bram18": 0, "uram": 0, "all_nodes_on_hw": true, '
        '"layers": [], "zero_estimate_ops": []}')
    expect_error(capsys, 3, "report", tmp_path / "b", "--out", "/proc/psa_finn_report", names=["--out"])


def test_synth_check_errors(tmp_path, capsys, monkeypatch):
    expect_error(capsys, 2, "synth-check", "--model", tmp_path, "--out", tmp_path / "o", names=["is a directory"])
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys on this PATH: the machine lacks a tool (exit 3)
    expect_error(capsys, 3, "synth-check", "--sweep", "--out", tmp_path / "o", names=["yosys is not installed"])


@pytest.mark.slow
def test_sigterm_stops_the_demo_and_its_running_stages(tmp_path):
    out = tmp_path / "demo"
    process = subprocess.Popen([sys.executable, "build.py", "demo", "--quick", "--out", str(out)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "logs" / "train_relu.log").is_file():
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted (SIGTERM)" in error_line(err.splitlines()[-1], "demo")
    still = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert still == [], "the stages that were running are stopped too"


@pytest.mark.slow
def test_build_stopped_before_hardware_conversion_is_not_an_error(tmp_path, capsys, files):
    status, out, _ = run_cli(capsys, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                             tmp_path / "b", "--stop-step", "step_tidy_up")
    assert status == 0 and "no estimate reports" in out and (tmp_path / "b" / "summary.json").is_file()
