"""`build.py sweep` on a local Ray instance, each run in its own process as a user runs it: a tiny 2x2 sweep with a
teacher, a rerun that reuses everything, a trial whose worker is killed (recorded, the sweep goes on, the next run
retries it), and Ctrl-C (exit 130, nothing left running, nothing half-written). Every run must leave no Ray process
of its own behind: each sweep runs with a fresh value of RUN_TAG_VAR in its environment, which the Ray processes it
starts (GCS, raylet, agents, workers) inherit, so another Ray session on the same machine is never counted."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from psa_finn.common.cli_errors import EXIT_INTERRUPTED, EXIT_REJECTED
from psa_finn.sweeps.store import TEACHER, TRIALS, read_record

TINY_SPACE = """\
dataset: digits
model: {family: resmlp, embed_dim: 8, depth: 1}
training: {epochs: 1, batch_size: 256, qat_epochs: %(qat_epochs)d}
build: {stop_step: %(stop_step)s}
%(teacher)s
axes:
  variant: %(variants)s
  hidden_factor: %(widths)s
  lowering: %(lowerings)s
resources: {cpus_per_trial: 1}
"""
RAY_GONE_WITHIN_S = 30
RUN_TAG_VAR = "PSA_FINN_TEST_SWEEP_RUN"
TASK_TITLE = "ray::_trial_task"


def write_space(path: Path, qat_epochs=1, teacher="teacher: {hidden_factor: 2.0, epochs: 1}",
                variants="[relu, lerp_psa]", widths="[1.0, 0.5]", lowerings="[auto]",
                stop_step="step_generate_estimate_reports") -> Path:
    path.write_text(TINY_SPACE % dict(qat_epochs=qat_epochs, teacher=teacher, variants=variants, widths=widths,
                                      lowerings=lowerings, stop_step=stop_step))
    return path


def tagged_environment():
    """(tag, environment) for one sweep run: os.environ plus RUN_TAG_VAR=tag."""
    tag = uuid.uuid4().hex
    return tag, {**os.environ, RUN_TAG_VAR: tag}


def ray_processes(tag: str) -> list:
    """The processes whose environment carries RUN_TAG_VAR=tag: those the tagged sweep started (Ray's included)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(RUN_TAG_VAR) == tag:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # gone meanwhile, or another user's process: not one of ours
    return found


def assert_no_ray_left(tag: str) -> None:
    deadline = time.monotonic() + RAY_GONE_WITHIN_S
    while ray_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [" ".join(p.cmdline())[:80] for p in ray_processes(tag) if p.is_running()]
    assert not left, f"Ray processes left behind: {left}"


def sweep_command(space, out, *extra):
    return [sys.executable, "-m", "psa_finn.build", "sweep", "--space", str(space), "--out", str(out),
            "--no-progress", *extra]


def run_sweep(space, out, *extra):
    tag, env = tagged_environment()
    done = subprocess.run(sweep_command(space, out, *extra), capture_output=True, text=True, timeout=900, env=env)
    assert_no_ray_left(tag)
    return done


def wait_for_task(process, tag: str, timeout_s=300) -> psutil.Process:
    """The first Ray worker process of the sweep tagged `tag` that runs a trial (its title is the task's name)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the sweep ended before a trial started: {process.communicate()}"
        for candidate in ray_processes(tag):
            try:
                if " ".join(candidate.cmdline()).startswith(TASK_TITLE):
                    return candidate
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError("no trial started")


def trial_records(out: Path) -> dict:
    return {folder.name: read_record(folder) for folder in sorted((out / TRIALS).iterdir())}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    space, out = write_space(folder / "tiny.yaml"), folder / "out"
    return space, out, run_sweep(space, out)


@pytest.mark.slow
def test_tiny_sweep_runs_every_trial_on_local_ray_and_writes_the_results(tiny_sweep):
    space, out, done = tiny_sweep
    assert done.returncode == 0, done.stderr[-3000:]
    records = trial_records(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    assert sorted(r["spec"]["variant"] + str(r["spec"]["hidden_factor"]) for r in records.values()) == \
        ["lerp_psa0.5", "lerp_psa1.0", "relu0.5", "relu1.0"]
    teachers = list((out / TEACHER).iterdir())
    assert len(teachers) == 1 and read_record(teachers[0])["status"] == "ok"
    assert {r["spec"]["teacher_id"] for r in records.values()} == {teachers[0].name}
    for name, record in records.items():
        metrics = record["metrics"]
        # the QAT model, its QONNX export and the lowered model compute the same logits (bit-exact chain)
        assert metrics["accuracy_lowered"] == pytest.approx(metrics["accuracy_qat"], abs=1e-3)
        assert metrics["all_nodes_on_hw"] and metrics["fps"] > 0 and metrics["lut"] > 0
        assert record["point"]["variant"] == record["spec"]["variant"]
        kept = {p.relative_to(out / TRIALS / name).as_posix() for p in (out / TRIALS / name).rglob("*")}
        assert {"result.json", "trial.log", "float.pt", "qat.pt", "model.onnx", "lowered.onnx",
                "build/summary.json", "build/report/estimate_layer_resources.json"} <= kept
        assert not any("finn_tmp" in p or "intermediate_models" in p for p in kept)
    results = json.loads((out / "results.json").read_text())
    assert len(results["trials"]) == 4 and results["sweep"]["ran"] == 4
    assert (out / "results.csv").read_text().count("\n") == 5 and (out / "pareto.png").stat().st_size > 10_000
    assert sum(r["pareto_lut_dsp"] for r in results["trials"]) >= 1
    assert "## Trials" in (out / "report.md").read_text()


@pytest.mark.slow
def test_rerun_of_a_finished_sweep_reuses_every_trial_without_starting_ray(tiny_sweep):
    space, out, first = tiny_sweep
    assert first.returncode == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / TRIALS).glob("*/result.json")}
    done = run_sweep(space, out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sweep: 0 trial(s) ran (0 failed), 4 reused" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "results.json").read_text())["sweep"]["cluster"] == "no trial to run"


@pytest.mark.slow
def test_killed_trial_is_recorded_and_retried_and_ctrl_c_stops_cleanly(tmp_path):
    # Two trials as short as they come (no QAT epochs, no teacher, the build only up to the FINN conversion) that
    # differ only in the lowering: one trains, the other waits for its models.
    space = write_space(tmp_path / "two.yaml", qat_epochs=0, teacher="", variants="[lerp_psa]", widths="[1.0]",
                        lowerings="[auto, full]", stop_step="step_tidy_up")
    out = tmp_path / "out"
    # 1. kill -9 the worker of the training trial: it is recorded as failed; the other trains itself, exit status 1
    tag, env = tagged_environment()
    sweep = subprocess.Popen(sweep_command(space, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    wait_for_task(sweep, tag).kill()
    stdout, stderr = sweep.communicate(timeout=900)
    assert sweep.returncode == EXIT_REJECTED, stderr[-3000:]
    assert_no_ray_left(tag)
    records = trial_records(out)
    assert sorted(r["status"] for r in records.values()) == ["failed", "ok"]
    killed = next(name for name, r in records.items() if r["status"] == "failed")
    assert records[killed]["failed_stage"] == "ray" and "the trial's Ray task failed" in records[killed]["error"]
    assert f"{killed}: FAILED in ray" in stdout and "rerun the same command to retry them" in stdout
    # 2. Ctrl-C while the retry runs: exit 130, no Ray process left, nothing half-written, results still there
    tag, env = tagged_environment()
    sweep = subprocess.Popen(sweep_command(space, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    wait_for_task(sweep, tag)
    sweep.send_signal(signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].endswith("sweep: error: interrupted")
    assert_no_ray_left(tag)
    assert trial_records(out) == records and not list((out / TRIALS).glob(".*"))
    assert len(json.loads((out / "results.json").read_text())["trials"]) == 2
    # 3. the next run retries only the killed trial, with the models its twin trained
    done = run_sweep(space, out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sweep: 1 trial(s) ran (0 failed), 1 reused" in done.stdout
    final = trial_records(out)
    assert all(r["status"] == "ok" for r in final.values())
    twin = next(name for name in final if name != killed)
    models = [folder.name for folder in (out / "models").iterdir()]
    assert (final[killed]["training"], final[twin]["training"]) == (models[0], None) and len(models) == 1
    assert "train" not in final[killed]["stage_s"] and "train" in final[twin]["stage_s"]
    assert {k: final[killed]["metrics"][k] for k in ("accuracy_float", "accuracy_qat")} == \
        {k: final[twin]["metrics"][k] for k in ("accuracy_float", "accuracy_qat")}
    assert not (out / TRIALS / killed / "qat.pt").exists() and (out / "models" / models[0] / "qat.pt").is_file()


@pytest.mark.slow
def test_sweep_notebook_reads_the_sweep_folder(tiny_sweep, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    space, out, done = tiny_sweep
    assert done.returncode == 0
    monkeypatch.setenv("PSA_FINN_SWEEP_DIR", str(out))
    notebook_dir = Path(__file__).resolve().parents[1] / "notebooks"
    notebook = nbformat.read(notebook_dir / "sweep.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook_dir)}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "4 of 4 trial(s) ok" in printed
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    assert "**Pareto-optimal: accuracy vs luts_plus_dsp**" in markdown
    assert "reaches ReLU at h in **" in markdown and "of 1** pairs" in markdown   # lerp_psa h0.5 vs relu h1
