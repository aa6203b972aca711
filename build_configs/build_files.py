"""The files of a finn-plus build folder that psa-finn reads, named once: what ran (report/time_per_step.json),
the saved models (intermediate_models/<step>.onnx, dataflow_parent.onnx), the log and our summary.json."""

import json
from pathlib import Path

SUMMARY = "summary.json"
BUILD_LOG = "build_dataflow.log"
REPORT_DIR = "report"
MODELS_DIR = "intermediate_models"
TIME_PER_STEP = "time_per_step.json"
TOTAL_TIME_KEY = "total_build_time"
PARENT_MODEL = "dataflow_parent.onnx"


def time_per_step(out_dir) -> dict:
    """finn-plus's {step: seconds, ..., "total_build_time": s} of the build in `out_dir` ({} before any step ran)."""
    path = Path(out_dir) / REPORT_DIR / TIME_PER_STEP
    return json.loads(path.read_text()) if path.is_file() else {}


def steps_run(out_dir) -> list:
    """The steps the build in `out_dir` ran, in order."""
    return [step for step in time_per_step(out_dir) if step != TOTAL_TIME_KEY]


def saved_model_path(out_dir, step) -> Path:
    """Where the build saved its model after `step` (finn-plus's save_intermediate_models)."""
    return Path(out_dir) / MODELS_DIR / f"{step}.onnx"


def parent_model_path(out_dir) -> Path:
    """finn-plus's dataflow_parent.onnx: host-side nodes around the StreamingDataflowPartition."""
    return Path(out_dir) / MODELS_DIR / PARENT_MODEL
