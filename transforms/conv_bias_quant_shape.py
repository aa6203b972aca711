"""Give a quantized Conv bias's scalar scale and zero point the shape [1] that FINN's QONNX conversion can reshape.

Brevitas exports a quantized Conv/ConvTranspose bias (e.g. `AccumulatorBiasQuant`, any `Int32Bias`) as a `Quant`
node whose zero point (and a per-tensor scale) is a rank-0 initializer. finn-plus's `step_qonnx_to_finn` runs qonnx's
`ExtractBiasFromConv`, which reshapes every bias quantizer parameter whose shape is not (1,) to the bias's
[1, C, 1, ...] shape: a rank-0 zero point of one element fails there ("cannot reshape array of size 1 into shape
(1,8,1,1)"), in stock finn-plus as in our flow. `ConvBiasQuantScalarsAsVectors` stores those scalars as shape [1]:
the same values under broadcasting, so the graph computes the same, and ExtractBiasFromConv leaves them alone.
"""

import numpy as np
from qonnx.transformation.base import Transformation

from psa_finn.custom_ops.domain import is_quant_node

CONV_OPS = ("Conv", "ConvTranspose")
SCALE_AND_ZERO_POINT = (1, 2)  # Quant inputs: value, scale, zero point, bit width


class ConvBiasQuantScalarsAsVectors(Transformation):
    """Every rank-0 scale / zero point of the Quant that produces a Conv(Transpose) bias -> shape [1]."""

    def apply(self, model):
        changed = False
        for node in model.graph.node:
            if node.op_type not in CONV_OPS or len(node.input) < 3:
                continue
            quant = model.find_producer(node.input[2])
            if not is_quant_node(quant):
                continue
            for position in SCALE_AND_ZERO_POINT:
                value = model.get_initializer(quant.input[position])
                if value is None or value.ndim != 0:
                    continue
                name = quant.input[position]
                if len(model.find_consumers(name)) > 1:
                    name = model.make_new_valueinfo_name()
                    quant.input[position] = name
                model.set_initializer(name, np.reshape(value, (1,)))
                changed = True
        return model, changed
