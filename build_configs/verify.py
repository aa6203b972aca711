"""Python-mode check of any build: the HW-layer model computes what the lowered QONNX model computes, bit for bit.

Which models to compare is read from what the build ran (report/time_per_step.json, intermediate_models/), never
from step names:
- the reference is the lowered QONNX model: the last model of the build that still holds QONNX quantizers and no
  LerpPSA or KANLinear node (the output of whatever step lowered them), else the input model (already lowered, or no
  learnable function at all);
- the hardware model is the last saved model whose nodes are all HW layers (the dataflow partition's content after
  step_create_dataflow_partition), executed inside finn-plus's dataflow_parent.onnx (host-side pre/post-processing
  around one StreamingDataflowPartition) in python mode: each hls/rtl layer runs as its generic HW layer, FINN's
  python simulation of it (rtl layers have no python mode of their own).

`verify_build(out_dir, model_path, samples)` runs both on `samples` seeded random inputs (integers over the input's
datatype when it is an integer one, else standard normal values) and returns the `verification` record of
summary.json; `compare(out_dir, model_path, inputs)` does it on given inputs and returns the outputs too.

Exact equality of what the hardware computes is expected (`max_abs_diff` 0, see `compare`). The quantizers' ties
round half-to-even as in the QONNX Quant (transforms.round_half_even_thresholds), and the export makes every affine
that qonnx's RemoveIdentityOps would drop exactly the identity (export.qat.exact_identity). Known exception, at
quantizer inputs within float32 rounding of a tie: the QONNX model adds a float bias in float32, whose rounded result
can land on a tie the exact sum misses (or miss one it hits), while the integer thresholds compare the exact
accumulator.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops  # noqa: F401  (LerpPSA / PerChannelLUT execution)
from psa_finn.custom_ops.domain import KAN_LINEAR_OP, LERP_PSA_OP, is_op, is_quant_node
from psa_finn.transforms.host_output_dequant import host_output_dequant_nodes

DEFAULT_SAMPLES = 4
HW_DOMAIN_PREFIX = "finn.custom_op.fpgadataflow"
INPUT_MODEL = "input model"
PARENT_MODEL = "dataflow_parent.onnx"


def steps_run(out_dir):
    """The steps the build ran, in order (finn-plus's report/time_per_step.json)."""
    times = json.loads((Path(out_dir) / "report" / "time_per_step.json").read_text())
    return [step for step in times if step != "total_build_time"]


def _is_lowered_qonnx(model):
    nodes = model.graph.node
    return any(is_quant_node(n) for n in nodes) and not any(is_op(n, LERP_PSA_OP) or is_op(n, KAN_LINEAR_OP)
                                                             for n in nodes)


def _is_all_hw(model):
    nodes = model.graph.node
    return len(nodes) > 0 and all(n.domain.startswith(HW_DOMAIN_PREFIX) for n in nodes)


def find_compared_models(out_dir, model_path):
    """(reference name, path), (HW step name, path): the lowered QONNX model and the last all-HW model."""
    models = Path(out_dir) / "intermediate_models"
    saved = [(step, models / f"{step}.onnx") for step in steps_run(out_dir) if (models / f"{step}.onnx").is_file()]
    loaded = [(step, path, ModelWrapper(str(path))) for step, path in [(INPUT_MODEL, Path(model_path))] + saved]
    lowered = [(step, path) for step, path, model in loaded if _is_lowered_qonnx(model)]
    if not lowered:
        if any(is_op(n, LERP_PSA_OP) for n in loaded[0][2].graph.node) or len(loaded) < 2:
            raise ValueError(f"{out_dir}: no lowered QONNX model among the input and the saved intermediate models; "
                             f"lower the LerpPSA nodes (step_lower_quantized_functions) and keep "
                             f"save_intermediate_models on")
        lowered = [(INPUT_MODEL, Path(model_path))]
    hardware = [(step, path) for step, path, model in loaded if _is_all_hw(model)]
    if not hardware or not (models / PARENT_MODEL).is_file():
        raise ValueError(f"{out_dir}: no hardware model to verify (the build stopped before "
                         f"step_create_dataflow_partition, or intermediate models were not saved)")
    return lowered[-1], hardware[-1]


def python_mode(model, path):
    """Save to `path` a copy whose hls/rtl layers are their generic HW layer (FINN's python simulation)."""
    for node in model.graph.node:
        for backend in (".hls", ".rtl"):
            if node.domain.endswith(backend):
                node.domain = node.domain[: -len(backend)]
                node.op_type = node.op_type.rsplit("_", 1)[0]
    model.save(str(path))
    return path


def hw_model(out_dir, child_path, work_dir):
    """The dataflow parent with its one partition executing `child_path` in python mode (a copy in `work_dir`)."""
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (PerChannelLUT HW layer, when the model has one)

    parent_path = Path(out_dir) / "intermediate_models" / PARENT_MODEL
    parent = ModelWrapper(str(parent_path))
    partitions = parent.get_nodes_by_op_type("StreamingDataflowPartition")
    if len(partitions) != 1:
        raise ValueError(f"{parent_path}: expected one StreamingDataflowPartition, found {len(partitions)}")
    python_path = python_mode(ModelWrapper(str(child_path)), Path(work_dir) / "hw_python_mode.onnx")
    getCustomOp(partitions[0]).set_nodeattr("model", str(python_path))
    return parent


def random_inputs(model, samples, seed=0):
    """`samples` inputs [samples, *input shape without batch] for the model's first input (seeded)."""
    name = model.graph.input[0].name
    shape = model.get_tensor_shape(name)[1:]
    dtype = model.get_tensor_datatype(name)
    rng = np.random.default_rng(seed)
    if dtype != DataType["FLOAT32"] and dtype.is_integer():
        return rng.integers(dtype.min(), dtype.max() + 1, size=(samples, *shape)).astype(np.float32)
    return rng.standard_normal((samples, *shape)).astype(np.float32)


def _run(model, sample, tensor=None):
    name = model.graph.input[0].name
    context = execute_onnx(model, {name: sample[None].astype(np.float32)}, return_full_exec_context=True)
    return context[model.graph.output[0].name], context[tensor] if tensor else None


def _undo_host_tail(tail, model, outputs):
    """Outputs mapped back through the host-side dequantisation `tail` (output first), in float64."""
    values = np.asarray(outputs, dtype=np.float64)
    for node in tail:
        constant = next(model.get_initializer(name) for name in node.input if model.get_initializer(name) is not None)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = values - constant if node.op_type == "Add" else values / constant
    return values


def compare(out_dir, model_path, inputs):
    """Run the lowered QONNX model and the HW model on each inputs[i]: the verification record plus the outputs.

    `max_abs_diff` compares what the hardware computes: the dataflow partition's outputs against the lowered
    model's outputs mapped back through the host-side output dequantisation, rounded to the hardware's integer
    grid (a hardware error moves a code by at least 1). `output_max_abs_diff` is the difference of the float
    outputs: the host-side dequantisation that streamlining regrouped (scales collapsed, a Div become a Mul)
    rounds differently in float32 unless every scale is a power of two.
    """
    (reference, reference_path), (hw_step, hw_path) = find_compared_models(out_dir, model_path)
    lowered = ModelWrapper(str(reference_path))
    expected = np.concatenate([_run(lowered, x)[0] for x in inputs])
    with tempfile.TemporaryDirectory() as work_dir:
        hardware = hw_model(out_dir, hw_path, work_dir)
        partition = hardware.get_nodes_by_op_type("StreamingDataflowPartition")[0]
        tail = host_output_dequant_nodes(hardware)
        runs = [_run(hardware, x, partition.output[0]) for x in inputs]
    got, codes = (np.concatenate(parts) for parts in zip(*runs))
    expected_codes = np.round(_undo_host_tail(tail, hardware, expected)) if tail else expected
    record = {"samples": len(inputs), "max_abs_diff": float(np.nanmax(np.abs(codes - expected_codes))),
              "output_max_abs_diff": float(np.max(np.abs(got - expected))),
              "same_argmax": bool(np.array_equal(got.argmax(-1), expected.argmax(-1))),
              "reference_model": reference, "hw_model": hw_step}
    return record, {"lowered": expected, "hardware": got}


def verify_build(out_dir, model_path, samples=DEFAULT_SAMPLES):
    """The `verification` record of summary.json: samples, max_abs_diff, output_max_abs_diff, same_argmax,
    reference_model, hw_model (see `compare`)."""
    (_, reference_path), _ = find_compared_models(out_dir, model_path)
    inputs = random_inputs(ModelWrapper(str(reference_path)), samples)
    return compare(out_dir, model_path, inputs)[0]
