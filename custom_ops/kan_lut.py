"""The qonnx op `KANLUT`: a lowered Kolmogorov-Arnold layer, integer codes in, integer sums out.

    y[..., j] = sum_i tables[j, i, x_i - min(inputDataType)]

Inputs: x (integer codes of inputDataType in a float container, [..., I]) and tables [J, I, 2^b] (integers: the
edge values on the edge grid, `transforms.lower_kan_linear`); attribute inputDataType, outputDataType (the
accumulator's qonnx DataType, wide enough for every sum). The KANLinear HW layer (custom_ops/fpgadataflow) computes
the same sum folded over SIMD inputs and PE outputs per cycle.
"""

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from psa_finn.custom_ops.kan_linear import shape_compatible_op
from psa_finn.custom_ops.per_channel_lut import CODE_TOLERANCE


def check_codes(x, idt, where):
    """Integer codes of `idt` in x (float container) as int64; ValueError naming `where` otherwise."""
    x = np.asarray(x)
    codes = np.round(x)
    if x.size and (np.any(np.abs(x - codes) > CODE_TOLERANCE) or codes.min() < idt.min() or codes.max() > idt.max()):
        raise ValueError(f"{where}: input must be integer codes of {idt.name} in [{idt.min()}, {idt.max()}]; got "
                         f"values in [{x.min()}, {x.max()}]")
    return codes.astype(np.int64)


def kan_lut_numpy(codes, tables, idt):
    """sum_i tables[j, i, codes_i - min(idt)] for integer codes [..., I], tables [J, I, E] -> int64 [..., J]."""
    tables = np.asarray(tables)
    outputs, inputs, _ = tables.shape
    index = codes.reshape(-1, inputs) - int(idt.min())
    y = np.zeros((index.shape[0], outputs), dtype=np.int64)
    for i in range(inputs):
        y += tables[:, i, index[:, i]].T.astype(np.int64)
    return y.reshape(*codes.shape[:-1], outputs)


class KANLUT(CustomOp):
    """Integer KAN layer: x codes [..., I], tables [J, I, 2^b] -> sums [..., J] (see the module docstring)."""

    def get_nodeattr_types(self):
        return {"inputDataType": ("s", True, ""), "outputDataType": ("s", True, "")}

    def make_shape_compatible_op(self, model):
        """A node of the output shape [..., J] for ONNX shape inference (shape_compatible_op)."""
        return shape_compatible_op(self, model)

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType[self.get_nodeattr("outputDataType")])

    def execute_node(self, context, graph):
        node = self.onnx_node
        where = f"KANLUT node '{node.name}'"
        tables = context[node.input[1]]
        idt = DataType[self.get_nodeattr("inputDataType")]
        if tables.ndim != 3 or tables.shape[2] != 2 ** idt.bitwidth():
            raise ValueError(f"{where}: tables must be [out, in, {2 ** idt.bitwidth()}] for {idt.name} codes, got "
                             f"{list(tables.shape)}")
        codes = check_codes(context[node.input[0]], idt, where)
        if codes.shape[-1] != tables.shape[1]:
            raise ValueError(f"{where}: input has {codes.shape[-1]} features, the tables {tables.shape[1]} inputs")
        context[node.output[0]] = kan_lut_numpy(codes, tables, idt).astype(np.float32)

    def verify_node(self):
        messages = []
        for name in ("inputDataType", "outputDataType"):
            try:
                if not DataType[self.get_nodeattr(name)].is_integer():
                    messages.append(f"KANLUT node '{self.onnx_node.name}': {name} must be an integer type")
            except KeyError:
                messages.append(f"KANLUT node '{self.onnx_node.name}': {name} is not a qonnx DataType")
        if len(self.onnx_node.input) != 2:
            messages.append(f"KANLUT node '{self.onnx_node.name}' needs two inputs: codes and tables")
        return messages or ["KANLUT attributes are consistent"]
