"""Thresholds of uniform quantizers and one-node MultiThreshold models, for the requantizer tests."""

from fractions import Fraction
from math import ceil

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.multithreshold import multithreshold
from qonnx.util.basic import qonnx_make_model


def quantizer_thresholds(scale, biases, out_min, out_max, in_min, in_max):
    """Thresholds [C, N] of y = clip(round_half_even(scale * x + b), out_min, out_max) on integers in
    [in_min, in_max], as psa-finn's lowering leaves them (the first integer reaching each code, in_max + 1 where none
    does), built from the exact rational step (c - 1/2 - b) / scale of the float values."""
    rows = []
    for b in biases:
        row = []
        for code in range(out_min + 1, out_max + 1):
            real = (code - Fraction(1, 2) - Fraction(float(b))) / Fraction(float(scale))
            position = ceil(real)
            if position == real and code % 2 == 1:  # a tie, rounded to the even code - 1
                position += 1
            row.append(min(max(position, in_min), in_max + 1))
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def multithreshold_codes(x, thresholds, out_min):
    """qonnx's MultiThreshold on x [N, C] (out_bias out_min)."""
    return multithreshold(x.astype(np.float64), thresholds) + out_min


def multithreshold_model(thresholds, input_dt, output_dt, out_bias, shape, data_layout="NWC"):
    """ModelWrapper with one channels-last MultiThreshold node "mt" (x -> y) and its thresholds as an initializer."""
    node = helper.make_node("MultiThreshold", ["x", "thresholds"], ["y"], domain="qonnx.custom_op.general",
                            name="mt", out_bias=float(out_bias), data_layout=data_layout)
    graph = helper.make_graph([node], "requant", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="psa-finn"))
    model.set_initializer("thresholds", np.asarray(thresholds, dtype=np.float32))
    model.set_tensor_datatype("x", DataType[input_dt])
    model.set_tensor_datatype("y", DataType[output_dt])
    return model
