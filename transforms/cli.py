"""`python build.py lower --model model.onnx --out lowered.onnx [--mode auto]`: lower every quantized function.

Every `Quant -> S -> Quant` (LerpPSA, GELU, SiLU, ... between quantizers; transforms.lower_quantized_functions)
becomes MultiThreshold or PerChannelLUT. Writes the lowered QONNX model and, beside it, `<out stem>.json`, the
report of transforms.lower_and_report.
"""

from pathlib import Path

from psa_finn.common.cli_errors import BadInput
from psa_finn.common.output_paths import check_output_file


def add_arguments(parser, command):
    """Options of `build.py lower`."""
    from psa_finn.transforms.lower_quantized_functions import LOWERING_MODES

    parser.add_argument("--model", required=True, type=Path,
                        help="QONNX model with quantized functions, e.g. LerpPSA or GELU between Quant nodes")
    parser.add_argument("--out", required=True, type=Path, help="lowered model; the report goes to <stem>.json")
    parser.add_argument("--mode", choices=LOWERING_MODES, default="auto",
                        help="auto: MultiThreshold where every channel rises, else full table (default); threshold; "
                             "full; "
                             "lerp64 (every 4th entry + 2-bit interpolation, as the paper's hardware)")


def run(args, command) -> int:
    """Lower the model, print a summary line and one line per chain left as it is; bad input raises a ValueError
    naming the problem (exit 2). The model and its report are written together: both are new, or (after any
    error) both are as they were."""
    from psa_finn.transforms.lower_and_report import lower_file_and_report
    from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS

    if args.out.suffix == ".json":
        raise BadInput(f"--out {args.out}: the lowered model needs another name than its report <stem>.json; "
                       f"pass e.g. --out {args.out.with_suffix('.onnx')}")
    report_path = args.out.with_suffix(".json")
    for path in (args.out, report_path):
        check_output_file(path)
    _, report, document = lower_file_and_report(args.model, args.mode, report_path, args.out)
    lowered = sum(entry.form not in KEPT_FORMS for entry in report)
    print(f"lowered {lowered} of {len(report)} quantized function(s) {document['forms']} -> {args.out}, "
          f"report {report_path}")
    for entry in report:
        if entry.form in KEPT_FORMS:
            print(f"  {entry.node} ({'->'.join(entry.ops)}): {entry.form}: {entry.reason}")
    return 0
