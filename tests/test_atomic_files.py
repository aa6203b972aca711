"""common/atomic_files.py: a write either lands whole or leaves nothing behind."""

import json

import pytest

from psa_finn.common.atomic_files import atomic_path, write_json_atomic, write_text_atomic


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
