"""Test accuracy of QONNX files (exported and lowered ResMLPs) on the digits test split, cached per file.

Uses `export.onnx_eval.evaluate_onnx` (what `build.py eval --checkpoint X.onnx` runs). A file's result is kept in a
JSON cache beside the demo's outputs and re-used while the file's modification time is unchanged.
"""

import json
from pathlib import Path

from psa_finn.common.atomic_files import write_text_atomic

EVAL_BATCH = 128


def onnx_accuracies(paths, cache_path) -> dict:
    """{str(path): digits test accuracy in %, or None when the model cannot be evaluated} for each existing file."""
    from psa_finn.export.onnx_eval import evaluate_onnx
    from psa_finn.models.datasets import load_dataset

    cache_path = Path(cache_path)
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    split, results = None, {}
    for path in map(Path, paths):
        if not path.is_file():
            continue
        key, mtime = str(path), path.stat().st_mtime
        if cache.get(key, {}).get("mtime") != mtime:
            split = split or load_dataset("digits").test_tensors()
            try:
                accuracy = evaluate_onnx(path, *split, EVAL_BATCH)["accuracy"]
            except ValueError as err:
                print(f"warning: cannot evaluate {path}: {err}")
                accuracy = None
            cache[key] = {"mtime": mtime, "accuracy": accuracy}
        results[key] = cache[key]["accuracy"]
    write_text_atomic(cache_path, json.dumps(cache, indent=2) + "\n")
    return results
