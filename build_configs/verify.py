"""Python-mode check of a build: the HW-layer model computes what the lowered QONNX model computes.

`hw_model(out_dir, step)` rebuilds the whole network from a build directory: finn-plus's dataflow_parent.onnx (host
side pre/post-processing around one StreamingDataflowPartition) with the partition executing the intermediate HW
model of `step` (default: after specialisation) in python mode: each hls/rtl layer runs as its generic HW layer,
FINN's python simulation of it (rtl layers have no python mode of their own).
`compare_with_lowered(out_dir, inputs)` runs it, the FINN-ONNX model and the lowered QONNX model (the output of
step_lower_lerp_psa) sample by sample with qonnx's execute_onnx and reports the largest differences.
"""

from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

import custom_ops  # noqa: F401  (LerpPSA / PerChannelLUT execution)

LOWERED_STEP = "step_lower_lerp_psa"
FINN_ONNX_STEP = "step_qonnx_to_finn"
HW_STEP = "step_specialize_layers"


def hw_model(out_dir, step=HW_STEP):
    """The dataflow parent with its partition executing intermediate_models/<step>.onnx."""
    models = Path(out_dir) / "intermediate_models"
    parent = ModelWrapper(str(models / "dataflow_parent.onnx"))
    partitions = parent.get_nodes_by_op_type("StreamingDataflowPartition")
    if len(partitions) != 1:
        raise ValueError(f"{models / 'dataflow_parent.onnx'}: expected one StreamingDataflowPartition, "
                         f"found {len(partitions)}")
    child = models / f"{step}.onnx"
    if not child.exists():
        raise FileNotFoundError(f"{child} does not exist: the build did not run {step}")
    getCustomOp(partitions[0]).set_nodeattr("model", str(python_mode(ModelWrapper(str(child)), child)))
    return parent


def python_mode(model, path):
    """Save beside `path` a copy whose hls/rtl layers are their generic HW layer (FINN's python simulation)."""
    for node in model.graph.node:
        for backend in (".hls", ".rtl"):
            if node.domain.endswith(backend):
                node.domain = node.domain[: -len(backend)]
                node.op_type = node.op_type.rsplit("_", 1)[0]
    python_path = Path(path).with_suffix(".python.onnx")
    model.save(str(python_path))
    return python_path


def _run(model, sample):
    name = model.graph.input[0].name
    return execute_onnx(model, {name: sample[None].astype(np.float32)})[model.graph.output[0].name]


def compare_with_lowered(out_dir, inputs, step=HW_STEP):
    """Run the HW model, the FINN-ONNX model (after step_qonnx_to_finn) and the lowered QONNX model on each inputs[i].

    Returns the largest output differences. The HW model must equal the FINN-ONNX model exactly: from there on every
    step is integer-exact. The QONNX model differs where a quantizer input sits exactly on a rounding tie (frequent
    with power-of-two scales): its Quant rounds half-to-even (ROUND, computed in float32, so a tie can also land a
    few ULP either side), FINN's thresholds round half up (stock step_qonnx_to_finn). Expect single codes to differ
    there and the classes to agree.
    """
    import custom_ops.fpgadataflow  # noqa: F401  (PerChannelLUT HW layer, when the model has one)

    models = Path(out_dir) / "intermediate_models"
    outputs = {}
    for name, model in (("lowered", ModelWrapper(str(models / f"{LOWERED_STEP}.onnx"))),
                        ("finn_onnx", ModelWrapper(str(models / f"{FINN_ONNX_STEP}.onnx"))),
                        ("hardware", hw_model(out_dir, step))):
        outputs[name] = np.concatenate([_run(model, x) for x in inputs])
    return {"samples": len(inputs),
            "hw_vs_finn_onnx_max_abs_diff": float(np.max(np.abs(outputs["hardware"] - outputs["finn_onnx"]))),
            "hw_vs_lowered_max_abs_diff": float(np.max(np.abs(outputs["hardware"] - outputs["lowered"]))),
            "same_argmax_as_lowered": bool(np.array_equal(outputs["hardware"].argmax(-1),
                                                          outputs["lowered"].argmax(-1))),
            "outputs": outputs}
