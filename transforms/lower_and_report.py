"""Lower a model and write what each quantized function became: the one lower-and-report of `lower`, the build's
`step_lower_quantized_functions` and the sweeps' trials.

`lower_and_report(model, mode, report_path, model_path=None, source=None)` lowers every quantized function of an
in-memory model (transforms.lower_quantized_functions; shapes and datatypes re-inferred) and writes the report, and
the lowered model when `model_path` is given; `lower_file_and_report(path, mode, report_path, model_path)` does the
same for a QONNX file, read and checked by `lower_model_file`. The files are written by `write_lowering`, atomically
and together (common.atomic_files.atomic_paths): both are new, or (after any error) both are as they were. The
report (`lowering_document`) lists per chain, named by its function node, the form chosen or why it stays, whether
its tables are monotone, the entries stored per channel and the lerp64 error against the full table in output codes.
"""

import json
from collections import Counter
from dataclasses import asdict

from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from psa_finn.common.atomic_files import atomic_paths
from psa_finn.common.cli_errors import BadInput
from psa_finn.custom_ops.domain import PER_CHANNEL_LUT_OP, is_quantizer_node
from psa_finn.transforms.lower_quantized_functions import MULTITHRESHOLD, lower_quantized_functions
from psa_finn.transforms.model_file import read_model_file


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


def lower_model(model, mode):
    """`lower_quantized_functions` followed by shape and datatype inference; returns (model, list of ChainLowering)."""
    model, report = lower_quantized_functions(model, mode)
    return model.transform(InferShapes()).transform(InferDataTypes()), report


def write_lowering(document, report_path, model=None, model_path=None) -> None:
    """Write the report `document` to `report_path` and, when `model_path` is given, `model` there: atomically and
    together."""
    paths = (report_path,) if model_path is None else (report_path, model_path)
    with atomic_paths(*paths) as temporaries:
        with open(temporaries[0], "w") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
        if model_path is not None:
            model.save(str(temporaries[1]))


def lower_and_report(model, mode, report_path, model_path=None, source=None):
    """Lower `model` (mode `mode`) and write its report (and the lowered model, `write_lowering`); returns (lowered
    model, list of ChainLowering, report dict). `source` names the input model in the report."""
    model, report = lower_model(model, mode)
    document = lowering_document(report, mode, source)
    write_lowering(document, report_path, model, model_path)
    return model, report, document


def lower_model_file(path, mode):
    """Read QONNX file `path` (transforms.model_file) and lower it (mode `mode`), writing nothing; returns (model,
    list of ChainLowering). BadInput for a file without quantizers and for one already lowered."""
    model = read_model_file(path)
    if not any(is_quantizer_node(node) for node in model.graph.node):
        raise BadInput(f"{path} is not a QONNX model (it has no Quant nodes); export it with `build.py export`")
    lowered_before = [node.name for node in model.graph.node if node.op_type in (MULTITHRESHOLD, PER_CHANNEL_LUT_OP)]
    model, report = lower_model(model, mode)  # read_model_file inferred the shapes
    if not report and lowered_before:
        raise BadInput(f"{path} is already lowered (no quantized function left; {len(lowered_before)} "
                       f"MultiThreshold/PerChannelLUT node(s) such as {lowered_before[0]}); build it as it is, or "
                       f"lower the exported model")
    return model, report


def lower_file_and_report(path, mode, report_path, model_path, source=None):
    """`lower_model_file` and `write_lowering` of the result; returns (model, list of ChainLowering, report dict).
    `source` (default `path`) names the input model in the report."""
    model, report = lower_model_file(path, mode)
    document = lowering_document(report, mode, path if source is None else source)
    write_lowering(document, report_path, model, model_path)
    return model, report, document
