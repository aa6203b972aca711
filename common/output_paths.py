"""Where a stage's outputs go, checked before any work and replaced only once the new ones are complete.

`check_output_file` / `check_output_folder` run before a stage computes anything: a target of the wrong kind is bad
input (exit 2), a location that cannot be written (read-only, no permission, /proc) an environment failure (exit 3),
so an unwritable --out fails at once instead of after the first epoch or the whole build.

A folder output (a finn-plus build directory) is made in a temporary sibling, `staging_directory(final)`, and
swapped in by `commit_directory` when it is complete: the previous folder is never removed before its replacement
is whole. Leftovers of a process killed midway are found by the next call and removed (a swap cut between its two
renames is undone: the previous folder comes back).
"""

import os
import shutil
import tempfile
from pathlib import Path

from psa_finn.common.atomic_files import is_own_temporary, owner_pid, process_alive, remove_stale_temporaries, temporary_name
from psa_finn.common.cli_errors import ENVIRONMENT_ERRNOS, BadInput, EnvironmentFailure, interrupts_deferred

STAGING_SUFFIX = "partial"
REPLACED_SUFFIX = "old"


def require_input_file(path, flag: str, what: str = "file") -> Path:
    """`path` as a Path when it is an existing file; BadInput naming `flag` otherwise (a folder is named as one)."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{flag} {path} is a directory; pass the {what} file itself")
    if not path.is_file():
        raise BadInput(f"{flag} {path}: no such file (a {what} is expected)")
    return path


def cannot_write(error: OSError, flag: str, target: Path, folder: Path) -> EnvironmentFailure:
    """The one-line error for an output location that the machine refuses."""
    advice = ENVIRONMENT_ERRNOS.get(error.errno, "choose another location")
    return EnvironmentFailure(f"{flag} {target}: cannot write in {folder} ({error.strerror}; {advice})")


def _probe_writable(folder: Path, flag: str, target: Path) -> None:
    """EnvironmentFailure naming `flag` unless `folder` can be created and written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with interrupts_deferred():  # an interrupt between creating the probe and removing it would leave it
            handle, probe = tempfile.mkstemp(prefix=temporary_name(target), suffix=".probe", dir=folder)
            os.close(handle)
            os.unlink(probe)
    except OSError as err:
        raise cannot_write(err, flag, target, folder) from err


def _check_ancestors(path: Path, flag: str) -> None:
    """BadInput when the nearest existing ancestor of `path` is a file (nothing can be created below it)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
            return


def check_output_file(path, flag: str = "--out") -> Path:
    """Check that a file can be written at `path` (its folder is created); returns the Path."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{flag} {path} is a directory; pass the path of a file to write")
    _check_ancestors(path, flag)
    _probe_writable(path.parent, flag, path)
    return path


def check_output_folder(path, flag: str = "--out") -> Path:
    """Check that `path` is (or can become) a writable folder; it is created. Returns the Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInput(f"{flag} {path} is a file; pass a folder")
    _check_ancestors(path, flag)
    _probe_writable(path, flag, path)
    return path


def check_own_folder(path, markers, what: str, flag: str = "--out") -> Path:
    """BadInput unless the folder `path` is new, empty (but for temporaries of ours), or holds one of `markers`
    (names of files or folders that the command writing `what` leaves there), so that no command writes into a
    folder of the user's files or of another command; returns the Path."""
    path = Path(path)
    if not path.is_dir():
        return path
    entries = [entry.name for entry in path.iterdir() if not is_own_temporary(entry.name)]
    if entries and not any((path / marker).exists() for marker in markers):
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise BadInput(f"{flag} {path} holds other files ({shown}) and no {what} (no {' or '.join(markers)}); "
                       f"choose a new or empty {flag}")
    return path


def _restore_interrupted_swap(final: Path) -> None:
    """A swap killed between its two renames left `final` missing and the previous folder under its temporary
    name: put it back."""
    if final.exists() or not final.parent.is_dir():
        return
    prefix = f".{final.name}."
    for path in final.parent.iterdir():
        pid = owner_pid(path.name, prefix)
        if pid is not None and path.name.endswith(f".{REPLACED_SUFFIX}") and not process_alive(pid):
            os.rename(path, final)
            return


def staging_directory(final, flag: str = "--out") -> Path:
    """A new, empty temporary sibling of `final` to build into (leftovers of killed runs are cleared first);
    EnvironmentFailure naming `flag` when it cannot be made."""
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise BadInput(f"{flag} {final} is a file; pass a folder")
    _check_ancestors(final, flag)
    staging = final.parent / f"{temporary_name(final)}{STAGING_SUFFIX}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _restore_interrupted_swap(final)
        remove_stale_temporaries(final.parent, final.name)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise cannot_write(err, flag, final, final.parent) from err
    return staging


def commit_directory(staging, final) -> Path:
    """Put the complete folder `staging` in place of `final` (the previous `final`, if any, is removed after)."""
    staging, final = Path(staging), Path(final)
    replaced = None
    if final.exists():
        replaced = final.parent / f"{temporary_name(final)}{REPLACED_SUFFIX}"
        os.rename(final, replaced)
    os.rename(staging, final)
    if replaced is not None:
        shutil.rmtree(replaced)
    return final


def discard_directory(staging) -> None:
    """Remove a staging folder that will not be committed."""
    shutil.rmtree(staging, ignore_errors=True)
