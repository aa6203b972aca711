"""A convolution's quantized bias as the constant it is.

Brevitas exports a QuantConv's quantized bias (e.g. `nn.quantizers.AccumulatorBiasQuant`, the bias on the
accumulator grid) as a Quant node of constants with a 0-d zero point. qonnx's ExtractBiasFromConv, which finn-plus's
step_qonnx_to_finn runs, reshapes that zero point to the bias's [1, C, 1, 1] and fails ("cannot reshape array of
size 1"). `FoldQuantizedConvBias` replaces such a Quant by the values it computes (qonnx's own execution), so the
graph computes exactly the same and the bias reaches FINN as a plain initializer, which it absorbs into the
thresholds that follow. Weight quantizers are left alone: FINN reads their data types from them.
"""

from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from psa_finn.custom_ops.domain import is_quant_node

CONV_OPS = ("Conv", "ConvTranspose")


class FoldQuantizedConvBias(Transformation):
    """Every Conv/ConvTranspose bias produced by a Quant of initializers that only the convolution reads becomes
    the Quant's output, as an initializer; the Quant is removed."""

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type not in CONV_OPS or len(node.input) < 3 or not node.input[2]:
                continue
            quant = model.find_producer(node.input[2])
            if not is_quant_node(quant) or len(model.find_consumers(node.input[2])) != 1 or \
                    any(model.get_initializer(name) is None for name in quant.input):
                continue
            context = {name: model.get_initializer(name) for name in quant.input}
            getCustomOp(quant).execute_node(context, model.graph)
            model.graph.node.remove(quant)
            model.set_initializer(node.input[2], context[node.input[2]])
            return model, True
        return model, False
