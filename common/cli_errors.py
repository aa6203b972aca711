"""The one exit-code convention of every `psa-finn` / `build.py` subcommand, and the errors that carry it.

    0  success
    1  the result is not what was asked: a node left off the hardware, a verification mismatch
    2  bad input: a flag, a file, a config, a model the stage cannot take (the message names it and the fix)
    3  the environment failed: disk full, no permission, a missing tool, an interrupted run
  130  interrupted (Ctrl-C)

A stage raises `BadInput`, `NotOnHardware` or `EnvironmentFailure` (or lets a ValueError / OSError through);
`build.py` prints one line on stderr, `psa-finn CMD: error: ...`, and exits with the code; `--debug` shows the
traceback instead.
"""

EXIT_OK = 0
EXIT_NOT_ON_HARDWARE = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = ("exit status: 0 ok; 1 model not fully on hardware or verification mismatch; 2 bad input "
                   "(flag, file, config); 3 environment or I/O failure; 130 interrupted. --debug shows tracebacks.")


class PsaFinnError(Exception):
    """An error with its exit code; the message is one line that names the file, node or flag and the fix."""

    exit_code = EXIT_BAD_INPUT


class BadInput(PsaFinnError, ValueError):
    """A flag, file, config or model that the stage cannot take (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class NotOnHardware(PsaFinnError):
    """The build finished but left nodes off the hardware, or the hardware model differs from QONNX (exit 1)."""

    exit_code = EXIT_NOT_ON_HARDWARE


class EnvironmentFailure(PsaFinnError):
    """The machine failed the stage: disk full, permissions, a missing tool (exit 3)."""

    exit_code = EXIT_ENVIRONMENT


def exit_code_of(error: BaseException) -> int:
    """The exit code for an error escaping a subcommand."""
    if isinstance(error, PsaFinnError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError)):
        return EXIT_BAD_INPUT
    return EXIT_ENVIRONMENT


def one_line(error: BaseException) -> str:
    """The error as one line: its message (an OSError's strerror and file), never a traceback."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, OSError) and not isinstance(error, PsaFinnError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__
