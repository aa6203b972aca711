"""The sweep folder: one sub-folder per finished trial, each written whole or not at all, and a lock per sweep.

    DIR/trials/<trial id>/result.json   the trial's record (status "ok" or "failed"); written last
                          trial.log, float.pt, qat.pt, model.onnx, lowered.onnx, lowered.json, build/summary.json
    DIR/teacher/<teacher id>/           the same for the sweep's teacher (model.pt)
    DIR/models/<training id>/           float.pt and qat.pt of one training, shared by the trials that differ only in
                                        lowering or build config (`space.training_id`)

`commit` writes a trial into `.<id>.partial/`, then renames it into place (an earlier failed attempt is moved
aside first and removed after), so a folder `trials/<id>/` always holds a complete trial. `clean_stale` removes
what a killed sweep left behind and puts back a folder that a kill caught between the two renames. A trial whose
folder is missing or whose record says "failed" runs again on the next run of the same sweep.
"""

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from psa_finn.common.atomic_files import write_json_atomic
from psa_finn.common.cli_errors import BadInput

TRIALS = "trials"
TEACHER = "teacher"
MODELS = "models"
RESULT = "result.json"
LOCK = ".sweep.lock"
PARTIAL, OLD = ".partial", ".old"


def read_record(folder) -> dict | None:
    """The record in `folder/result.json`, or None when there is none (or it cannot be read)."""
    try:
        record = json.loads((Path(folder) / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "status" in record else None


def clean_stale(parent) -> None:
    """Remove `.<id>.partial` folders of killed runs; restore `.<id>.old` where the new folder never arrived."""
    parent = Path(parent)
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(PARTIAL):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".") and entry.name.endswith(OLD):
            final = parent / entry.name[1:-len(OLD)]
            if final.exists():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                os.replace(entry, final)


def commit(parent, name: str, record: dict, files: dict) -> Path:
    """Write `files` ({relative path: bytes}) and `record` as `parent/name/`, replacing an earlier attempt whole."""
    parent = Path(parent)
    final, partial, old = parent / name, parent / f".{name}{PARTIAL}", parent / f".{name}{OLD}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for relative, data in files.items():
        target = partial / relative
        if partial.resolve() not in target.resolve().parents:
            raise ValueError(f"trial file {relative!r} would land outside its folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    write_json_atomic(partial / RESULT, record)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def records(parent) -> dict:
    """{folder name: record} of every committed folder below `parent`."""
    parent = Path(parent)
    if not parent.is_dir():
        return {}
    found = {}
    for folder in sorted(parent.iterdir()):
        record = read_record(folder) if folder.is_dir() and not folder.name.startswith(".") else None
        if record is not None:
            found[folder.name] = record
    return found


@contextmanager
def sweep_lock(sweep_dir):
    """Hold `DIR/.sweep.lock` for the block; BadInput when another sweep holds it (two sweeps on one folder). A
    sweep that wrote nothing (no Ray cluster answered) removes the lock file again, so a folder it made stays empty
    and `build.py` removes it."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BadInput(f"--out {sweep_dir}: another sweep ({holder}) is running on this folder; wait for it "
                           f"or choose another --out") from err
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            if [p.name for p in sweep_dir.iterdir()] == [LOCK]:
                (sweep_dir / LOCK).unlink()
            fcntl.flock(handle, fcntl.LOCK_UN)
