"""The ONNX contract of psa-finn's qonnx ops: their domain and names, and the one matcher of a quantized function;
also the one home of the finn-plus hardware-layer domain (`HW_DOMAIN`, `is_hw_node`) and of qonnx's quantizer op types.

qonnx resolves a node's domain by importing it as a Python module, so the domain is this package's module path,
`psa_finn.custom_ops`: a file exported by psa-finn runs wherever psa-finn is installed. Files written before the
package existed carry the bare domain `custom_ops`; `upgrade_legacy_domain` rewrites them when they are loaded.

A learnable 1-D function sits in the graph as `Quant -> LerpPSA -> Quant` (`match_quantized_function`): the
input quantizer gives the codes the function is tabulated on, the output quantizer the codes it produces. An exported
model may hold shape ops between the input Quant and the function (`SHAPE_OPS`: a QuantTensor transposed, reshaped or
max-pooled on its way; `match_quantized_function(..., through_shape_ops=True)`); the lowering re-quantizes after them
(transforms.requantize_after_shape_ops).

Both ops apply table row c to index c along their channel axis: the optional int attribute `channel_axis`
(default -1, channels last, so files written before it existed keep their meaning; negative values count from the
end and are normalized against the input rank when the node executes, `normalize_channel_axis`).

Hardware layers (ours and finn-plus's) carry finn-plus's domains `HW_DOMAIN` and, once specialised,
`HLS_DOMAIN` / `RTL_DOMAIN`: SpecializeLayers and finn's analyses match those exact strings. `is_hw_node` is finn's
`is_fpgadataflow_node` restricted to them.
"""

import sys
from dataclasses import dataclass

from onnx import AttributeProto
from qonnx.util.basic import get_by_name

OPS_DOMAIN = "psa_finn.custom_ops"
LEGACY_OPS_DOMAIN = "custom_ops"
OPS_DOMAIN_VERSION = 1
LERP_PSA_OP = "LerpPSA"
PER_CHANNEL_LUT_OP = "PerChannelLUT"
KAN_LINEAR_OP = "KANLinear"
KAN_LUT_OP = "KANLUT"
# qonnx's quantizer ops (qonnx.custom_op.general): the integer ones carry a bit width as input 3
INTEGER_QUANT_OP_TYPES = ("Quant", "IntQuant")
BIPOLAR_QUANT_OP = "BipolarQuant"
QUANTIZER_OP_TYPES = INTEGER_QUANT_OP_TYPES + (BIPOLAR_QUANT_OP, "FloatQuant", "Trunc")
# finn-plus's hardware-layer domains
HW_DOMAIN = "finn.custom_op.fpgadataflow"
HLS_DOMAIN = HW_DOMAIN + ".hls"
RTL_DOMAIN = HW_DOMAIN + ".rtl"
CHANNEL_AXIS_ATTR = "channel_axis"
DEFAULT_CHANNEL_AXIS = -1
# ops that move, repeat or pick values and change none (a max of a window; a Concat of one tensor repeated): every
# value they pass on lies on the grid of the quantizer before them (`shape_op_source`)
SHAPE_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "MaxPool", "Expand", "Tile", "Concat")


def is_op(node, op_type: str) -> bool:
    """Whether `node` is psa-finn's qonnx op `op_type` (LERP_PSA_OP, PER_CHANNEL_LUT_OP, KAN_LINEAR_OP, KAN_LUT_OP)."""
    return node is not None and node.op_type == op_type and node.domain == OPS_DOMAIN


def is_quant_node(node) -> bool:
    """Whether `node` is a QONNX integer Quant node (Quant or IntQuant)."""
    return node is not None and node.op_type in INTEGER_QUANT_OP_TYPES


def is_quantizer_node(node) -> bool:
    """Whether `node` is any of qonnx's quantizer ops (integer, bipolar, float quantizers and Trunc)."""
    return node is not None and node.op_type in QUANTIZER_OP_TYPES


def is_hw_node(node) -> bool:
    """Whether `node` is a finn-plus hardware layer (ours or finn's, generic or specialised hls/rtl): finn's
    `is_fpgadataflow_node` (a registered custom op with backend "fpgadataflow") in the domain `HW_DOMAIN[.hls|.rtl]`."""
    from finn.util.fpgadataflow import is_fpgadataflow_node

    return node is not None and node.domain in (HW_DOMAIN, HLS_DOMAIN, RTL_DOMAIN) and is_fpgadataflow_node(node)


def normalize_channel_axis(axis: int, rank: int) -> int:
    """The index in 0 .. rank - 1 of channel axis `axis` (negative counts from the end) of a rank-`rank` tensor.

    ValueError when the axis is outside the tensor's axes.
    """
    if not -rank <= axis < rank:
        raise ValueError(f"{CHANNEL_AXIS_ATTR} {axis} is out of range for an input of rank {rank} (use "
                         f"{-rank} .. {rank - 1})")
    return axis % rank


def channel_axis_of(node, rank=None) -> int:
    """The `channel_axis` of op node `node` (default -1), normalized against input rank `rank` when given.

    ValueError naming the node when the attribute is not an int or (with `rank`) out of range.
    """
    where = f"{node.op_type} node '{node.name}'"
    attribute = get_by_name(node.attribute, CHANNEL_AXIS_ATTR)
    if attribute is not None and attribute.type != AttributeProto.INT:
        raise ValueError(f"{where}: {CHANNEL_AXIS_ATTR} must be an int attribute (the index of the channel "
                         f"axis, e.g. 1 for NCHW, -1 for channels last)")
    axis = DEFAULT_CHANNEL_AXIS if attribute is None else attribute.i
    if rank is None:
        return axis
    try:
        return normalize_channel_axis(axis, rank)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def shape_op_source(node):
    """The tensor whose values shape op `node` (SHAPE_OPS) passes on, or None: not a shape op, more than one output,
    or a Concat of different tensors."""
    if node is None or node.op_type not in SHAPE_OPS or len(node.output) != 1:
        return None
    if node.op_type == "Concat" and len(set(node.input)) != 1:
        return None
    return node.input[0]


@dataclass(frozen=True)
class QuantizedFunction:
    """A function node between its input and output quantizers: `quant_in -> function -> quant_out`."""

    quant_in: object
    function: object
    quant_out: object


def match_quantized_function(model, node, through_shape_ops: bool = False) -> QuantizedFunction:
    """The `Quant -> node -> Quant` chain around `node`; ValueError naming the node and the fix otherwise.

    The input Quant may feed other nodes too; the node's output must feed exactly one Quant and be no graph output.
    With `through_shape_ops`, the input Quant may sit before a chain of `SHAPE_OPS` (`quant_in` is then that Quant).
    """
    where = f"{node.op_type} node '{node.name}'"
    quant_in = model.find_producer(node.input[0])
    while through_shape_ops and shape_op_source(quant_in) is not None:
        quant_in = model.find_producer(shape_op_source(quant_in))
    if not is_quant_node(quant_in):
        raise ValueError(f"{where}: its input is not produced by a Quant node; it needs Quant -> {node.op_type} -> "
                         f"Quant (give the layer an input quantizer)")
    consumers = model.find_consumers(node.output[0])
    if len(consumers) != 1 or not is_quant_node(consumers[0]) or \
            node.output[0] in [tensor.name for tensor in model.graph.output]:
        raise ValueError(f"{where}: its output must feed exactly one Quant node; it needs Quant -> {node.op_type} -> "
                         f"Quant (give the layer an output quantizer)")
    return QuantizedFunction(quant_in, node, consumers[0])


def upgrade_legacy_domain(model, source=None) -> int:
    """Rewrite nodes of the pre-package domain `custom_ops` to `psa_finn.custom_ops`, in place.

    Returns how many nodes changed; when any did, says so in one line on stderr (naming `source`).
    """
    changed = 0
    for node in model.graph.node:
        if node.domain == LEGACY_OPS_DOMAIN:
            node.domain = OPS_DOMAIN
            changed += 1
    if changed:
        imports = model.model.opset_import
        for opset in imports:
            if opset.domain == LEGACY_OPS_DOMAIN:
                opset.domain = OPS_DOMAIN
        if not any(opset.domain == OPS_DOMAIN for opset in imports):
            imports.add(domain=OPS_DOMAIN, version=OPS_DOMAIN_VERSION)
        print(f"note: {source or 'model'}: {changed} node(s) of the old domain '{LEGACY_OPS_DOMAIN}' read as "
              f"'{OPS_DOMAIN}' (re-export or save the model to update the file)", file=sys.stderr)
    return changed
