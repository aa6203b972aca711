"""common/atomic_files.py and the folder swap of common/output_paths.py: a write either lands whole or leaves
nothing behind, and what a killed process left is cleared by the next write."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from psa_finn.common.atomic_files import atomic_path, atomic_paths, write_json_atomic, write_text_atomic
from psa_finn.common.output_paths import commit_directory, staging_directory


def test_write_json_creates_parents_and_lands_whole(tmp_path):
    target = tmp_path / "a" / "b" / "summary.json"
    assert write_json_atomic(target, {"fps": 32051.0}) == target
    assert json.loads(target.read_text()) == {"fps": 32051.0}
    assert target.read_text().endswith("\n")
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temp:
            with open(temp, "w") as handle:
                handle.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_unserialisable_json_raises_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def dead_pid():
    """The id of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_temporaries_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".model.pt.{dead_pid()}.abc.tmp"
    live = tmp_path / f".model.pt.{os.getppid()}.def.tmp"  # a running process (pytest's parent): kept
    other = tmp_path / f".other.pt.{dead_pid()}.ghi.tmp"   # another target's: not this write's business
    for path in (stale, live, other):
        path.write_bytes(b"")
    write_text_atomic(tmp_path / "model.pt", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.pt", live.name, other.name])


def test_files_that_belong_together_are_replaced_together(tmp_path):
    model, report = tmp_path / "lowered.onnx", tmp_path / "lowered.json"
    model.write_text("old model")
    report.write_text("old report")
    with pytest.raises(RuntimeError):
        with atomic_paths(model, report) as (model_temp, report_temp):
            Path(model_temp).write_text("new model")
            raise RuntimeError("the report could not be computed")
    assert (model.read_text(), report.read_text()) == ("old model", "old report")
    with atomic_paths(model, report) as (model_temp, report_temp):
        Path(model_temp).write_text("new model")
        Path(report_temp).write_text("new report")
    assert (model.read_text(), report.read_text()) == ("new model", "new report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lowered.json", "lowered.onnx"]


def test_a_folder_swap_cut_between_its_renames_is_undone(tmp_path):
    """kill -9 after the previous build was renamed aside but before the new one was renamed in: the next run puts
    the previous build back (and clears the half-made one)."""
    final = tmp_path / "build"
    aside = tmp_path / f".build.{dead_pid()}.old"
    aside.mkdir()
    (aside / "summary.json").write_text("previous")
    (tmp_path / f".build.{dead_pid()}.partial").mkdir()
    staging = staging_directory(final)
    assert (final / "summary.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["build", staging.name])
    (staging / "summary.json").write_text("new")
    commit_directory(staging, final)
    assert (final / "summary.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["build"]
