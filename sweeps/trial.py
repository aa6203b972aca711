"""One sweep trial, start to end, with the stage functions of the flow: train -> QAT -> export -> lower -> evaluate
-> estimate build. Runs anywhere (a Ray worker on another node too): it works in a temporary folder and returns
its record and the files worth keeping as bytes; `sweeps.store` commits them into the sweep folder atomically.

    record = {"id", "status": "ok" | "failed", "spec", "metrics": {accuracy_float, accuracy_qat, accuracy_lowered,
              fps, latency_ns, lut, dsp, bram18, uram, luts_plus_dsp, all_nodes_on_hw, hidden_dim, parameters},
              "lowering_forms", "off_hw_nodes", "stage_s", "wall_s", "error", "failed_stage", "traceback", "host"}

A failing stage ends the trial with status "failed", its one-line error, the stage and the traceback; the output of
every stage (training lines, the finn-plus build log) is in the kept `trial.log`.
"""

import contextlib
import os
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from psa_finn.common.cli_errors import one_line
from psa_finn.sweeps.families import model_family

TRIAL_LOG = "trial.log"
CALIBRATION_BATCHES = 4
EVAL_BATCH = 256
ACCURACY_DECIMALS = 4   # test accuracies in %; the ONNX evaluation averages in float32
# What a trial keeps (relative to its folder); the rest of the finn-plus build only with `build: {keep: true}`.
KEPT_FILES = (TRIAL_LOG, "float.pt", "qat.pt", "model.onnx", "lowered.onnx", "lowered.json", "build/summary.json")
TRAINED_FILES = ("float.pt", "qat.pt")
SUMMARY_METRICS = ("fps", "latency_ns", "lut", "dsp", "bram18", "uram", "luts_plus_dsp", "all_nodes_on_hw")
KEPT_BUILD_GLOBS = ("build/report/*.json", "build/build_dataflow.log")
DROPPED_BUILD_FOLDERS = ("finn_tmp",)


@contextlib.contextmanager
def output_to(path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes too) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class StageClock:
    """Times named stages; `current` is the stage running (or the last one, after a failure)."""

    def __init__(self):
        self.seconds, self.current = {}, None

    @contextlib.contextmanager
    def __call__(self, name):
        self.current = name
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 2)


def _train(model, data, out_dir, epochs, lr, spec, teacher, device, **io):
    from psa_finn.models.training import TrainSettings, Trainer

    settings = TrainSettings(epochs=epochs, batch_size=spec.batch_size, lr=lr, spline_lr=lr,
                             kd=teacher is not None, seed=spec.seed)
    history = Trainer(model, data, settings, out_dir, teacher=teacher, device=device, progress=False,
                      checkpoint_extra={"dataset": spec.dataset}, **io).run()
    for entry in history:
        print(f"epoch {entry['epoch']}/{epochs}: loss {entry['train_loss']:.4f}, test {entry['test_accuracy']:.2f}%",
              flush=True)
    return history[-1]["test_accuracy"]


def _accuracy(value) -> float:
    return round(float(value), ACCURACY_DECIMALS)


def _trained_models(spec, work: Path, family, data, teacher, device, clock, metrics: dict, trained):
    """(float model, calibrated QAT model): trained here, or loaded from `trained` (another trial's float.pt and
    qat.pt bytes with their accuracies: the same training settings, so the same models)."""
    if trained is not None:
        for name in TRAINED_FILES:
            (work / name).write_bytes(trained[name])
        metrics.update({k: trained["metrics"][k] for k in ("accuracy_float", "accuracy_qat")})
        return family.load_float(work / "float.pt")[0], family.load_qat(work / "qat.pt")[0]
    from psa_finn.models.datasets import DATASET_GEOMETRY
    from psa_finn.models.evaluation import evaluate

    with clock("train"):
        model = family.build(spec, DATASET_GEOMETRY[spec.dataset])
        metrics["accuracy_float"] = _accuracy(_train(model, data, work / "float", spec.epochs, spec.lr, spec,
                                                     teacher, device, save_fn=family.save_float,
                                                     load_fn=family.load_float))
        os.replace(work / "float" / "model.pt", work / "float.pt")
    with clock("qat"):
        qat = family.to_qat(model.cpu().eval(), spec.bits,
                            data.calibration_batches(spec.batch_size, CALIBRATION_BATCHES))
        if spec.qat_epochs:
            accuracy = _train(qat, data, work / "qat", spec.qat_epochs, spec.qat_lr, spec, teacher, device,
                              save_fn=family.save_qat, load_fn=family.load_qat)
            os.replace(work / "qat" / "model.pt", work / "qat.pt")
        else:
            accuracy = evaluate(qat, data, EVAL_BATCH)["accuracy"]
            family.save_qat(work / "qat.pt", qat, dataset=spec.dataset)
        metrics["accuracy_qat"] = _accuracy(accuracy)
    return model, qat


def _pipeline(spec, work: Path, config_path, teacher, device, clock: StageClock, record: dict, trained) -> None:
    """The stages of one trial, filling `record` (its metrics as each stage ends, so a failure keeps them)."""
    from psa_finn.build_configs.dataflow_build import run_build
    from psa_finn.export.onnx_eval import evaluate_onnx
    from psa_finn.models.datasets import load_dataset
    from psa_finn.transforms.lower_and_report import lower_file_and_report

    family = model_family(spec.family)
    data = load_dataset(spec.dataset)
    metrics = record["metrics"]
    model, qat = _trained_models(spec, work, family, data, teacher, device, clock, metrics, trained)
    metrics.update(hidden_dim=getattr(model, "hidden_dim", None),
                   parameters=sum(p.numel() for p in model.parameters()))
    with clock("export"):
        family.export(qat.cpu().eval(), work / "model.onnx")
    mode = spec.lowering or "auto"
    with clock("lower"):
        _, _, document = lower_file_and_report(work / "model.onnx", mode, work / "lowered.json", work / "lowered.onnx",
                                               source="model.onnx")
        record["lowering_forms"] = document["forms"]
    with clock("evaluate"):
        metrics["accuracy_lowered"] = _accuracy(
            evaluate_onnx(work / "lowered.onnx", *data.test_tensors(), EVAL_BATCH)["accuracy"])
    with clock("build"):
        summary = run_build(work / "lowered.onnx", config_path, work / "build", spec.stop_step,
                            target_fps=spec.target_fps)
    metrics.update({key: summary[key] for key in SUMMARY_METRICS})
    record["off_hw_nodes"] = summary["off_hw_nodes"]


def _kept_files(work: Path, keep_build: bool) -> dict:
    """{relative path: bytes} of what the trial keeps."""
    paths = [work / name for name in KEPT_FILES]
    paths += [p for pattern in KEPT_BUILD_GLOBS for p in sorted(work.glob(pattern))]
    if keep_build and (work / "build").is_dir():
        paths += [p for p in sorted((work / "build").rglob("*"))
                  if p.is_file() and not any(part in DROPPED_BUILD_FOLDERS for part in p.relative_to(work).parts)]
    return {str(p.relative_to(work)): p.read_bytes() for p in dict.fromkeys(paths) if p.is_file()}


def _finish(record: dict, clock: StageClock, start: float, cpu_start: float) -> dict:
    """Add the stage times, wall and CPU time of this process (all its threads), host and end time."""
    record.update(stage_s=clock.seconds, wall_s=round(time.perf_counter() - start, 2),
                  cpu_s=round(time.process_time() - cpu_start, 2), host=socket.gethostname(),
                  finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return record


def run_trial(spec, trial_id: str, config_path, teacher_checkpoint: bytes | None = None, device: str = "cpu",
              threads: int = 1, keep_build: bool = False, trained: dict | None = None) -> dict:
    """Run one trial; returns {"record": dict, "files": {relative path: bytes}}. Never raises for a failing stage
    (the record says what failed); KeyboardInterrupt and SystemExit pass through.

    `trained` ({"float.pt": bytes, "qat.pt": bytes, "metrics": {accuracy_float, accuracy_qat}}) skips training
    and QAT: another trial with the same training settings (`space.training_id`) already made these models."""
    import torch

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.set_num_threads(max(1, int(threads)))
    clock = StageClock()
    record = {"id": trial_id, "status": "failed", "spec": asdict(spec), "metrics": {}, "error": None,
              "failed_stage": None, "traceback": None}
    with tempfile.TemporaryDirectory(prefix="psa-finn-trial-") as folder:
        work = Path(folder)
        with output_to(work / TRIAL_LOG):
            try:
                teacher = None
                if teacher_checkpoint is not None:
                    (work / "teacher.pt").write_bytes(teacher_checkpoint)
                    teacher = model_family(spec.family).load_float(work / "teacher.pt")[0]
                _pipeline(spec, work, config_path, teacher, device, clock, record, trained)
                record["status"] = "ok"
            except Exception as error:   # noqa: BLE001 -- a failing trial is recorded, the sweep goes on
                record.update(error=one_line(error), failed_stage=clock.current, traceback=traceback.format_exc())
                traceback.print_exc()
        return {"record": _finish(record, clock, start, cpu_start), "files": _kept_files(work, keep_build)}


def train_teacher(teacher, device: str = "cpu", threads: int = 1) -> dict:
    """Train the sweep's ReLU teacher (`space.TeacherSpec`); returns {"record", "files": {"model.pt", log}}."""
    import torch

    from psa_finn.models.datasets import DATASET_GEOMETRY, load_dataset

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.set_num_threads(max(1, int(threads)))
    clock = StageClock()
    record = {"id": teacher.teacher_id(), "status": "failed", "spec": asdict(teacher), "metrics": {}, "error": None,
              "failed_stage": None, "traceback": None}
    with tempfile.TemporaryDirectory(prefix="psa-finn-teacher-") as folder:
        work = Path(folder)
        with output_to(work / TRIAL_LOG):
            try:
                with clock("train"):
                    family = model_family(teacher.family)
                    model = family.build(teacher, DATASET_GEOMETRY[teacher.dataset])
                    accuracy = _train(model, load_dataset(teacher.dataset), work / "train", teacher.epochs,
                                      teacher.lr, teacher, None, device, save_fn=family.save_float,
                                      load_fn=family.load_float)
                    os.replace(work / "train" / "model.pt", work / "model.pt")
                record.update(status="ok", metrics={"accuracy_float": accuracy})
            except Exception as error:   # noqa: BLE001 -- recorded; the sweep reports it and stops
                record.update(error=one_line(error), failed_stage=clock.current, traceback=traceback.format_exc())
                traceback.print_exc()
        files = {name: (work / name).read_bytes() for name in ("model.pt", TRIAL_LOG) if (work / name).is_file()}
        return {"record": _finish(record, clock, start, cpu_start), "files": files}
