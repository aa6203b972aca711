"""`python build.py lower --model model.onnx --out lowered.onnx [--mode auto]`: lower every quantized function.

Every `Quant -> S -> Quant` (LerpPSA, GELU, SiLU, ... between quantizers; transforms.lower_quantized_functions)
becomes MultiThreshold or PerChannelLUT. Writes the lowered QONNX model and, beside it, `<out stem>.json`: per
chain (named by its function node) the form chosen or why it stays, whether its tables are monotone, the entries
stored per channel, and the lerp64 error against the full table in output codes.
"""

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from psa_finn.common.atomic_files import atomic_paths
from psa_finn.common.cli_errors import BadInput
from psa_finn.common.output_paths import check_output_file

QONNX_QUANTIZER_OPS = {"Quant", "IntQuant", "BipolarQuant", "FloatQuant", "Trunc"}


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
    from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS

    if args.out.suffix == ".json":
        raise BadInput(f"--out {args.out}: the lowered model needs another name than its report <stem>.json; "
                       f"pass e.g. --out {args.out.with_suffix('.onnx')}")
    report_path = args.out.with_suffix(".json")
    for path in (args.out, report_path):
        check_output_file(path)
    model, report = lower_model_file(args.model, args.mode)
    document = lowering_document(report, args.mode, args.model)
    with atomic_paths(args.out, report_path) as (model_temp, report_temp):
        model.save(model_temp)
        with open(report_temp, "w") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
    lowered = sum(entry.form not in KEPT_FORMS for entry in report)
    print(f"lowered {lowered} of {len(report)} quantized function(s) {document['forms']} -> {args.out}, "
          f"report {report_path}")
    for entry in report:
        if entry.form in KEPT_FORMS:
            print(f"  {entry.node} ({'->'.join(entry.ops)}): {entry.form}: {entry.reason}")
    return 0


def lowering_document(report, mode, model_path=None) -> dict:
    """The JSON report of one lowering: forms chosen, lerp64 error overall (channel-weighted mean over the chains
    that have one) and per chain ("nodes", each named by its function node)."""
    measured = [entry for entry in report if entry.lerp64_max_abs_error is not None]
    channels = sum(entry.channels for entry in measured)
    return {"model": None if model_path is None else str(model_path), "mode": mode,
            "forms": dict(Counter(entry.form for entry in report)),
            "lerp64_max_abs_error": max((entry.lerp64_max_abs_error for entry in measured), default=0),
            "lerp64_mean_abs_error": sum(entry.lerp64_mean_abs_error * entry.channels for entry in measured)
            / max(channels, 1),
            "nodes": [asdict(entry) for entry in report]}


def lower_model_file(path, mode):
    """Load a QONNX file (checked by transforms/model_file.py) and lower it (mode `mode`); returns (model, list of
    ChainLowering)."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions
    from psa_finn.transforms.model_file import read_model_file

    model = read_model_file(path)
    if not any(node.op_type in QONNX_QUANTIZER_OPS for node in model.graph.node):
        raise BadInput(f"{path} is not a QONNX model (it has no Quant nodes); export it with `build.py export`")
    lowered_before = [node.name for node in model.graph.node if node.op_type in ("MultiThreshold", "PerChannelLUT")]
    model, report = lower_quantized_functions(model, mode)  # read_model_file inferred the shapes
    if not report and lowered_before:
        raise BadInput(f"{path} is already lowered (no quantized function left; {len(lowered_before)} "
                       f"MultiThreshold/PerChannelLUT node(s) such as {lowered_before[0]}); build it as it is, or "
                       f"lower the exported model")
    model = model.transform(InferShapes()).transform(InferDataTypes())
    return model, report
