"""One writer per output: every `psa-finn` command that writes `--out` holds a lock on it for its whole run.

The lock is an `flock` on `.<name>.lock` beside the output (a file or a folder; beside, because a build folder is
replaced by a rename); a second command on the same `--out` is refused at once (BadInput, exit 2, naming the
holder), so two runs never interleave their files and the loser never reports success. The kernel drops the lock
of a killed process; the file is removed by its holder on the way out (a leftover of kill -9 is taken over by the
next run). Where the output's folder cannot hold the lock file, it goes to the system's temporary folder, named
by the output's path.
"""

import fcntl
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from psa_finn.common.cli_errors import BadInput

LOCK_SUFFIX = ".lock"


def lock_path(output) -> Path:
    """Where the lock of `output` lives: `.<name>.lock` beside it."""
    output = Path(output).resolve()
    return output.parent / f".{output.name}{LOCK_SUFFIX}"


def _fallback_lock_path(output) -> Path:
    digest = hashlib.sha256(str(Path(output).resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"psa-finn-{digest}{LOCK_SUFFIX}"


def _open_locked(path: Path, flag: str, output: Path, holder: str):
    """The open lock file at `path`, locked; BadInput naming `flag` when another process holds it."""
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            handle.close()
            raise BadInput(f"{flag} {output} is being written by another psa-finn run ({other}); wait for it to "
                           f"finish or choose another {flag}") from err
        try:  # the previous holder may have removed the file between our open and our lock: lock the new one
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}{': ' + holder if holder else ''}\n")
            handle.flush()
            return handle
        handle.close()


@contextmanager
def output_lock(output, flag: str = "--out", holder: str = ""):
    """Hold the lock of `output` (a file or folder path) for the block; BadInput when another run holds it.
    `holder` (e.g. the command) is written into the lock file for the refusal message of the next one."""
    output = Path(output).resolve()
    path = lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _open_locked(path, flag, output, holder)
    except BadInput:
        raise
    except OSError:
        path = _fallback_lock_path(output)
        handle = _open_locked(path, flag, output, holder)
    try:
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        handle.close()
