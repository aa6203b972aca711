"""Atomic file writes for every stage: write beside the target under a temporary name, then rename over it, so an
interrupted or failing stage never leaves a half-written checkpoint, model, table or plot behind.

Temporary names carry the writer's process id (`.<name>.<pid>.<random>.tmp[.ext]`; staged folders
`.<name>.<pid>.partial` / `.old`, see common/output_paths.py). A process killed outright (kill -9) cannot remove its
temporary file; the next write beside it finds the file, sees that its process is gone, and removes it. Only names of
exactly these forms are ours: a user's `.<name>.<pid>.keep` beside the target is never touched. A write that fails because the disk is full says so (torch, for one, reports it as "unexpected pos").
"""

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

from psa_finn.common.cli_errors import interrupts_deferred

WRITTEN_FILE_MODE = 0o644
TEMP_SUFFIX = ".tmp"
# What follows `.<name>.<pid>.` in a name this package made: tempfile's random characters then `.tmp` (with an
# optional extension the writer needs, e.g. `.tmp.png`) or `.probe`; or a staged folder's `partial` / `old`.
OWN_TEMPORARY_TAIL = re.compile(r"(?:[a-z0-9_]+(?:\.tmp(?:\.[A-Za-z0-9]+)?|\.probe)|partial|old)")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_pid(name: str, prefix: str):
    """The process id in a temporary name of ours, `<prefix><pid>.<tail>` (`OWN_TEMPORARY_TAIL`); None for any
    other name (a user's file that merely starts alike)."""
    if not name.startswith(prefix):
        return None
    pid, _, tail = name[len(prefix):].partition(".")
    return int(pid) if pid.isdigit() and OWN_TEMPORARY_TAIL.fullmatch(tail) else None


def is_own_temporary(name: str) -> bool:
    """Whether `name` has the form of a temporary file or folder of this package (`.<name>.<pid>.<tail>`)."""
    return re.fullmatch(rf"\..+\.\d+\.{OWN_TEMPORARY_TAIL.pattern}", name) is not None


def remove_stale_temporaries(folder, name: str) -> list:
    """Remove the temporary files and folders `.<name>.<pid>.*` in `folder` whose process no longer runs (left by
    a kill -9 or a crash); returns their paths."""
    folder, prefix, removed = Path(folder), f".{name}.", []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        pid = owner_pid(path.name, prefix)
        if pid is None or pid == os.getpid() or process_alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def temporary_name(path: Path) -> str:
    """The prefix of a temporary sibling of `path` owned by this process."""
    return f".{path.name}.{os.getpid()}."


def disk_full(folder) -> bool:
    """Whether the file system holding `folder` has no space left for an unprivileged writer."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024


def no_space_error(path) -> OSError:
    """The OSError ENOSPC naming `path`: what a write that ran out of disk space raises, whatever the writer made of
    it (torch's "unexpected pos", a logging loop in finn-plus, an OSError without a file name)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def failed_for_disk_space(error: BaseException, folder) -> bool:
    """Whether `error` (not an interrupt) came from a full disk: ENOSPC itself, or any error once `folder`'s file
    system is full."""
    if isinstance(error, KeyboardInterrupt):
        return False
    return getattr(error, "errno", None) == errno.ENOSPC or disk_full(folder)


@contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside `path` (parent folders created) to write to; `suffix` is an extension the
    writer needs on it (e.g. ".png"), after `.tmp`.

    On success the temporary file is renamed over `path`; on any error (Ctrl-C and SIGTERM included) it is removed
    and the error propagates, as an OSError ENOSPC naming `path` when the disk is full whatever the writer made of
    it, and an OSError without a file name gets `path` as its file name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    temp = None
    try:
        with interrupts_deferred():  # an interrupt inside mkstemp, or before `temp` is set, would leave the file
            handle, temp = tempfile.mkstemp(prefix=temporary_name(path), suffix=TEMP_SUFFIX + suffix,
                                            dir=path.parent)
            os.close(handle)
        yield temp
        os.chmod(temp, WRITTEN_FILE_MODE)
        os.replace(temp, path)
    except BaseException as error:
        full = failed_for_disk_space(error, path.parent)
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
        named = isinstance(error, OSError) and error.filename is not None
        if full and not (named and error.errno == errno.ENOSPC):
            raise no_space_error(path) from error
        if isinstance(error, OSError) and not named and error.strerror:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


@contextmanager
def atomic_paths(*paths, suffix: str = ""):
    """`atomic_path` for files that belong together (a model and its report): yields one temporary path per target;
    only when every one is written are they all renamed into place (renames in one folder need no space), so
    either all targets are new or all are as they were."""
    with ExitStack() as stack:
        temps = [stack.enter_context(atomic_path(path, suffix)) for path in paths]
        yield temps


def write_text_atomic(path, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_path(path) as temp:
        Path(temp).write_text(text)
    return Path(path)


def write_json_atomic(path, data) -> Path:
    """Write `data` as indented JSON (with a final newline) to `path` atomically; returns the path."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")
