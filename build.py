#!/usr/bin/env python3
"""psa-finn command line: one entry point over every stage of the flow.

    python build.py {train,eval,bench,export,lower,build,synth-check,report,demo,sweep} [options]

Each subcommand lives in the module of its stage (see COMMANDS); only the module of the chosen subcommand is
imported, so `python build.py lower ...` does not pay for torch or finn-plus start-up it does not need.
Each module provides `add_arguments(parser, command)` and `run(args, command) -> int` (the exit status).
"""

import argparse
import contextlib
import importlib
import importlib.util
import sys
from pathlib import Path


def _import_checkout_as_package():
    """Run from a checkout that is not installed (`python build.py ...`): import this folder as `psa_finn`."""
    if importlib.util.find_spec("psa_finn") is not None:
        return
    root = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("psa_finn", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["psa_finn"] = package
    spec.loader.exec_module(package)


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are exceptions (exit 2, one line on stderr) rather than a usage block."""

    def error(self, message):
        from psa_finn.common.cli_errors import BadInput

        raise BadInput(f"{message} (see `{self.prog} --help`)")


PROG = "psa-finn"
COMMANDS = {
    "train": ("psa_finn.export.train_eval_cli",
              "train a ResMLP (CE, knowledge transfer, distillation; --qat for quantization-aware)"),
    "eval": ("psa_finn.export.train_eval_cli",
             "accuracy and loss of a checkpoint (float, QAT, reference .bin) or any exported QONNX classifier"),
    "bench": ("psa_finn.models.cli",
              "benchmarks: 'accuracy' (accuracy vs hidden size) or 'kernels' (LERP-PSA speed/memory)"),
    "export": ("psa_finn.export.cli",
               "export a model file (float or QAT checkpoint, reference .bin) to QONNX, each learnable function one "
               "node"),
    "lower": ("psa_finn.transforms.cli",
              "lower every quantized function (Quant -> LerpPSA, GELU, ... -> Quant) to MultiThreshold or "
              "PerChannelLUT"),
    "build": ("psa_finn.build_configs.cli", "finn-plus dataflow build with resource and throughput reports"),
    "synth-check": ("psa_finn.hardware_checks.synth_check",
                    "yosys synthesis of the LUT layers' RTL beside the FINN estimates"),
    "report": ("psa_finn.reports.cli", "tables and plots comparing build directories"),
    "demo": ("psa_finn.reports.demo", "the whole flow on built-in data: train, QAT, export, lower, build, report"),
    "sweep": ("psa_finn.sweeps.cli", "design-space sweep on Ray: accuracy vs hardware cost, Pareto fronts, report"),
}


@contextlib.contextmanager
def _guarded_output(args, command):
    """For a command that writes --out: hold its lock (common/output_lock.py) and, when the command fails, remove
    the --out folder it created if it is still empty (a failed run leaves nothing behind)."""
    from psa_finn.common.output_lock import output_lock

    out = getattr(args, "out", None)
    if out is None or getattr(args, "list", False):
        yield
        return
    out = Path(out)
    existed = out.exists()
    with output_lock(out, holder=command):
        try:
            yield
        except BaseException:
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            raise


def main(argv=None) -> int:
    """Run one subcommand; errors become one line on stderr and the exit code of `psa_finn.common.cli_errors`."""
    from psa_finn.common.cli_errors import (EXIT_BAD_INPUT, EXIT_CODES_HELP, exit_code_of, interrupts_as_exceptions,
                                            interrupts_deferred, one_line, raise_if_interrupted)

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    prog = PROG if Path(sys.argv[0]).name != "build.py" else "build.py"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join([*(f"  {c:12s} {h}" for c, (_, h) in COMMANDS.items()), "",
                                                        EXIT_CODES_HELP]))
    parser.add_argument("command", choices=sorted(COMMANDS), help="the stage to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.parse_args(["--help"])
    if argv[0] not in COMMANDS:
        print(f"{prog}: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)} (see `{prog} "
              f"--help`)", file=sys.stderr)
        return EXIT_BAD_INPUT
    command = argv[0]
    sub = OneLineArgumentParser(prog=f"{prog} {command}", description=COMMANDS[command][1], epilog=EXIT_CODES_HELP)
    sub.add_argument("--debug", action="store_true", help="show the traceback of an error (any position)")
    try:
        with interrupts_as_exceptions():
            with interrupts_deferred():
                module = importlib.import_module(COMMANDS[command][0])
                module.add_arguments(sub, command)
            args = sub.parse_args(argv[1:])
            with _guarded_output(args, command):
                status = int(module.run(args, command) or 0)
            raise_if_interrupted()
            return status
    except (Exception, KeyboardInterrupt) as error:
        if debug:
            raise
        print(f"{prog} {command}: error: {one_line(error)}", file=sys.stderr)
        return exit_code_of(error)


if __name__ == "__main__":
    _import_checkout_as_package()
    sys.exit(main())
