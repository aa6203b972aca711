"""The one exit-code convention of every `psa-finn` / `build.py` subcommand, and the errors that carry it.

    0  success
    1  the stage ran, but its result is not what was asked: a node left off the hardware, a verification
       mismatch, a training run that diverged (non-finite loss or weights)
    2  bad input: a flag, a file, a config, a model the stage cannot take (the message names it and the fix)
    3  the environment failed: disk full, read-only or unwritable target, a missing tool
  130  interrupted (Ctrl-C or SIGTERM); temporary files are removed, finished outputs are kept

A stage raises `BadInput`, `NotOnHardware`, `ResultRejected` or `EnvironmentFailure` (or lets a ValueError /
OSError through); `build.py` prints one line on stderr, `psa-finn CMD: error: ...`, and exits with the code;
`--debug` shows the traceback instead.
"""

import contextlib
import errno
import signal
import threading

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = ("exit status: 0 ok; 1 result rejected (a node left off the hardware, a verification mismatch, "
                   "training diverged); 2 bad input (flag, file, config, model); 3 environment or I/O failure (disk "
                   "full, read-only, missing tool); 130 interrupted. Errors are one line on stderr; --debug shows "
                   "the traceback.")

# OSErrors that are the machine's fault (exit 3), with what to do about them.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free some space and rerun",
    errno.EDQUOT: "free some space (disk quota) and rerun",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "no permission: choose a location you can write to",
    errno.EPERM: "not permitted: choose a location you can write to",
}


class PsaFinnError(Exception):
    """An error with its exit code; the message is one line that names the file, node or flag and the fix."""

    exit_code = EXIT_BAD_INPUT


class BadInput(PsaFinnError, ValueError):
    """A flag, file, config or model that the stage cannot take (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class NotOnHardware(PsaFinnError):
    """The build finished but left nodes off the hardware, or the hardware model differs from QONNX (exit 1)."""

    exit_code = EXIT_REJECTED


class ResultRejected(PsaFinnError):
    """The stage ran but its result is unusable, e.g. a training run whose loss or weights became non-finite
    (exit 1); nothing unusable was saved."""

    exit_code = EXIT_REJECTED


class EnvironmentFailure(PsaFinnError):
    """The machine failed the stage: disk full, permissions, a missing tool (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that temporary files are removed on the way out (exit 130)."""


class _Interrupts:
    """What `interrupts_as_exceptions` saw: the signal received (None: none yet) and whether delivery is deferred."""

    received = None
    count = 0
    deferring = False


def _interrupt_error(signum) -> KeyboardInterrupt:
    return Terminated("interrupted (SIGTERM)") if signum == signal.SIGTERM else KeyboardInterrupt("interrupted")


def _on_signal(signum, frame):
    _Interrupts.received = signum
    _Interrupts.count += 1
    if not _Interrupts.deferring:
        raise _interrupt_error(signum)


@contextlib.contextmanager
def interrupts_as_exceptions():
    """Within the block Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt (`Terminated`) in the main thread, also
    where the parent process had SIGINT ignored, so `atomic_files` removes its temporary files and finished outputs
    stay as they were; `interrupted()` tells afterwards whether one came, even where a library swallowed the
    exception or turned it into another error (finn-plus's "KeyboardInterrupt detected")."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Interrupts.received = None
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_deferred():
    """Hold back an interrupt that comes within the block until the block ends, then raise it: imports (a
    KeyboardInterrupt inside a library's import leaves it half-initialised, or is swallowed by its `except:`) and
    the creation of a temporary file (`atomic_files`: an interrupt between creating it and owning it would leave it
    behind). Nested blocks raise at the end of the outermost. Effective inside `interrupts_as_exceptions`."""
    outer, seen = _Interrupts.deferring, _Interrupts.count
    _Interrupts.deferring = True
    try:
        yield
    finally:
        _Interrupts.deferring = outer
    if not outer and _Interrupts.count != seen:
        raise _interrupt_error(_Interrupts.received)


def interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM came during the current `interrupts_as_exceptions` block."""
    return _Interrupts.received is not None


def raise_if_interrupted() -> None:
    """KeyboardInterrupt when an interrupt came that something below swallowed (a failed finn-plus build)."""
    if _Interrupts.received is not None:
        raise _interrupt_error(_Interrupts.received)


def exit_code_of(error: BaseException) -> int:
    """The exit code for an error escaping a subcommand (130 for any error once an interrupt came)."""
    if isinstance(error, KeyboardInterrupt) or interrupted():
        return EXIT_INTERRUPTED
    if isinstance(error, PsaFinnError):
        return error.exit_code
    if isinstance(error, OSError):
        if error.errno in ENVIRONMENT_ERRNOS:
            return EXIT_ENVIRONMENT
        if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)):
            return EXIT_BAD_INPUT
        return EXIT_ENVIRONMENT
    if isinstance(error, ValueError):
        return EXIT_BAD_INPUT
    return EXIT_ENVIRONMENT


def one_line(error: BaseException) -> str:
    """The error as one line: its message (an OSError's file, strerror and what to do), never a traceback."""
    if isinstance(error, KeyboardInterrupt) or interrupted():
        return str(error) if isinstance(error, KeyboardInterrupt) and str(error) else "interrupted"
    if isinstance(error, OSError) and not isinstance(error, PsaFinnError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        advice = ENVIRONMENT_ERRNOS.get(error.errno)
        return f"{where}{error.strerror}" + (f" ({advice})" if advice else "")
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (PsaFinnError, ValueError, OSError)):
        return text
    return f"{type(error).__name__}: {text} (unexpected; rerun with --debug for the traceback)"
