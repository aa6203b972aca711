"""Reading a QONNX (or lowered) model file for `lower` and `build`, checked before any output is touched.

`read_model_file(path)` returns the ModelWrapper or raises BadInput (exit 2) with one line naming the file, the node
and what to do, for: a missing file or a folder, a file that is not ONNX (a .pt checkpoint, a truncated download),
an initializer holding NaN or inf, an activation Quant outside the 2..8 bits psa-finn builds (common/bit_widths.py),
a LerpPSA whose table does not fit its input, a graph whose shapes do not infer, a float model (no quantizer at
all: FINN would build nothing from it), a learnable function traced into plain ONNX ops (Brevitas' own
`export_qonnx` instead of `psa_finn.export.export_qonnx`: a Floor node) and a layer whose quantized weights are all
zero (a fixed weight scale far above the weights, e.g. brevitas_examples' CommonWeightQuant (scale 1.0) on PyTorch's
default initialisation: finn-plus's step_minimize_bit_width then sizes its accumulator to 0 bits and stops), a
layer that reads the float graph input with no quantizer between them (a network without its input quantizer: the
layer would stay off the hardware) and an ONNX opset newer than the installed onnx knows (onnxruntime cannot run it).
"""

import numpy as np
import onnx
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp

from psa_finn.common.bit_widths import MAX_BITS, MIN_BITS
from psa_finn.common.cli_errors import BadInput
from psa_finn.common.output_paths import require_input_file
from psa_finn.custom_ops.domain import (BIPOLAR_QUANT_OP, INTEGER_QUANT_OP_TYPES, KAN_LINEAR_OP, LERP_PSA_OP,
                                        PER_CHANNEL_LUT_OP,
                                        QUANTIZER_OP_TYPES, channel_axis_of, is_op, is_quant_node, upgrade_legacy_domain)
from psa_finn.custom_ops.lerp_psa import check_lerp_psa_inputs
from psa_finn.transforms.fan_out_as_matmul import REPEATING_OPS
from psa_finn.transforms.requantize_after_shape_ops import quant_before_shape_ops

EXPORT_HINT = "export one with `build.py export`"
# Ops that quantize: a graph without any of them is a float model (qonnx's quantizers, the lowered forms, ONNX's).
QUANTIZER_OPS = (*QUANTIZER_OP_TYPES, "MultiThreshold", PER_CHANNEL_LUT_OP, "QuantizeLinear")
# The mark of a learnable 1-D function traced op by op (its segment index) rather than exported as one LerpPSA node.
TRACED_FUNCTION_OP = "Floor"
# Ops whose second input is a weight matrix or kernel that finn-plus makes an MVAU / VVAU of.
WEIGHTED_OPS = ("MatMul", "Conv", "Gemm")
# Ops that move or select values without changing them: a float tensor stays float through them.
LAYOUT_OPS = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "Pad", "Identity")


def _quant_scale(model, tensor):
    """The scalar scale of the activation Quant that produces `tensor` (through nothing else), or None."""
    producer = model.find_producer(tensor)
    if not is_quant_node(producer) or model.get_initializer(producer.input[0]) is not None:
        return None
    scale = model.get_initializer(producer.input[1])
    return None if scale is None or np.size(scale) != 1 else abs(float(np.asarray(scale).reshape(-1)[0]))


def check_residual_grids(model, source) -> None:
    """BadInput naming the Add that joins two quantized branches whose scales are not an integer multiple of each
    other (a default float-scaled QuantReLU beside a power-of-two one): the sum lies on no grid, so the hardware's
    thresholds cannot round its ties as the QONNX Quant does (transforms/round_half_even_thresholds.py)."""
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        scales = [_quant_scale(model, name) for name in node.input]
        if None in scales or min(scales) == 0:
            continue
        ratio = max(scales) / min(scales)
        if ratio != np.round(ratio):
            raise BadInput(f"{source}: Add node '{node.name}' joins branches quantized with scales {scales[0]:.6g} "
                           f"and {scales[1]:.6g} (ratio {ratio:.6g}, not an integer), so the hardware cannot round "
                           f"the sum's ties as QONNX does; give both branches power-of-two scales (e.g. "
                           f"QuantReLU(act_quant=psa_finn.nn.quantizers.UnsignedActQuant))")


def check_quantized(model, source) -> None:
    """BadInput for a float model (no quantizer) and for a learnable function traced into plain ops (a Floor)."""
    ops = {node.op_type for node in model.graph.node}
    if not ops & set(QUANTIZER_OPS):
        raise BadInput(f"{source}: not a QONNX model but a float one (no Quant node: ops "
                       f"{', '.join(sorted(ops)[:6])}); FINN builds quantized networks: quantize it with Brevitas layers (psa_finn.nn for learnable functions) "
                       f"and export it with psa_finn.export.export_qonnx ({EXPORT_HINT} for a ResMLP)")
    traced = next((node for node in model.graph.node if node.op_type == TRACED_FUNCTION_OP), None)
    if traced is not None:
        raise BadInput(f"{source}: node '{traced.name}' ({TRACED_FUNCTION_OP}) is a learnable function traced into "
                       f"plain ONNX ops, as Brevitas' own export_qonnx writes it; export with "
                       f"psa_finn.export.export_qonnx, which writes it as one LerpPSA node that lowering tabulates")


def _raw_graph_input(model, tensor):
    """The float graph input that `tensor` is (through layout ops only, no quantizer), else None."""
    while True:
        producer = model.find_producer(tensor)
        if producer is None:
            graph_inputs = {value.name for value in model.graph.input}
            float_input = tensor in graph_inputs and model.get_tensor_datatype(tensor) == DataType["FLOAT32"]
            return tensor if float_input else None
        if producer.op_type not in LAYOUT_OPS:
            return None
        tensor = producer.input[0]


def check_input_quantized(model, source) -> None:
    """BadInput naming the first MatMul / Conv / Gemm that reads the float graph input with no quantizer between
    them (a network without its input quantizer): finn-plus makes no hardware layer of it, and the build would end
    in exit 1 'nodes left off the hardware'. A graph input annotated with an integer datatype counts as quantized."""
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        raw = _raw_graph_input(model, node.input[0])
        if raw is not None:
            raise BadInput(f"{source}: {node.op_type} node '{node.name}' reads the float input '{raw}' with no "
                           f"quantizer before it, so it cannot go on the hardware; give the network an input "
                           f"quantizer (e.g. QuantIdentity(act_quant=psa_finn.nn.quantizers.SignedActQuant, "
                           f"return_quant_tensor=True) as its first layer) and export it again")


def check_opset(model, source) -> None:
    """BadInput when the model's ONNX opset is newer than the installed onnx knows (onnxruntime cannot load it, and
    the build would only find out in its verification)."""
    newest = onnx.defs.onnx_opset_version()
    opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset > newest:
        raise BadInput(f"{source}: ONNX opset {opset} is newer than the installed onnx {onnx.__version__} knows "
                       f"(up to {newest}); export it again with an opset of at most {newest} (export_qonnx writes "
                       f"one that works)")


def _quantized_constant(model, quant):
    """What Quant node `quant` outputs when every input is an initializer (a quantized weight), else None."""
    context = {name: model.get_initializer(name) for name in quant.input}
    if any(value is None for value in context.values()):
        return None
    getCustomOp(quant).execute_node(context, model.graph)
    return context[quant.output[0]]


def check_weights_not_all_zero(model, source) -> None:
    """BadInput naming the first MatMul / Conv / Gemm whose quantized weights are all zero: the layer outputs a
    constant and finn-plus sizes its accumulator to 0 bits (an assertion "Factor and x are <= 0" in
    step_minimize_bit_width). It happens when a fixed weight scale lies far above the weights."""
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        quant = model.find_producer(node.input[1])
        if not is_quant_node(quant):
            continue
        weights = _quantized_constant(model, quant)
        if weights is None or np.any(weights != 0):
            continue
        largest = float(np.max(np.abs(model.get_initializer(quant.input[0]))))
        scale = float(np.max(np.abs(model.get_initializer(quant.input[1]))))
        raise BadInput(f"{source}: {node.op_type} node '{node.name}': every weight of '{quant.input[0]}' quantizes to "
                       f"0 (Quant node '{quant.name}': largest weight {largest:.3g}, scale {scale:.3g}), so the layer "
                       f"computes nothing and finn-plus cannot size it; initialise the weights on the quantizer's "
                       f"scale (brevitas_examples' CNV: nn.init.uniform_(weight, -1, 1) for CommonWeightQuant) and "
                       f"train, or use a weight quantizer whose scale follows the weights (e.g. "
                       f"psa_finn.nn.quantizers.ChannelWeightQuant)")


def check_functions_not_read_through_reshapes(model, source) -> None:
    """BadInput (for a build) naming the first LerpPSA / KANLinear that reads its quantizer through a Flatten or
    Reshape (not a fan-out, which becomes a MatMul): `lower` lowers it exactly, but the build fails (a CNN's
    Transpose -> Flatten and the scale before it stay off the hardware; an MLP's Flatten leaves the LUT layer with
    the unflattened shape)."""
    for node in model.graph.node:
        if not (is_op(node, LERP_PSA_OP) or is_op(node, KAN_LINEAR_OP)):
            continue
        found = quant_before_shape_ops(model, node.input[0])
        if found is None or any(op.op_type in REPEATING_OPS for op in found[1]):
            continue
        reshape = next((op for op in found[1] if op.op_type in ("Flatten", "Reshape")), None)
        if reshape is not None:
            raise BadInput(f"{source}: {node.op_type} node '{node.name}' reads Quant node '{found[0].name}' through "
                           f"{reshape.op_type} node '{reshape.name}': psa-finn builds a function read through a "
                           f"Transpose or MaxPool, not through a Flatten or Reshape; apply the function "
                           f"before the {reshape.op_type} (e.g. QuantLerpPSA(C, channel_dim=1) on [N, C, H, W]) and "
                           f"flatten its output (`lower` lowers this model exactly)")


def _consumer(model, tensor: str) -> str:
    node = model.find_consumer(tensor)
    return f"{node.op_type} node '{node.name}'" if node is not None else "no node"


def check_finite_initializers(model, source) -> None:
    """BadInput naming the first float initializer that holds NaN or inf, and the node that reads it."""
    for init in model.graph.initializer:
        values = model.get_initializer(init.name)
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise BadInput(f"{source}: initializer '{init.name}' (read by {_consumer(model, init.name)}) holds {bad} "
                           f"NaN/inf value(s); re-export from a finite checkpoint")


def _bits_of(model, node):
    """The bit width of a quantizer node (None when it is not a constant)."""
    if node.op_type == BIPOLAR_QUANT_OP:
        return 1.0
    bits = model.get_initializer(node.input[3]) if len(node.input) > 3 else None
    return None if bits is None else float(np.asarray(bits).reshape(-1)[0])


def check_quant_bits(model, source) -> None:
    """BadInput naming the first activation quantizer (a Quant of a computed tensor, which finn-plus turns into
    thresholds and psa-finn into tables) outside MIN_BITS..MAX_BITS. Quantizers of constants (weights, 32-bit
    biases) are finn-plus's to fold and are not checked here."""
    for node in model.graph.node:
        if node.op_type not in (*INTEGER_QUANT_OP_TYPES, BIPOLAR_QUANT_OP) or \
                model.get_initializer(node.input[0]) is not None:
            continue
        bits = _bits_of(model, node)
        if bits is not None and not MIN_BITS <= bits <= MAX_BITS:
            unit = "bit" if bits == 1 else "bits"
            raise BadInput(f"{source}: {node.op_type} node '{node.name}' quantizes activations to {bits:g} {unit}; "
                           f"psa-finn builds {MIN_BITS}- to {MAX_BITS}-bit activations: give that quantizer a "
                           f"bit_width of {MIN_BITS}..{MAX_BITS} (`build.py export --bits` for the ResMLP)")


def check_single_sample_input(model, source) -> None:
    """BadInput unless every graph input has batch size 1: a FINN dataflow build streams one sample at a time."""
    for tensor in model.graph.input:
        shape = model.get_tensor_shape(tensor.name)
        if model.get_initializer(tensor.name) is None and shape and shape[0] != 1:
            raise BadInput(f"{source}: input '{tensor.name}' has shape {list(shape)}, but a FINN build takes one "
                           f"sample at a time (batch 1): export with an example input of shape [1, ...] (e.g. "
                           f"`export_qonnx(model, x[:1], path)`)")


def check_lerp_psa_tables(model, source) -> None:
    """BadInput naming the first LerpPSA whose table [C, G] (or in_scale/in_bias [C]) does not fit its input, or
    whose grid_range is not a finite positive number."""
    for node in model.graph.node:
        if not is_op(node, "LerpPSA"):
            continue
        where = f"{source}: LerpPSA node '{node.name}'"
        table = model.get_initializer(node.input[1]) if len(node.input) > 1 else None
        if table is None:
            raise BadInput(f"{where}: its table must be a constant [channels, grid points >= 2]; re-export the model")
        affine = [model.get_initializer(name) for name in node.input[2:4]] if len(node.input) == 4 else [None, None]
        grid_range = next((a.f for a in node.attribute if a.name == "grid_range"), None)
        try:
            check_lerp_psa_inputs(model.get_tensor_shape(node.input[0]) or None, table.shape, channel_axis_of(node),
                                  *affine, grid_range=grid_range)
        except ValueError as err:
            raise BadInput(f"{where}: {err}; the table disagrees with the graph: re-export the model") from err


def read_model_file(path, flag: str = "--model"):
    """The checked ModelWrapper of an ONNX file (legacy-domain nodes upgraded); BadInput naming the problem."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    path = require_input_file(path, flag, "ONNX model")
    try:
        model = ModelWrapper(str(path))
    except Exception as err:
        raise BadInput(f"{flag} {path} is not an ONNX model or is truncated ({type(err).__name__}: "
                       f"{' '.join(str(err).split())[:120]}); pass the .onnx file written by `build.py export` (a .pt "
                       f"checkpoint is exported first)") from err
    if not model.graph.node:
        raise BadInput(f"{flag} {path}: the ONNX graph has no nodes; {EXPORT_HINT}")
    upgrade_legacy_domain(model, path)
    check_opset(model, path)
    check_finite_initializers(model, path)
    check_quantized(model, path)
    check_input_quantized(model, path)
    check_quant_bits(model, path)
    check_residual_grids(model, path)
    check_weights_not_all_zero(model, path)
    try:
        model = model.transform(InferShapes())
    except Exception as err:
        raise BadInput(f"{path}: shapes do not infer ({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
                       f"{EXPORT_HINT}") from err
    check_lerp_psa_tables(model, path)
    return model
