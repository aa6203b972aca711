"""Exact figures of a network (counts, not estimates): MACs, stored bits, and the paper's operation count.

`exact_counts(hw_model, source_model=None)` reads a model whose layers are finn-plus HW layers (a build's final
model) and returns {macs_per_frame, weight_bits, threshold_bits, table_bits, fifo_bits, paper_ops_per_frame}:

- macs_per_frame: multiply-accumulates of one frame (batch 1), the `op_mac_*` counts of the layers' own
  `get_op_and_param_counts` (MVAU: MW x MH x vectors; VVAU: channels x kernel x pixels), i.e. every MatMul, Gemm
  and Conv of the network after lowering (qonnx's `inference_cost` over the QONNX model gives the same number:
  see `qonnx_macs_per_frame`);
- weight_bits: sum of weight count x weight bits of those layers (`param_weight_<n>b`);
- threshold_bits: the stored thresholds of every Thresholding layer (rows x steps x threshold bits) and of MVAUs
  with fused activation;
- table_bits: the table entries of every table layer (`param_table_<n>b` of psa-finn's PerChannelLUT and of any
  layer that reports tables the same way) x their bits;
- fifo_bits: sum of depth x padded stream width of the StreamingFIFO nodes (0 until FIFOs are inserted and sized);
- paper_ops_per_frame (only with `source_model`, the QONNX model the build started from): the operation count of
  the paper's comparison, `paper_operation_count`.
"""

import re

import numpy as np
from qonnx.custom_op.registry import getCustomOp

from psa_finn.custom_ops.domain import is_hw_node

PARAM_BITS = re.compile(r"^param_(weight|table)_(\d+)b$")
# Operations per element of a learnable/fixed activation in the paper's count: LERP-PSA's per-activation forward
# (index computation + one interpolation: add, mul, floor, 2-op clamp, subtract, offset add, 4-op LERP = 11, the
# reference's lerp_psa_op_calculation.txt), a ReLU one max. A MAC counts as 2 operations (multiply + add).
OPS_PER_ELEMENT = {"LerpPSA": 11, "Relu": 1}
OPS_PER_MAC = 2
MAC_OPS = ("MatMul", "Gemm", "Conv")


def _op_counts(op) -> dict:
    try:
        return op.get_op_and_param_counts()
    except NotImplementedError:
        return {}


def threshold_bits(model, node) -> int:
    """Stored threshold bits of a node: elements of its threshold tensor x threshold bits (Thresholding: input 1;
    an MVAU / VVAU with fused activation: input 2; else 0)."""
    op = getCustomOp(node)
    if node.op_type.startswith("Thresholding"):
        index, dtype = 1, op.get_input_datatype(1)
    elif "noActivation" in op.get_nodeattr_types() and op.get_nodeattr("noActivation") == 0 and len(node.input) > 2:
        index, dtype = 2, model.get_tensor_datatype(node.input[2])  # as finn-plus types them (MVAU: no input 2 type)
    else:
        return 0
    thresholds = model.get_initializer(node.input[index])
    elements = thresholds.size if thresholds is not None else int(np.prod(model.get_tensor_shape(node.input[index])))
    return int(elements) * dtype.bitwidth()


def fifo_bits(model) -> int:
    """Sum of depth x padded stream width over the StreamingFIFO nodes of the model."""
    total = 0
    for node in model.graph.node:
        if node.op_type.startswith("StreamingFIFO"):
            op = getCustomOp(node)
            total += int(op.get_nodeattr("depth")) * int(op.get_instream_width_padded())
    return total


def exact_counts(hw_model, source_model=None) -> dict:
    """{macs_per_frame, weight_bits, threshold_bits, table_bits, fifo_bits, paper_ops_per_frame} (module docstring).

    paper_ops_per_frame is None without `source_model`.
    """
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers psa-finn's HW layers with qonnx)

    counts = {"macs_per_frame": 0, "weight_bits": 0, "threshold_bits": 0, "table_bits": 0}
    for node in hw_model.graph.node:
        if not is_hw_node(node):
            continue
        op = getCustomOp(node)
        counts["threshold_bits"] += threshold_bits(hw_model, node)
        for key, value in _op_counts(op).items():
            if key.startswith("op_mac_"):
                counts["macs_per_frame"] += int(value)
            match = PARAM_BITS.match(key)
            if match:
                counts[f"{match.group(1)}_bits"] += int(value) * int(match.group(2))
    counts["fifo_bits"] = fifo_bits(hw_model)
    counts["paper_ops_per_frame"] = paper_operation_count(source_model)["ops_per_frame"] \
        if source_model is not None else None
    return counts


def qonnx_macs_per_frame(model) -> int:
    """MACs of MatMul / Gemm / Conv nodes by qonnx's `inference_cost` (dense: zero weights counted)."""
    from qonnx.analysis.inference_cost import inference_cost

    cost = inference_cost(model, discount_sparsity=False)["total_cost"]
    return int(sum(v for k, v in cost.items() if k.startswith("op_mac_")))


def _with_shapes(model):
    """The model, or a shape-inferred copy when a tensor the count reads has no shape."""
    from qonnx.transformation.infer_shapes import InferShapes

    tensors = [n.output[0] for n in model.graph.node if n.op_type in OPS_PER_ELEMENT or n.op_type in MAC_OPS]
    if all(model.get_tensor_shape(t) for t in tensors):
        return model
    return model.transform(InferShapes())


def paper_operation_count(model) -> dict:
    """The paper's operation count of a QONNX / ONNX model (batch 1): 2 per MAC (qonnx `inference_cost` over
    MatMul / Gemm / Conv) plus OPS_PER_ELEMENT per output element of each activation node (LerpPSA 11, Relu 1).

    Returns {ops_per_frame, mac_ops, activation_ops, activation_elements: {op type: elements}}.
    """
    model = _with_shapes(model)
    elements = {}
    for node in model.graph.node:
        if node.op_type in OPS_PER_ELEMENT:
            elements[node.op_type] = elements.get(node.op_type, 0) + int(np.prod(model.get_tensor_shape(node.output[0])))
    mac_ops = OPS_PER_MAC * qonnx_macs_per_frame(model)
    activation_ops = sum(OPS_PER_ELEMENT[op] * n for op, n in elements.items())
    return {"ops_per_frame": mac_ops + activation_ops, "mac_ops": mac_ops, "activation_ops": activation_ops,
            "activation_elements": elements}
