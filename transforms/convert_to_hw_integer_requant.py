"""Uniform MultiThresholds -> the IntegerRequant hardware layer, where that is exact and cheaper.

``InferIntegerRequantLayer`` replaces a channels-last MultiThreshold (integer input, out_scale 1, integer out_bias)
whose thresholds are, in every channel, a requantizer y = clip(round((M x + B) / 2^S)) on EVERY value of its input
type (transforms.uniform_thresholds proves it on the threshold positions) by an ``IntegerRequant`` node in finn-plus's
``finn.custom_op.fpgadataflow`` domain (PE=1), ready for SpecializeLayers (its RTL backend). Run it before stock
step_convert_to_hw, whose InferThresholdingLayer takes every MultiThreshold left.

Thresholds stay where they are cheaper: below ``min_output_bits`` output bits (default MIN_OUTPUT_BITS). The rule
compares the two layers' datapaths: a lane of n-bit thresholds on a K-bit input walks n binary-search stages of
K-bit comparators and holds 2^n - 1 K-bit thresholds, the requantizer a (K + log2 M)-bit adder, a rounding compare,
an increment and a clip whatever n is; at n = 1 and 2 (one or three thresholds) the comparators are the smaller
circuit, from 3 bits (seven thresholds, three stages) the requantizer is.
"""

from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

import numpy as np

from psa_finn.custom_ops.domain import HW_DOMAIN
from psa_finn.transforms.channel_axes import multithreshold_channel_axis
from psa_finn.transforms.uniform_thresholds import fit_requantizer

MIN_OUTPUT_BITS = 3


def requantizer_of(model, node):
    """The exact RequantizerFit of a channels-last MultiThreshold node, broadcast to its channels, or None."""
    thresholds = model.get_initializer(node.input[1])
    shape = model.get_tensor_shape(node.input[0])
    idt = model.get_tensor_datatype(node.input[0])
    if thresholds is None or shape is None or len(shape) < 2 or not idt.is_integer():
        return None
    op = getCustomOp(node)
    out_bias = op.get_nodeattr("out_bias")
    if op.get_nodeattr("out_scale") != 1.0 or out_bias != np.floor(out_bias):
        return None
    if multithreshold_channel_axis(model, node) != len(shape) - 1 or thresholds.shape[0] not in (1, shape[-1]):
        return None
    fit = fit_requantizer(thresholds, int(out_bias), int(idt.min()), int(idt.max()))
    if fit is None or thresholds.shape[0] == shape[-1]:
        return fit
    return type(fit)(fit.multipliers * shape[-1], fit.biases * shape[-1], fit.shift, fit.rounding, fit.out_min,
                     fit.out_max)


class InferIntegerRequantLayer(Transformation):
    """Replace every MultiThreshold that is an exact requantizer of at least ``min_output_bits`` output bits by an
    IntegerRequant hardware node (same tensor names)."""

    def __init__(self, min_output_bits: int = MIN_OUTPUT_BITS):
        """Thresholds with fewer output bits than ``min_output_bits`` stay."""
        super().__init__()
        self.min_output_bits = min_output_bits

    def apply(self, model):
        """Convert all matching nodes in one pass."""
        graph = model.graph
        graph_modified = False
        for index, node in enumerate(list(graph.node)):
            if node.op_type != "MultiThreshold":
                continue
            odt = model.get_tensor_datatype(node.output[0])
            if not odt.is_integer() or odt.bitwidth() < self.min_output_bits:
                continue
            fit = requantizer_of(model, node)
            if fit is None:
                continue
            shape = model.get_tensor_shape(node.input[0])
            hw_node = helper.make_node(
                "IntegerRequant", [node.input[0]], [node.output[0]], domain=HW_DOMAIN, backend="fpgadataflow",
                name=node.name, NumChannels=shape[-1], PE=1,
                inputDataType=model.get_tensor_datatype(node.input[0]).name, outputDataType=odt.name,
                numInputVectors=list(shape[:-1]), Multipliers=list(fit.multipliers), Biases=list(fit.biases),
                Shift=fit.shift, Rounding=fit.rounding, OutMin=fit.out_min, OutMax=fit.out_max)
            graph.node.insert(index, hw_node)
            graph.node.remove(node)
            if not model.find_consumers(node.input[1]):
                graph.initializer.remove(next(i for i in graph.initializer if i.name == node.input[1]))
            graph_modified = True
        if graph_modified:
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
        return model, graph_modified
