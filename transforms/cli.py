"""`python build.py lower --model model.onnx --out lowered.onnx [--mode auto]`: lower every quantized function.

Every `Quant -> S -> Quant` (LerpPSA, GELU, SiLU, ... between quantizers; transforms.lower_quantized_functions)
becomes MultiThreshold or PerChannelLUT. Writes the lowered QONNX model and, beside it, `<out stem>.json`: per
chain (named by its function node) the form chosen or why it stays, whether its tables are monotone, the entries
stored per channel, and the lerp64 error against the full table in output codes.
"""

from collections import Counter
from dataclasses import asdict
from pathlib import Path

from psa_finn.common.atomic_files import atomic_path, write_json_atomic

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
    naming the problem (exit 2)."""
    from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS

    model, report = lower_model_file(args.model, args.mode)
    report_path = args.out.with_suffix(".json")
    document = lowering_document(report, args.mode, args.model)
    with atomic_path(args.out) as temp:
        model.save(temp)
    write_json_atomic(report_path, document)
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
    """Load a QONNX file and lower it (mode `mode`); returns (model, list of ChainLowering)."""
    from google.protobuf.message import DecodeError
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions

    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    try:
        model = ModelWrapper(str(path))
    except DecodeError as err:
        raise ValueError(f"{path} is not an ONNX model ({err}); pass the .onnx file written by `build.py export`") \
            from err
    if not any(node.op_type in QONNX_QUANTIZER_OPS for node in model.graph.node):
        raise ValueError(f"{path} is not a QONNX model (it has no Quant nodes); export it with `build.py export`")
    model, report = lower_quantized_functions(model.transform(InferShapes()), mode)
    model = model.transform(InferShapes()).transform(InferDataTypes())
    return model, report
