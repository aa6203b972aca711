"""The learned 1-D functions of an exported model, swept over every input code in each hardware form.

For one `Quant -> LerpPSA -> Quant` of a QONNX model, `sweep_lerp_psa_node` cuts that chain out into its own small
model, feeds it every input code of the input quantizer (per channel, on the node's channel axis), and executes it
as exported (the reference) and after `lower_quantized_functions` in each mode: the full table, the lerp64
compressed table and, when every channel's table rises, the MultiThreshold. Nothing is re-derived here: the
outputs are what the lowered graphs compute.
"""

from copy import deepcopy
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
from psa_finn.custom_ops.domain import LERP_PSA_OP, channel_axis_of, is_op, match_quantized_function
from psa_finn.custom_ops.lerp_psa import lerp_psa_numpy
from psa_finn.transforms.channel_geometry import ChannelGeometry
from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS, lower_quantized_functions
from psa_finn.transforms.quant_params import read_quant_params
from psa_finn.transforms.requantize_after_shape_ops import RequantizeAfterShapeOps

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


def _requantized(model):
    """A copy of `model` in which every LerpPSA reads its quantizer directly (transforms.requantize_after_shape_ops:
    a QuantTensor transposed, flattened or max-pooled into the layer)."""
    model = deepcopy(model)
    RequantizeAfterShapeOps().apply(model)
    return model


def _node(model, name):
    node = model.get_node_from_name(name)
    if not is_op(node, LERP_PSA_OP):
        raise ValueError(f"no LerpPSA node named '{name}' in the model; it has {lerp_psa_nodes(model)}")
    return node


def _geometry(model, node):
    shape = model.get_tensor_shape(node.input[0]) or model.transform(InferShapes()).get_tensor_shape(node.input[0])
    return ChannelGeometry(list(shape), channel_axis_of(node, len(shape)))


def single_function_model(model, name, rows: int) -> ModelWrapper:
    """A model of just `Quant -> LerpPSA -> Quant` around LerpPSA node `name` whose input holds `rows` inputs of each
    channel (`ChannelGeometry.to_tensor` of a [rows, C] array)."""
    model = _requantized(model)
    node = _node(model, name)
    chain = match_quantized_function(model, node)
    nodes = [chain.quant_in, node, chain.quant_out]
    geometry = _geometry(model, node)
    shape = list(geometry.to_tensor(np.zeros((rows, geometry.channels))).shape)
    x = helper.make_tensor_value_info(chain.quant_in.input[0], TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info(chain.quant_out.output[0], TensorProto.FLOAT, shape)
    initializers = [tensor for n in nodes for tensor in n.input if model.get_initializer(tensor) is not None]
    graph = helper.make_graph(nodes, f"{name}_alone", [x], [y])
    small = ModelWrapper(qonnx_make_model(graph, opset_imports=list(model.model.opset_import)))
    for tensor in initializers:
        small.set_initializer(tensor, model.get_initializer(tensor))
    return small.transform(InferShapes()).transform(InferDataTypes())


def _execute(model, geometry, inputs):
    name = model.graph.input[0].name
    outputs = execute_onnx(model, {name: geometry.to_tensor(inputs.astype(np.float32))})
    return geometry.from_tensor(outputs[model.graph.output[0].name])


def sweep_lerp_psa_node(model, name) -> FunctionSweep:
    """Execute LerpPSA node `name` and its lowered forms at every input code; see FunctionSweep."""
    model = _requantized(model)
    node = _node(model, name)
    table, *affine = (model.get_initializer(t) for t in node.input[1:])
    chain = match_quantized_function(model, node)
    where = f"LerpPSA node '{name}'"
    geometry = _geometry(model, node)
    quant = read_quant_params(model, chain.quant_in, where, geometry.shape, geometry.axis)
    quant_out = read_quant_params(model, chain.quant_out, where, geometry.shape, geometry.axis)
    codes = np.arange(quant.code_min, quant.code_max + 1)
    small = single_function_model(model, name, codes.size)
    inputs = quant.dequantize(np.broadcast_to(codes[:, None], (codes.size, geometry.channels)))
    grid_range = getCustomOp(node).get_nodeattr("grid_range")
    sweep = FunctionSweep(node=name, codes=codes, inputs=inputs,
                          float_outputs=lerp_psa_numpy(inputs, table, grid_range, *(affine or [None, None])),
                          output_scale=quant_out.scale)
    sweep.outputs["exported"] = _execute(small, geometry, inputs)
    for form, mode in SWEPT_FORMS.items():
        try:
            lowered, report = lower_quantized_functions(ModelWrapper(deepcopy(small.model)), mode)
        except ValueError as err:
            sweep.unavailable[form] = str(err)
            continue
        if report[0].form in KEPT_FORMS:
            sweep.unavailable[form] = report[0].reason
            continue
        sweep.outputs[form] = _execute(lowered, geometry, inputs)
    return sweep
