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

`verify_build(out_dir, model_path, samples, inputs)` runs both on the user's `inputs` (`build --verify-data`), else
on `samples` seeded random inputs (`random_inputs`: on the grid of the input quantizer and on its rounding ties) and
returns the `verification` record of summary.json; `compare(out_dir, model_path, inputs)` does it on given inputs and
returns the outputs too. Integer outputs must agree in codes, float outputs to their float32 precision (`compare`).
Agreement holds for the inputs tried: with float (not power-of-two) scales a float threshold and the integer one can
still part on an input none of them hit.

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
from qonnx.util.basic import gen_finn_dt_tensor

import psa_finn.custom_ops  # noqa: F401  (LerpPSA / PerChannelLUT execution)
from psa_finn.custom_ops.domain import KAN_LINEAR_OP, LERP_PSA_OP, is_op, is_quant_node
from psa_finn.transforms.host_output_dequant import host_output_dequant_nodes

DEFAULT_SAMPLES = 32
# A float output (no integer codes to compare: a host-side Softmax, a float tail finn-plus regrouped) agrees when it
# is within this many float32 ulps of its largest magnitude: a hardware error moves an output code, far more.
FLOAT_OUTPUT_ULPS = 64
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


def _input_quantizer(model):
    """(scale, zero point, bit width, signed, narrow) of the Quant reading the model's input, or None."""
    name = model.graph.input[0].name
    for node in model.find_consumers(name) or []:
        if is_quant_node(node) and node.input[0] == name:
            values = [model.get_initializer(i) for i in node.input[1:4]]
            if any(v is None for v in values):
                return None
            attributes = {a.name: a.i for a in node.attribute}
            return (*(np.asarray(v, dtype=np.float64) for v in values[:2]), int(np.asarray(values[2]).max()),
                    bool(attributes.get("signed", 1)), bool(attributes.get("narrow", 0)))
    return None


def random_inputs(model, samples, seed=0):
    """`samples` inputs [samples, *input shape without batch] for the model's first input (seeded): integers over
    its datatype when it is an integer one; else values on the grid of the Quant reading it and halfway between
    two grid points (the rounding ties), over its whole range and a little beyond; else standard normal values."""
    name = model.graph.input[0].name
    shape = model.get_tensor_shape(name)[1:]
    dtype = model.get_tensor_datatype(name)
    rng = np.random.default_rng(seed)
    if dtype != DataType["FLOAT32"] and dtype.is_integer():
        return gen_finn_dt_tensor(dtype, (samples, *shape)).astype(np.float32)
    quantizer = _input_quantizer(model)
    if quantizer is None:
        return rng.standard_normal((samples, *shape)).astype(np.float32)
    scale, zero_point, bits, signed, narrow = quantizer
    low = -(2 ** (bits - 1)) + int(narrow) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    codes = rng.integers(low - 2, high + 3, size=(samples, *shape)) + 0.5 * rng.integers(0, 2, (samples, *shape))
    return ((codes - zero_point) * scale).astype(np.float32)


def read_verify_data(path, model_path):
    """The inputs of `build --verify-data FILE.npy`: an array [N, *input shape without batch] (a batch-1 axis
    may be kept: [N, 1, ...]); BadInput naming the flag and the shape wanted otherwise."""
    from psa_finn.common.cli_errors import BadInput

    shape = tuple(ModelWrapper(str(model_path)).get_tensor_shape(
        ModelWrapper(str(model_path)).graph.input[0].name))[1:]
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise BadInput(f"--verify-data {path}: not a numpy .npy array ({' '.join(str(err).split())[:120]}); save "
                       f"one with numpy.save") from err
    if data.ndim == len(shape) + 2 and data.shape[1] == 1:
        data = data[:, 0]
    if tuple(data.shape[1:]) != shape or len(data) == 0 or not np.issubdtype(data.dtype, np.number):
        raise BadInput(f"--verify-data {path}: array of shape {list(data.shape)} ({data.dtype}); the model takes "
                       f"[N, {', '.join(map(str, shape))}] numbers (N >= 1 samples)")
    if not np.all(np.isfinite(data)):
        raise BadInput(f"--verify-data {path}: holds NaN or infinite values; pass finite inputs")
    return data.astype(np.float32)


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


def _host_tail_is_all(hardware, partition, tail) -> bool:
    """Whether the nodes after the dataflow partition are exactly the host-side output dequantisation `tail`."""
    after, frontier = set(), list(partition.output)
    while frontier:
        for node in hardware.find_consumers(frontier.pop()) or []:
            if node.name not in after:
                after.add(node.name)
                frontier.extend(node.output)
    return after == {node.name for node in tail}


def _integer_output(hardware, tensor) -> bool:
    dtype = hardware.get_tensor_datatype(tensor)
    return dtype is not None and dtype != DataType["FLOAT32"] and dtype.is_integer()


def compare(out_dir, model_path, inputs):
    """Run the lowered QONNX model and the HW model on each inputs[i]: the verification record plus the outputs.

    Integer outputs are compared in the hardware's output codes (`compared` "output codes"): the dataflow
    partition's outputs against the lowered model's outputs mapped back through the host-side output
    dequantisation, rounded to the integer grid (a hardware error moves a code by at least 1); they must agree
    exactly. Float outputs (a host-side Softmax or float tail; `compared` "float outputs") agree within
    FLOAT_OUTPUT_ULPS float32 ulps of the output's largest magnitude (`tolerance`): float32 rounds the regrouped
    host-side arithmetic differently. `output_max_abs_diff` is the difference of the float outputs either way.
    `mismatching_samples` counts the inputs whose output disagrees (`mismatch_share` of all); `mismatch` is a
    one-line description, None when they agree.
    """
    (reference, reference_path), (hw_step, hw_path) = find_compared_models(out_dir, model_path)
    lowered = ModelWrapper(str(reference_path))
    expected = np.concatenate([_run(lowered, x)[0] for x in inputs])
    with tempfile.TemporaryDirectory() as work_dir:
        hardware = hw_model(out_dir, hw_path, work_dir)
        partition = hardware.get_nodes_by_op_type("StreamingDataflowPartition")[0]
        tail = host_output_dequant_nodes(hardware)
        in_codes = _host_tail_is_all(hardware, partition, tail) and _integer_output(hardware, partition.output[0])
        runs = [_run(hardware, x, partition.output[0]) for x in inputs]
    got, codes = (np.concatenate(parts) for parts in zip(*runs))
    output_diff = np.abs(got.astype(np.float64) - expected)
    if in_codes:
        expected_codes = np.round(_undo_host_tail(tail, hardware, expected)) if tail else expected
        diff, tolerance, compared = np.abs(codes - expected_codes), 0.0, "output codes"
    else:
        tolerance = float(FLOAT_OUTPUT_ULPS * np.finfo(np.float32).eps * max(float(np.max(np.abs(expected))), 1e-30))
        diff, compared = output_diff, "float outputs"
    per_sample = np.nan_to_num(diff.reshape(len(inputs), -1), nan=np.inf).max(axis=1)
    bad = int(np.sum(per_sample > tolerance))
    worst = float(np.max(per_sample)) if per_sample.size else 0.0
    record = {"samples": len(inputs), "compared": compared, "tolerance": tolerance,
              "max_abs_diff": worst if in_codes else None, "output_max_abs_diff": float(np.max(output_diff)),
              "mismatching_samples": bad, "mismatch_share": bad / max(len(inputs), 1),
              "same_argmax": bool(np.array_equal(got.reshape(len(inputs), -1).argmax(-1),
                                                 expected.reshape(len(inputs), -1).argmax(-1))),
              "reference_model": reference, "hw_model": hw_step, "mismatch": None}
    if bad:
        size = f"{worst:g} output codes" if in_codes else f"{worst:.3g} (tolerance {tolerance:.3g})"
        record["mismatch"] = (f"{compared} differ by up to {size} on {bad} of {len(inputs)} inputs "
                              f"({100 * bad / len(inputs):.1f}%)")
    return record, {"lowered": expected, "hardware": got}


def verify_build(out_dir, model_path, samples=DEFAULT_SAMPLES, inputs=None):
    """The `verification` record of summary.json (see `compare`) on `inputs` (the user's data), else on `samples`
    inputs drawn by `random_inputs`; `inputs_kind` says which."""
    if inputs is None:
        (_, reference_path), _ = find_compared_models(out_dir, model_path)
        inputs, kind = random_inputs(ModelWrapper(str(reference_path)), samples), "random on the input grid"
    else:
        kind = "--verify-data"
    record = compare(out_dir, model_path, inputs)[0]
    record["inputs_kind"] = kind
    return record
