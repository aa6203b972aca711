"""Faults that could lose a result (issue 23, items 1-5 and 18): one writer per --out, a rejected build never
replaces a good one, the stale-temporary cleanup touches only our own names, no command writes into a folder that is
not its own, and Ctrl-C / SIGTERM (also during imports, also inside finn-plus) exit 130 with nothing half-written.

Each case asserts the exit code of `psa_finn.common.cli_errors`, one error line naming the flag or file, and that what
existed before is intact (byte for byte).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import build
from psa_finn.common.output_lock import output_lock
from test_faults import (ESTIMATES, ROOT, TINY, UNROLLED, config_with, error_line, expect_error, fake_build, files,  # noqa: F401
                         leftovers, run_cli, snapshot)

SPACE = ROOT / "sweeps" / "spaces" / "digits_mlp.yaml"


def dead_pid() -> int:
    """A process id that no process has (a child that has exited and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def foreign_folder(path: Path) -> Path:
    """A folder of the user's own files."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "data").mkdir()
    (path / "data" / "x.csv").write_text("1,2\n")
    return path


# ------------------------------------------------------------------------------------------------ 1: one writer

WRITERS = {
    "train": lambda tmp, f: ["--variant", "relu", "--epochs", "1", *TINY],
    "export": lambda tmp, f: ["--checkpoint", f["relu.pt"], "--calibration-batches", "1"],
    "lower": lambda tmp, f: ["--model", f["lerp.onnx"]],
    "build": lambda tmp, f: ["--model", f["lerp.onnx"], "--config", UNROLLED, *ESTIMATES],
    "demo": lambda tmp, f: ["--quick"],
    "sweep": lambda tmp, f: ["--space", SPACE, "--cpus", "1"],
    "report": lambda tmp, f: [tmp],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_second_writer_on_one_out_is_refused(tmp_path, capsys, files, command):
    """While another run holds --out, every writer exits 2 at once naming --out and the holder; the output is
    untouched."""
    out = tmp_path / ("out.onnx" if command in ("export", "lower") else "out")
    if out.suffix:
        out.write_bytes(b"previous output")
    else:
        fake_build(out)
    before = snapshot(out)
    args = [*WRITERS[command](tmp_path, files), "--out", out]
    with output_lock(out, holder="train"):
        message = expect_error(capsys, 2, command, *args, names=["--out", str(out), "another psa-finn run"])
    assert "train" in message
    assert snapshot(out) == before
    assert not (tmp_path / f".{out.name}.lock").exists(), "the holder removes its lock file on the way out"


@pytest.mark.slow
def test_two_trains_on_one_out_at_once_one_wins_the_other_exits_2(tmp_path):
    """The issue's repro: two `train` runs with different variants on one --out, started together."""
    out = tmp_path / "tw"
    runs = [subprocess.Popen([sys.executable, "build.py", "train", "--variant", variant, "--epochs", "2", *TINY,
                              "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}) for variant in ("relu", "gelu")]
    results = [run.communicate(timeout=300) + (run.returncode,) for run in runs]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 2], results
    loser = next(err for _, err, code in results if code == 2)
    assert "another psa-finn run" in error_line(loser, "train")


# ------------------------------------------------------------------------------------------------ 2: rejected builds

def _fake_finn(monkeypatch, summary_update):
    """Replace the finn-plus run by one that writes a log and the summary by one updated with `summary_update`."""
    from psa_finn.build_configs import dataflow_build as build_cli
    from psa_finn.build_configs import summary as summary_module

    def run_finn(model_path, config_path, cfg, staging, stop_step):
        (staging / "build_dataflow.log").write_text("rejected build\n")
        (staging / "intermediate_models").mkdir()
        return 0, []

    def build_summary(staging, **kwargs):
        summary = {"fps": 12500000.0, "all_nodes_on_hw": True, "off_hw_nodes": [], "verification": None,
                   "config_name": "unrolled", "latency_ns": 80.0, "lut": 0, "dsp": 0, "bram18": 0, "uram": 0,
                   "max_cycles_node": "MatMul_0", "max_cycles": 1, "zero_estimate_ops": [], "build_time_s": 1.0,
                   "target_fps": 32051, "target_fps_met": True,
                   "finn_totals": {"lut": 0, "dsp": 0, "bram18": 0, "uram": 0}}
        summary.update(summary_update)
        return summary

    monkeypatch.setattr(build_cli, "_run_finn", run_finn)
    monkeypatch.setattr(summary_module, "build_summary", build_summary)


@pytest.mark.parametrize("case", ["off hardware", "verification mismatch"])
def test_a_rejected_build_never_replaces_a_finished_one(tmp_path, capsys, files, monkeypatch, case):
    """A build that ends in exit 1 goes to DIR.failed; the finished build in DIR stays byte for byte."""
    update = {"off hardware": {"all_nodes_on_hw": False, "off_hw_nodes": ["MatMul_0"]},
              "verification mismatch": {"verification": {"mismatch": "output codes differ by up to 3 on 2 of 32",
                                                         "hw_model": "step_x", "reference_model": "input model",
                                                         "samples": 32, "inputs_kind": "random",
                                                         "compared": "output codes", "tolerance": 0.0}}}[case]
    _fake_finn(monkeypatch, update)
    out = fake_build(tmp_path / "build")
    before = snapshot(out)
    message = expect_error(capsys, 1, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out,
                           names=[f"{out}.failed", "previous build"])
    assert ("MatMul_0" in message) if case == "off hardware" else ("differ by up to 3" in message)
    assert snapshot(out) == before
    assert (tmp_path / "build.failed" / "summary.json").is_file()
    assert leftovers(tmp_path) == []


def test_a_rejected_first_build_is_kept_in_out(tmp_path, capsys, files, monkeypatch):
    """Without a previous build the rejected one is kept in DIR (for inspection), exit 1."""
    _fake_finn(monkeypatch, {"all_nodes_on_hw": False, "off_hw_nodes": ["MatMul_0"]})
    out = tmp_path / "build"
    expect_error(capsys, 1, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out,
                 names=["MatMul_0", str(out)])
    assert (out / "summary.json").is_file() and not (tmp_path / "build.failed").exists()


def test_a_good_build_removes_the_out_of_date_failed_sibling(tmp_path, capsys, files, monkeypatch):
    _fake_finn(monkeypatch, {})
    out = fake_build(tmp_path / "build")
    failed = fake_build(tmp_path / "build.failed")
    user = foreign_folder(tmp_path / "other.failed")
    status, _, err = run_cli(capsys, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out)
    assert status == 0, err
    assert not failed.exists() and user.is_dir() and "previous build" not in (out / "summary.json").read_text()


# ------------------------------------------------------------------------------------------------ 3: stale temporaries

def test_stale_temporary_cleanup_spares_user_files_that_look_alike(tmp_path, capsys, files):
    target = tmp_path / "x.onnx"
    pid = dead_pid()
    user_file = tmp_path / f".x.onnx.{pid}.keep"
    user_dir = tmp_path / f".x.onnx.{pid}.mydir"
    user_file.write_text("mine\n")
    user_dir.mkdir()
    (user_dir / "a.txt").write_text("mine too\n")
    ours = tmp_path / f".x.onnx.{pid}.k2j4h8ab.tmp.onnx"
    ours.write_bytes(b"half a model")
    status, _, err = run_cli(capsys, "export", "--checkpoint", files["relu.pt"], "--out", target,
                             "--calibration-batches", "1")
    assert status == 0, err
    assert user_file.read_text() == "mine\n" and (user_dir / "a.txt").read_text() == "mine too\n"
    assert not ours.exists(), "a temporary file of a dead writer is removed"


# ------------------------------------------------------------------------------------------------ 4: foreign folders

FOREIGN = {
    "train": ["--variant", "relu", "--epochs", "1", *TINY],
    "demo": ["--quick"],
    "sweep": ["--space", str(SPACE), "--cpus", "1"],
}


@pytest.mark.parametrize("command", sorted(FOREIGN))
@pytest.mark.parametrize("kind", ["user files", "a build"])
def test_no_command_writes_into_a_folder_that_is_not_its_own(tmp_path, capsys, command, kind):
    out = foreign_folder(tmp_path / "mine") if kind == "user files" else fake_build(tmp_path / "mine")
    before = snapshot(out)
    expect_error(capsys, 2, command, *FOREIGN[command], "--out", out, names=["--out", str(out), "new or empty"])
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------------------ 5: interrupts

def test_ctrl_c_inside_finn_plus_exits_130_and_keeps_no_failed_build(tmp_path, capsys, files, monkeypatch):
    """finn-plus catches KeyboardInterrupt and returns a failed status ("KeyboardInterrupt detected"): that is an
    interrupt (exit 130), not a model finn-plus cannot build (exit 2); no DIR.failed, the previous build intact."""
    from psa_finn.build_configs import dataflow_build as build_cli

    def run_finn(model_path, config_path, cfg, staging, stop_step):
        (staging / "build_dataflow.log").write_text("KeyboardInterrupt detected. Aborting...\n")
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            return -1, []
        return 0, []

    monkeypatch.setattr(build_cli, "_run_finn", run_finn)
    out = fake_build(tmp_path / "build")
    before = snapshot(out)
    message = expect_error(capsys, 130, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out", out)
    assert "interrupted" in message and "could not build" not in message
    assert snapshot(out) == before and not (tmp_path / "build.failed").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_the_imports_exits_130_and_writes_nothing(tmp_path, files, sig):
    """Ctrl-C in the first seconds (torch, brevitas, qonnx imports), also where the parent ignores SIGINT (a
    background job): exit 130, one line, no --out."""
    out = tmp_path / "m.onnx"
    child = subprocess.Popen([sys.executable, "build.py", "export", "--checkpoint", str(files["relu.pt"]),
                              "--calibration-batches", "1", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(1.0)
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted" in error_line(err, "export")
    assert not out.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ 18: empty --out

def test_a_failed_run_leaves_no_empty_out_folder(tmp_path, capsys):
    """synth-check of a truncated ONNX file: exit 2 naming --model, and the --out it would have made is not left."""
    model = tmp_path / "cut.onnx"
    model.write_bytes(b"\x08\x07\x12\x04abc")
    out = tmp_path / "synth"
    expect_error(capsys, 2, "synth-check", "--model", model, "--out", out, names=["--model", str(model)])
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ 13: target FPS

def test_a_build_that_misses_its_target_fps_says_so_and_names_the_limiting_layer(tmp_path, capsys, files,
                                                                                 monkeypatch):
    _fake_finn(monkeypatch, {"fps": 7972.0, "target_fps": 32051, "target_fps_met": False,
                             "max_cycles_node": "MVAU_rtl_3", "max_cycles": 25088})
    status, printed, err = run_cli(capsys, "build", "--model", files["lerp.onnx"], "--config", UNROLLED, "--out",
                                   tmp_path / "build")
    assert status == 0, err
    note = next(line for line in printed.splitlines() if "misses" in line)
    assert "target_fps 32051" in note and "MVAU_rtl_3" in note and "mvau_wwidth_max" in note


def test_a_missed_target_fps_is_a_summary_field_and_a_note(tmp_path, capsys, files):
    """A real build whose config asks more than any folding reaches (2 cycles per frame for 16 tokens):
    `target_fps_met` false in summary.json and the note printed."""
    import json

    out = tmp_path / "build"
    config = config_with(tmp_path, "target_fps: 32051", "target_fps: 100000000", name="fast.yaml")
    status, printed, err = run_cli(capsys, "build", "--model", files["lerp.onnx"], "--config", config, "--out", out,
                                   *ESTIMATES)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target_fps"] == 100000000 and summary["fps"] < 1e8 and summary["target_fps_met"] is False
    assert f"{summary['fps']:.0f} FPS misses the config's target_fps 100000000" in printed
