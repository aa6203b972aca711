#!/usr/bin/env python3
"""psa-finn command line: one entry point over every stage of the flow.

    python build.py {train,eval,bench,export,lower,build,synth-check,report,demo} [options]

Each subcommand lives in the module of its stage (see COMMANDS); only the module of the chosen subcommand is
imported, so `python build.py lower ...` does not pay for torch or finn-plus start-up it does not need.
Each module provides `add_arguments(parser, command)` and `run(args, command) -> int` (the exit status).
"""

import argparse
import importlib
import sys

COMMANDS = {
    "train": ("models.cli", "train a ResMLP (CE, knowledge transfer, distillation; --qat for quantization-aware)"),
    "eval": ("models.cli", "accuracy and loss of a checkpoint, a reference .bin or an exported .onnx"),
    "bench": ("models.cli", "benchmarks: 'accuracy' (accuracy vs hidden size) or 'kernels' (LERP-PSA speed/memory)"),
    "export": ("export.cli", "export a (QAT) ResMLP to QONNX with LerpPSA custom nodes"),
    "lower": ("transforms.cli", "lower LerpPSA nodes to MultiThreshold or PerChannelLUT"),
    "build": ("build_configs.cli", "finn-plus dataflow build with resource and throughput reports"),
    "synth-check": ("build_configs.cli", "yosys synthesis of the LUT layers' RTL beside the FINN estimates"),
    "report": ("reports.cli", "tables and plots comparing build directories"),
    "demo": ("reports.demo", "the whole flow on built-in data: train, QAT, export, lower, build, report"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(f"  {c:12s} {h}" for c, (_, h) in COMMANDS.items()))
    parser.add_argument("command", choices=sorted(COMMANDS), help="the stage to run")
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    command = argv[0]
    module = importlib.import_module(COMMANDS[command][0])
    sub = argparse.ArgumentParser(prog=f"build.py {command}", description=COMMANDS[command][1])
    module.add_arguments(sub, command)
    return int(module.run(sub.parse_args(argv[1:]), command) or 0)


if __name__ == "__main__":
    sys.exit(main())
