"""Lower a model and write what each quantized function became: the one lower-and-report of `lower`, the build's
`step_lower_quantized_functions` and the sweeps' trials.

`lower_and_report(model, mode, report_path, model_path=None, source=None)` lowers every quantized function
(transforms.lower_quantized_functions), re-infers shapes and datatypes and writes the report, and the lowered model
when `model_path` is given, atomically and together (common.atomic_files.atomic_paths): both files are new, or
(after any error) both are as they were. The report (`lowering_document`) lists per chain, named by its function
node, the form chosen or why it stays, whether its tables are monotone, the entries stored per channel and the
lerp64 error against the full table in output codes. `lower_model_file(path, mode)` reads a checked QONNX file
(transforms.model_file) and lowers it without writing anything.
"""

import json
from collections import Counter
from dataclasses import asdict

from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from psa_finn.common.atomic_files import atomic_paths
from psa_finn.common.cli_errors import BadInput
from psa_finn.custom_ops.domain import is_quantizer_node
from psa_finn.transforms.lower_quantized_functions import lower_quantized_functions
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


def lower_and_report(model, mode, report_path, model_path=None, source=None):
    """Lower `model` (mode `mode`), write its report to `report_path` (and the lowered model to `model_path`, both
    atomically together); returns (lowered model, list of ChainLowering, report dict). `source` names the input
    model in the report."""
    model, report = lower_model(model, mode)
    document = lowering_document(report, mode, source)
    paths = (report_path,) if model_path is None else (report_path, model_path)
    with atomic_paths(*paths) as temporaries:
        with open(temporaries[0], "w") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
        if model_path is not None:
            model.save(str(temporaries[1]))
    return model, report, document


def read_quantized_model(path):
    """The checked ModelWrapper of QONNX file `path` (transforms.model_file); BadInput when it has no quantizer."""
    model = read_model_file(path)
    if not any(is_quantizer_node(node) for node in model.graph.node):
        raise BadInput(f"{path} is not a QONNX model (it has no Quant nodes); export it with `build.py export`")
    return model


def lower_model_file(path, mode):
    """Read QONNX file `path` (read_quantized_model) and lower it (mode `mode`), writing nothing; returns (model,
    list of ChainLowering)."""
    return lower_model(read_quantized_model(path), mode)
