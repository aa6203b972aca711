"""Atomic file writes for every stage: write beside the target under a temporary name, then rename over it, so an
interrupted or failing stage never leaves a half-written checkpoint, model, table or plot behind."""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

WRITTEN_FILE_MODE = 0o644


@contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path` (parent folders created) to write to.

    On success the temporary file is renamed over `path`; on any error it is removed and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield temp
        os.chmod(temp, WRITTEN_FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_path(path) as temp:
        Path(temp).write_text(text)
    return Path(path)


def write_json_atomic(path, data) -> Path:
    """Write `data` as indented JSON (with a final newline) to `path` atomically; returns the path."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
