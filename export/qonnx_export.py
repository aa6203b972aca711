"""Any Brevitas model -> QONNX file: `export_qonnx(model, example_input, path)`.

Brevitas' TorchScript QONNX export (with psa-finn's op domain registered), qonnx clean-up (readable tensor names
`global_in`, `global_out`, shapes inferred; a node reading one tensor twice, `torch.cat([x, x])`, keeps both uses:
qonnx's `rename_tensor` renames only a node's first use of a tensor, so each further use reads it through an Identity
during the clean-up), then checks before the file appears (written atomically):
  - every `psa_finn.custom_ops::LerpPSA` node sits as `Quant -> LerpPSA -> Quant` (QuantLerpPSA / QuantBSpline with
    both quantizers), whatever its channel axis, and every `KANLinear` as `Quant -> KANLinear -> Quant`
    (QuantKANLinear); shape ops between the input Quant and the function (a QuantTensor transposed, flattened or
    max-pooled before the layer, `custom_ops.domain.SHAPE_OPS`) stay in the file, and the lowering re-quantizes after
    them;
  - the ONNX checker passes;
  - qonnx `execute_onnx` of the file on `example_input` equals the torch model in eval mode (every output, within
    `tolerance` times the output's largest magnitude; a model whose scales are powers of two and whose biases sit
    on the accumulator grid matches bit for bit). A mismatch raises `ExportMismatch` naming the first differing
    output; nothing is written.
"""

from pathlib import Path

import numpy as np
import onnx
import torch
from brevitas.export import export_qonnx as brevitas_export_qonnx
from brevitas.quant_tensor import QuantTensor
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.cleanup import cleanup_model

import psa_finn.custom_ops  # noqa: F401  (registers the LerpPSA op for shape and datatype inference)
from psa_finn.common.atomic_files import atomic_path
from psa_finn.common.cli_errors import EXIT_REJECTED, PsaFinnError
from psa_finn.custom_ops.domain import KAN_LINEAR_OP, LERP_PSA_OP, OPS_DOMAIN, OPS_DOMAIN_VERSION, is_op, \
    match_quantized_function
from psa_finn.models.finite_parameters import check_finite_parameters
from psa_finn.nn.quant_kan_linear import QuantKANLinear
from psa_finn.nn.quant_table_function import QuantTableFunction

DEFAULT_TOLERANCE = 1e-5


class ExportMismatch(PsaFinnError, RuntimeError):
    """The exported graph does not compute what the torch model computes (exit 1: a verification mismatch)."""

    exit_code = EXIT_REJECTED


def _as_tuple(value):
    """A model's inputs or outputs as a tuple (a QuantTensor, itself a tuple, counts as one)."""
    return tuple(value) if isinstance(value, (tuple, list)) and not isinstance(value, QuantTensor) else (value,)


def _numpy(value):
    if isinstance(value, QuantTensor):
        value = value.value
    return value.detach().cpu().numpy()


class _TensorOutputs(torch.nn.Module):
    """`model` with QuantTensor outputs given as their values (one graph output each, not four)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        outputs = self.model(*inputs)
        values = tuple(out.value if isinstance(out, QuantTensor) else out for out in _as_tuple(outputs))
        return values if len(values) > 1 else values[0]


def export_qonnx(model: torch.nn.Module, example_input, path, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Export `model` (any nn.Module of Brevitas layers, QuantLerpPSA, QuantBSpline, QuantKANLinear) traced on `example_input` (a
    tensor or a tuple of tensors) to the QONNX file `path`, checked as the module docstring says; returns the path.

    The model is exported in eval mode and left in the mode it was in; QuantTensor outputs become their values.
    """
    check_finite_parameters(model, type(model).__name__)
    inputs = _as_tuple(example_input)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = [_numpy(out) for out in _as_tuple(model(*inputs))]
        with atomic_path(path, suffix=".onnx") as tmp:
            functions = any(isinstance(m, (QuantTableFunction, QuantKANLinear)) for m in model.modules())
            brevitas_export_qonnx(_TensorOutputs(model), args=example_input, export_path=tmp, dynamo=False,
                                  custom_opsets={OPS_DOMAIN: OPS_DOMAIN_VERSION} if functions else {})
            exported = _join_repeated_inputs(cleanup_model(_split_repeated_inputs(ModelWrapper(tmp))))
            _check_graph(exported)
            _check_outputs(exported, inputs, expected, tolerance, path)
            exported.save(tmp)
    finally:
        model.train(training)
    return Path(path)


def _split_repeated_inputs(model: ModelWrapper) -> ModelWrapper:
    """Each further use of a tensor by one node (a Concat of a repeated input) reads it through its own Identity."""
    for node in list(model.graph.node):
        for position, name in enumerate(node.input):
            if name and name in node.input[:position]:
                copy = model.make_new_valueinfo_name()
                model.graph.node.insert(list(model.graph.node).index(node),
                                        onnx.helper.make_node("Identity", [name], [copy]))
                node.input[position] = copy
    return model


def _join_repeated_inputs(model: ModelWrapper) -> ModelWrapper:
    """Undo `_split_repeated_inputs`: every Identity whose consumers also read its input is bypassed and removed."""
    for identity in [node for node in model.graph.node if node.op_type == "Identity"]:
        consumers = model.find_consumers(identity.output[0])
        if consumers and all(identity.input[0] in consumer.input for consumer in consumers):
            for consumer in consumers:
                consumer.input[:] = [identity.input[0] if name == identity.output[0] else name
                                     for name in consumer.input]
            model.graph.node.remove(identity)
    return model


def _check_graph(model: ModelWrapper):
    """Every LerpPSA and KANLinear node between its Quants (ValueError naming the node otherwise), and the ONNX
    checker."""
    for node in model.graph.node:
        if is_op(node, LERP_PSA_OP) or is_op(node, KAN_LINEAR_OP):
            match_quantized_function(model, node, through_shape_ops=True)
    onnx.checker.check_model(model.model)


def _check_outputs(model: ModelWrapper, inputs, expected, tolerance: float, path):
    """ExportMismatch naming the first output of `model` that differs from `expected` on `inputs`."""
    feed = {tensor.name: _numpy(x).astype(np.float32) for tensor, x in zip(model.graph.input, inputs)}
    produced = execute_onnx(model, feed)
    for tensor, reference in zip(model.graph.output, expected):
        output = produced[tensor.name]
        if output.shape != reference.shape:
            raise ExportMismatch(f"{path}: the exported output '{tensor.name}' has shape {list(output.shape)}, the "
                                 f"torch model's {list(reference.shape)}")
        difference = np.abs(output.astype(np.float64) - reference.astype(np.float64))
        allowed = tolerance * max(1.0, float(np.abs(reference).max(initial=0.0)))
        if not difference.max(initial=0.0) <= allowed:
            index = np.unravel_index(int(np.argmax(difference)), difference.shape)
            raise ExportMismatch(f"{path}: qonnx execution of the exported output '{tensor.name}' differs from the "
                                 f"torch model on example_input: {output[index]} != {reference[index]} at "
                                 f"{list(index)} (max |difference| {difference.max():.3g}, allowed {allowed:.3g}); "
                                 f"nothing was written")
