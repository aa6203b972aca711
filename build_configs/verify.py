"""Python-mode check of a build: the HW-layer model computes what the lowered QONNX model computes.

`hw_model(out_dir, step)` rebuilds the whole network from a build directory: finn-plus's dataflow_parent.onnx (host
side pre/post-processing around one StreamingDataflowPartition) with the partition executing the intermediate HW
model of `step` (default: after specialisation) in python mode: each hls/rtl layer runs as its generic HW layer,
FINN's python simulation of it (rtl layers have no python mode of their own).
`compare_with_lowered(out_dir, inputs)` runs it, the streamlined model and the lowered QONNX model (the output of
step_lower_lerp_psa) sample by sample with qonnx's execute_onnx and reports the largest differences.
"""

from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops  # noqa: F401  (LerpPSA / PerChannelLUT execution)

LOWERED_STEP = "step_lower_lerp_psa"
STREAMLINED_STEP = "step_streamline_resmlp"
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
    """Run the HW model, the streamlined model and the lowered QONNX model on each inputs[i]; the largest differences.

    All three should be equal bit for bit. From the streamlined model on every step is integer-exact; up to it,
    the quantizers' ties round half-to-even as in the QONNX Quant (transforms.round_half_even_thresholds), and the
    export makes every affine that qonnx's RemoveIdentityOps would drop in the FINN conversion exactly the identity
    (export.qat.exact_identity). Known exception, at quantizer inputs within float32 rounding of a tie: the QONNX
    model adds a float bias (or BatchNorm shift/scale) in float32, whose rounded result can land on a tie the exact
    sum misses (or miss one it hits), while the integer thresholds compare the exact accumulator.
    """
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (PerChannelLUT HW layer, when the model has one)

    models = Path(out_dir) / "intermediate_models"
    outputs = {}
    for name, model in (("lowered", ModelWrapper(str(models / f"{LOWERED_STEP}.onnx"))),
                        ("streamlined", ModelWrapper(str(models / f"{STREAMLINED_STEP}.onnx"))),
                        ("hardware", hw_model(out_dir, step))):
        outputs[name] = np.concatenate([_run(model, x) for x in inputs])
    return {"samples": len(inputs),
            "hw_vs_streamlined_max_abs_diff": float(np.max(np.abs(outputs["hardware"] - outputs["streamlined"]))),
            "hw_vs_lowered_max_abs_diff": float(np.max(np.abs(outputs["hardware"] - outputs["lowered"]))),
            "same_argmax_as_lowered": bool(np.array_equal(outputs["hardware"].argmax(-1),
                                                          outputs["lowered"].argmax(-1))),
            "outputs": outputs}
