"""`python build.py lower --model model.onnx --out lowered.onnx [--mode auto]`: lower every LerpPSA node.

Writes the lowered QONNX model and, beside it, `<out stem>.json`: per node the chosen form and why, whether its
tables are monotone, the entries stored per channel, and the lerp64 error against the full table in output codes.
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
    from psa_finn.transforms.lower_lerp_psa import LOWERING_MODES

    parser.add_argument("--model", required=True, type=Path, help="QONNX model with LerpPSA nodes (build.py export)")
    parser.add_argument("--out", required=True, type=Path, help="lowered model; the report goes to <stem>.json")
    parser.add_argument("--mode", choices=LOWERING_MODES, default="auto",
                        help="auto: MultiThreshold where monotone, else full table (default); threshold; full; "
                             "lerp64 (every 4th entry + 2-bit interpolation, as the paper's hardware)")


def run(args, command) -> int:
    """Lower the model and print a one-line summary; bad input raises a ValueError naming the problem (exit 2).

    The model and its report are written together: both are new, or (after any error) both are as they were."""
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
    print(f"lowered {len(report)} LerpPSA node(s) {document['forms']} -> {args.out}, report {report_path}")
    return 0


def lowering_document(report, mode, model_path=None) -> dict:
    """The JSON report of one lowering: forms chosen, lerp64 error overall (channel-weighted mean) and per node."""
    channels = sum(entry.channels for entry in report)
    return {"model": None if model_path is None else str(model_path), "mode": mode,
            "forms": dict(Counter(entry.form for entry in report)),
            "lerp64_max_abs_error": max((entry.lerp64_max_abs_error for entry in report), default=0),
            "lerp64_mean_abs_error": sum(entry.lerp64_mean_abs_error * entry.channels for entry in report)
            / max(channels, 1),
            "nodes": [asdict(entry) for entry in report]}


def lower_model_file(path, mode):
    """Load a QONNX file, lower it with LowerLerpPSA(mode); returns (model, list of LoweredNode)."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    from psa_finn.transforms.lower_lerp_psa import LowerLerpPSA
    from psa_finn.transforms.model_file import read_model_file

    model = read_model_file(path)
    if not any(node.op_type in QONNX_QUANTIZER_OPS for node in model.graph.node):
        raise BadInput(f"{path} is not a QONNX model (it has no Quant nodes); export it with `build.py export`")
    lowering = LowerLerpPSA(mode)
    model = model.transform(InferShapes()).transform(lowering)
    model = model.transform(InferShapes()).transform(InferDataTypes())
    return model, lowering.report
