"""The qonnx op `PerChannelLUT`: integer codes in, integer codes out, one lookup table per channel.

Inputs: x (integer codes of inputDataType in a float container, C channels on `channel_axis`) and table [C, E]
(integers of outputDataType), or [1, E]: one row shared by every channel, as MultiThreshold's one shared row.
Attributes inputDataType, outputDataType (qonnx DataType names), mode ("full" | "lerp64") and channel_axis
(default -1, channels last; see `custom_ops.domain`); the table layouts and the lookup live in
`custom_ops.lut_tables`.
"""

import re

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from psa_finn.custom_ops.domain import CHANNEL_AXIS_ATTR, DEFAULT_CHANNEL_AXIS, channel_axis_of
from psa_finn.custom_ops.lut_tables import LUT_MODES, check_lut_table, lut_codes, lut_lookup, table_entries

INTEGER_DATATYPE = re.compile(r"U?INT[1-9][0-9]*")


class PerChannelLUT(CustomOp):
    """Per-channel table lookup y[..., c, ...] = LUT_c(x[..., c, ...]) on integer codes, c along `channel_axis`;
    see `custom_ops.lut_tables`."""

    def get_nodeattr_types(self):
        return {
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            "mode": ("s", False, "full", set(LUT_MODES)),
            CHANNEL_AXIS_ATTR: ("i", False, DEFAULT_CHANNEL_AXIS),
        }

    def _datatypes(self):
        node = self.onnx_node
        names = (self.get_nodeattr("inputDataType"), self.get_nodeattr("outputDataType"))
        for name in names:
            if not INTEGER_DATATYPE.fullmatch(name):
                raise ValueError(f"PerChannelLUT node '{node.name}': {name!r} is not an integer DataType name "
                                 f"INTn or UINTn (e.g. 'INT8', 'UINT4')")
        return DataType[names[0]], DataType[names[1]]

    def make_shape_compatible_op(self, model):
        return helper.make_node("Identity", [self.onnx_node.input[0]], [self.onnx_node.output[0]])

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], self._datatypes()[1])

    def execute_node(self, context, graph):
        node = self.onnx_node
        idt, odt = self._datatypes()
        mode = self.get_nodeattr("mode")
        x = np.asarray(context[node.input[0]], dtype=np.float64)
        axis = channel_axis_of(node, x.ndim)
        try:
            table = check_lut_table(context[node.input[1]], mode, idt, odt, (1, x.shape[axis]),
                                    f"one row per channel on {CHANNEL_AXIS_ATTR} {channel_axis_of(node)} (or one "
                                    f"shared row; input {list(x.shape)})")
            codes = lut_codes(x, idt)
        except ValueError as err:
            raise ValueError(f"PerChannelLUT node '{node.name}': {err}") from err
        index = np.moveaxis(codes - int(idt.min()), axis, -1)
        context[node.output[0]] = np.moveaxis(lut_lookup(table, index, mode), -1, axis).astype(np.float32)

    def verify_node(self):
        node = self.onnx_node
        messages = []
        if len(node.input) == 2:
            messages.append("The number of inputs is correct")
        else:
            messages.append(f"PerChannelLUT node '{node.name}' needs 2 inputs (codes, table), got {len(node.input)}")
        try:
            idt, odt = self._datatypes()
            mode = self.get_nodeattr("mode")
            table_entries(mode, idt.bitwidth())
            channel_axis_of(node)
            messages.append("All necessary attributes exist")
        except Exception as err:
            messages.append(f"PerChannelLUT node '{node.name}' has invalid attributes: {err}")
        return messages

