"""Give each elementwise Add/Mul/Sub/Div initializer the rank of the tensor it broadcasts against.

ONNX broadcasting lines shapes up from the last axis, so a per-channel initializer [C] against a [N, T, C] tensor
means the same as [1, 1, C]. finn's streamlining does not treat them alike: MoveTransposePastEltwise transposes the
initializer with the full permutation of the Transpose before it, which fails on [C] ("axes don't match array").
Exports made before the ChannelAffine parameters became [1, 1, C] hold such rank-1 initializers;
`ExpandInitializerRank` rewrites them (and any other lower-rank one) to the full rank, without changing what the
graph computes. Scalars (one element) are left alone: finn treats those as scalars whatever their rank.
"""

import numpy as np
from qonnx.transformation.base import Transformation

ELEMENTWISE_OPS = ("Add", "Mul", "Sub", "Div")


class ExpandInitializerRank(Transformation):
    """Prepend size-1 axes to every non-scalar elementwise initializer of lower rank than its dynamic operand."""

    def apply(self, model):
        changed = False
        for node in model.graph.node:
            if node.op_type not in ELEMENTWISE_OPS or len(node.input) != 2:
                continue
            values = [model.get_initializer(name) for name in node.input]
            if sum(v is not None for v in values) != 1:
                continue
            position = 0 if values[0] is not None else 1
            value, dynamic = values[position], node.input[1 - position]
            shape = model.get_tensor_shape(dynamic)
            if shape is None or value.size == 1 or value.ndim >= len(shape):
                continue
            name = node.input[position]
            if len(model.find_consumers(name)) > 1:
                name = model.make_new_valueinfo_name()
                node.input[position] = name
            model.set_initializer(name, np.reshape(value, (1,) * (len(shape) - value.ndim) + value.shape))
            changed = True
        return model, changed
