"""Make requested PE/SIMD values legal: the largest value <= the request that divides the folded dimensions.

A fixed folding ("every MVAU at PE=SIMD=16", given as op-type defaults in a FINN folding JSON) cannot name a
legal value for every layer: the classifier has 10 outputs, the digits patches 4 inputs. `ClampFoldingToDivisors`
lowers each PE/SIMD to the largest divisor of the dimensions it folds:
PE folds the output channels (and, for the elementwise layers, the input channels, which are the same);
SIMD folds the input channels (and, for Shuffle-type layers, the output's innermost dimension too).
"""

from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

# Layers whose PE folds only the output (MH) and SIMD only the input (MW) dimension.
MATRIX_LAYERS = ("MVAU", "VVAU", "KANLinear")


def _largest_divisor_at_most(dims, limit):
    return max(d for d in range(1, max(1, limit) + 1) if all(dim % d == 0 for dim in dims))


class ClampFoldingToDivisors(Transformation):
    """Lower every PE / SIMD attribute of the fpgadataflow nodes to the largest legal value <= its current value."""

    def apply(self, model):
        for node in model.graph.node:
            if not node.domain.startswith("finn.custom_op.fpgadataflow"):
                continue
            op = getCustomOp(node)
            attrs = op.get_nodeattr_types()
            inner_in = int(op.get_normal_input_shape()[-1])
            inner_out = int(op.get_normal_output_shape()[-1])
            matrix = node.op_type.split("_")[0] in MATRIX_LAYERS
            if "PE" in attrs:
                dims = [inner_out] if matrix else [inner_in, inner_out]
                op.set_nodeattr("PE", _largest_divisor_at_most(dims, op.get_nodeattr("PE")))
            if "SIMD" in attrs:
                dims = [inner_in] if matrix else [inner_in, inner_out]
                op.set_nodeattr("SIMD", _largest_divisor_at_most(dims, op.get_nodeattr("SIMD")))
        return model, False
