"""Remove requantizer layers that are the identity on every value their input type can take.

A Quant behind a 0/1 fan-out (a QuantLinear that selects its inputs, as a KAN written with the public layers has
before every function bank), a reshape or a transpose, with the scale, zero point and bit width of the quantizer in
front, re-quantizes values that already lie on its grid. The lowering keeps it (it is the input quantizer its
function is tabulated on), the FINN conversion makes it a requantizer of the integer accumulator (INT32), and only
once finn-plus's step_minimize_bit_width has narrowed that accumulator to the range its weights allow (a 0/1
selection of INT8 codes is INT8) does the requantizer read exactly its own codes: y = x on every input code, which
`RemoveIdentityRequantizers` then bypasses. Removing the Quant earlier, during lowering, would leave the function's
table (built for the INT8 codes) on a tensor typed INT32 until then, which PerChannelLUT refuses.

A layer is removed when its input and output DataTypes are equal and its step positions are the codes themselves:
IntegerRequant (custom_ops.integer_requant.step_positions, analytic) and finn-plus's Thresholding (its thresholds
rounded up to the integer grid, transforms.uniform_thresholds.threshold_positions), in every channel. A layer that
writes a graph output stays.
"""

import numpy as np
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from psa_finn.custom_ops.domain import is_hw_node
from psa_finn.custom_ops.fpgadataflow import IntegerRequant
from psa_finn.custom_ops.integer_requant import step_positions
from psa_finn.transforms.convert_to_hw_layer import infer_shapes_and_datatypes
from psa_finn.transforms.uniform_thresholds import threshold_positions


def _identity_positions(out_min, out_max, in_min, in_max):
    """The step positions of y = x: code c starts at x = c (clamped to the input range)."""
    return np.clip(np.arange(out_min + 1, out_max + 1), in_min, in_max + 1)


def is_identity_requantizer(model, node):
    """True for an IntegerRequant or Thresholding HW node that outputs its input on every code of its input type."""
    if not is_hw_node(node):
        return False
    layer = getCustomOp(node)
    idt, odt = layer.get_input_datatype(0), layer.get_output_datatype()
    if idt != odt or not idt.is_integer():
        return False
    in_min, in_max = int(idt.min()), int(idt.max())
    if isinstance(layer, IntegerRequant):
        out_min, out_max = layer.get_nodeattr("OutMin"), layer.get_nodeattr("OutMax")
        if out_min > in_min or out_max < in_max:
            return False
        expected = _identity_positions(out_min, out_max, in_min, in_max)
        return all(np.array_equal(step_positions(int(m), int(b), layer.get_nodeattr("Shift"),
                                                 layer.get_nodeattr("Rounding"), out_min, out_max, in_min, in_max),
                                  expected)
                   for m, b in zip(layer.multipliers(), layer.biases()))
    if node.op_type.startswith("Thresholding"):
        thresholds = model.get_initializer(node.input[1])
        if thresholds is None:
            return False
        out_min = int(layer.get_nodeattr("ActVal"))
        out_max = out_min + thresholds.shape[-1]
        if out_min > in_min or out_max < in_max:
            return False
        positions = threshold_positions(thresholds, in_min, in_max)
        return bool(np.all(positions == _identity_positions(out_min, out_max, in_min, in_max)[None, :]))
    return False


class RemoveIdentityRequantizers(Transformation):
    """Bypass every requantizer layer that is the identity on its input type (see the module docstring)."""

    def apply(self, model):
        """Remove all such layers in one pass; their consumers read the layer's input."""
        graph = model.graph
        outputs = {o.name for o in graph.output}
        graph_modified = False
        for node in list(graph.node):
            if node.output[0] in outputs or not is_identity_requantizer(model, node):
                continue
            for consumer in model.find_consumers(node.output[0]):
                for index, name in enumerate(consumer.input):
                    if name == node.output[0]:
                        consumer.input[index] = node.input[0]
            graph.node.remove(node)
            graph_modified = True
        if graph_modified:
            model = infer_shapes_and_datatypes(model)
        return model, graph_modified
