"""The learned 1-D functions of an exported model, swept over every input code in each hardware form.

For one `Quant -> LerpPSA -> Quant` of a QONNX model, `sweep_lerp_psa_node` cuts that chain out into its own small
model, feeds it every input code of the input quantizer (per channel), and executes it as exported (the reference)
and after `LowerLerpPSA` in each mode: the full table, the lerp64 compressed table and, when every channel's table
is monotone, the MultiThreshold. Nothing is re-derived here: the outputs are what the lowered graphs compute.
"""

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

import psa_finn.custom_ops  # noqa: F401  (registers LerpPSA and PerChannelLUT with qonnx)
from psa_finn.custom_ops.lerp_psa import lerp_psa_numpy
from psa_finn.transforms.lower_lerp_psa import LowerLerpPSA
from psa_finn.custom_ops.domain import LERP_PSA_OP, is_op, match_quantized_function
from psa_finn.transforms.quant_params import read_quant_params

SWEPT_FORMS = {"full": "full", "lerp64": "lerp64", "MultiThreshold": "threshold"}


@dataclass
class FunctionSweep:
    """One LerpPSA node over all input codes: inputs [K, C] (real values) and outputs [K, C] per form.

    `float_outputs` is the LerpPSA function before the output quantizer. `outputs["exported"]` is the exported
    Quant -> LerpPSA -> Quant; the other keys are the lowered forms. A form that cannot represent the node
    (MultiThreshold of a non-monotone table) is in `unavailable` with the reason. `output_scale` ([] or [C]) is the
    output quantizer's step: output differences divided by it are in codes.
    """

    node: str
    codes: np.ndarray
    inputs: np.ndarray
    float_outputs: np.ndarray
    output_scale: np.ndarray
    outputs: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)


def lerp_psa_nodes(model) -> list:
    """Names of the LerpPSA nodes of a QONNX model, in graph order."""
    return [node.name for node in model.graph.node if is_op(node, LERP_PSA_OP)]


def _node(model, name):
    node = model.get_node_from_name(name)
    if not is_op(node, LERP_PSA_OP):
        raise ValueError(f"no LerpPSA node named '{name}' in the model; it has {lerp_psa_nodes(model)}")
    return node


def single_function_model(model, name, rows: int) -> ModelWrapper:
    """A model of just `Quant -> LerpPSA -> Quant` around LerpPSA node `name`, with input [1, rows, C]."""
    node = _node(model, name)
    chain = match_quantized_function(model, node)
    quant_in, quant_out = chain.quant_in, chain.quant_out
    nodes = [quant_in, node, quant_out]
    channels = model.get_initializer(node.input[1]).shape[0]
    x = helper.make_tensor_value_info(quant_in.input[0], TensorProto.FLOAT, [1, rows, channels])
    y = helper.make_tensor_value_info(quant_out.output[0], TensorProto.FLOAT, [1, rows, channels])
    initializers = [tensor for n in nodes for tensor in n.input if model.get_initializer(tensor) is not None]
    graph = helper.make_graph(nodes, f"{name}_alone", [x], [y])
    small = ModelWrapper(qonnx_make_model(graph, opset_imports=list(model.model.opset_import)))
    for tensor in initializers:
        small.set_initializer(tensor, model.get_initializer(tensor))
    return small


def _execute(model, inputs):
    shaped = model.transform(InferShapes()).transform(InferDataTypes())
    name = shaped.graph.input[0].name
    return execute_onnx(shaped, {name: inputs[None].astype(np.float32)})[shaped.graph.output[0].name][0]


def sweep_lerp_psa_node(model, name) -> FunctionSweep:
    """Execute LerpPSA node `name` and its lowered forms at every input code; see FunctionSweep."""
    node = _node(model, name)
    table, *affine = (model.get_initializer(t) for t in node.input[1:])
    chain = match_quantized_function(model, node)
    where = f"LerpPSA node '{name}'"
    quant = read_quant_params(model, chain.quant_in, table.shape[0], where)
    quant_out = read_quant_params(model, chain.quant_out, table.shape[0], where)
    codes = np.arange(quant.code_min, quant.code_max + 1)
    small = single_function_model(model, name, codes.size)
    inputs = quant.dequantize(np.broadcast_to(codes[:, None], (codes.size, table.shape[0])))
    grid_range = getCustomOp(node).get_nodeattr("grid_range")
    sweep = FunctionSweep(node=name, codes=codes, inputs=inputs,
                          float_outputs=lerp_psa_numpy(inputs, table, grid_range, *(affine or [None, None])),
                          output_scale=quant_out.scale)
    sweep.outputs["exported"] = _execute(small, inputs)
    for form, mode in SWEPT_FORMS.items():
        try:
            lowered = small.transform(InferShapes()).transform(LowerLerpPSA(mode))
        except ValueError as err:
            sweep.unavailable[form] = str(err)
            continue
        sweep.outputs[form] = _execute(lowered, inputs)
    return sweep
