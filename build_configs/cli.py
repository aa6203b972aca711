"""`python build.py build`: finn-plus dataflow build + DIR/summary.json (build_configs.dataflow_build).

    python build.py build --model model.onnx --config build_configs/unrolled.yaml --out DIR

Exit status (common/cli_errors.py): 0 when every node but host-side pre/post-processing is on the hardware and
computes what the QONNX model computes, 1 when some node stays off it (they are named) or the hardware model differs,
2 on bad input or a build that finn-plus cannot complete, 3 when DIR cannot be written. Only a complete build
replaces DIR.
"""

from pathlib import Path


def add_arguments(parser, command):
    """Options of `build.py build`."""
    parser.add_argument("--model", required=True, type=Path, help="exported (QONNX) or lowered ONNX model")
    parser.add_argument("--config", required=True, type=Path,
                        help="finn-plus build config (build_configs/unrolled.yaml or folded.yaml)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output directory (new, empty, or an earlier build directory, which is replaced)")
    parser.add_argument("--stop-step", default=None,
                        help="last step to run, e.g. step_generate_estimate_reports to skip code generation")
    parser.add_argument("--verify-data", type=Path, default=None, metavar="FILE.npy",
                        help="verify the hardware model on these inputs (a numpy array [N, *input shape]) instead of "
                             "random inputs on the input quantizer's grid")


def run(args, command):
    """`build.py build`: errors go to build.py (one line, exit code by kind)."""
    from psa_finn.build_configs.dataflow_build import check_summary, run_build

    check_summary(run_build(args.model, args.config, args.out, args.stop_step, verify_data=args.verify_data),
                  Path(args.out).resolve())
    return 0
