"""ReduceMean over the token axis of a channels-last [N, T, C] tensor -> FINN's GlobalAccPool.

FINN maps ReduceMean only behind an Im2Col (pooling windows); the ResMLP head averages the residual stream over its
T tokens. `ConvertTokenMeanToGlobalAccPool` matches

    x [N, T, C] (integer) -> ReduceMean(axes=[1]) -> y [N, C] or [N, 1, C]

and leaves behind

    x -> Reshape [N, T, 1, C] -> GlobalAccPool (sum over T) -> Reshape (shape of y) -> Mul (1/T) -> y

so the sum runs on the fabric and the scalar Mul is absorbed by the next MultiThreshold
(`AbsorbMulIntoMultiThreshold`). A positive scalar Mul that feeds the ReduceMean from an integer tensor (a quantizer
scale streamlining left in front of it) is folded into the same Mul: mean(x * s) = sum(x) * (s / T).
"""

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name

from psa_finn.custom_ops.domain import HW_DOMAIN


def _reduce_axes(model, node):
    """Reduction axes of a ReduceMean node (attribute before opset 18, second input after), or None."""
    if len(node.input) > 1 and node.input[1]:
        axes = model.get_initializer(node.input[1])
        return None if axes is None else [int(a) for a in np.atleast_1d(axes)]
    attr = get_by_name(node.attribute, "axes")
    return None if attr is None else list(attr.ints)


def _scalar_mul_source(model, tensor):
    """(integer source tensor, scale) when `tensor` = Mul(integer tensor, positive scalar constant), else None."""
    producer = model.find_producer(tensor)
    if producer is None or producer.op_type != "Mul" or model.is_fork_node(producer):
        return None
    scale = model.get_initializer(producer.input[1])
    if scale is None or scale.size != 1 or float(scale.flatten()[0]) <= 0:
        return None
    if not model.get_tensor_datatype(producer.input[0]).is_integer():
        return None
    return producer.input[0], float(scale.flatten()[0]), producer


class ConvertTokenMeanToGlobalAccPool(Transformation):
    """Rewrite ReduceMean over axis 1 of an integer [N, T, C] tensor as Reshape -> GlobalAccPool -> Reshape -> Mul."""

    def apply(self, model):
        graph = model.graph
        for index, node in enumerate(graph.node):
            if node.op_type != "ReduceMean":
                continue
            in_shape = model.get_tensor_shape(node.input[0])
            if in_shape is None or len(in_shape) != 3 or _reduce_axes(model, node) not in ([1], [-2]):
                continue
            source, scale, scale_node = node.input[0], 1.0, None
            if not model.get_tensor_datatype(source).is_integer():
                found = _scalar_mul_source(model, source)
                if found is None:
                    continue
                source, scale, scale_node = found
            n, tokens, channels = (int(d) for d in in_shape)
            idt = model.get_tensor_datatype(source)
            out_shape = model.get_tensor_shape(node.output[0])
            prefix = node.name or f"ReduceMean_{index}"

            pool_in = model.make_new_valueinfo_name()
            model.set_tensor_shape(pool_in, [n, tokens, 1, channels])
            model.set_tensor_datatype(pool_in, idt)
            pool_in_shape = model.make_new_valueinfo_name()
            model.set_initializer(pool_in_shape, np.array([n, tokens, 1, channels], dtype=np.int64))
            pool_out = model.make_new_valueinfo_name()
            model.set_tensor_shape(pool_out, [n, 1, 1, channels])
            pooled = model.make_new_valueinfo_name()
            model.set_tensor_shape(pooled, list(out_shape))
            pooled_shape = model.make_new_valueinfo_name()
            model.set_initializer(pooled_shape, np.array(out_shape, dtype=np.int64))
            mean_scale = model.make_new_valueinfo_name()
            model.set_initializer(mean_scale, np.array(scale / tokens, dtype=np.float32))

            new_nodes = [
                helper.make_node("Reshape", [source, pool_in_shape], [pool_in], name=f"{prefix}_to_nhwc"),
                helper.make_node("GlobalAccPool", [pool_in], [pool_out], name=f"GlobalAccPool_{prefix}",
                                 domain=HW_DOMAIN, backend="fpgadataflow",
                                 NumChannels=channels, PE=1, inputDataType=idt.name,
                                 numInputVectors=[n, tokens, 1]),
                helper.make_node("Reshape", [pool_out, pooled_shape], [pooled], name=f"{prefix}_from_nhwc"),
                helper.make_node("Mul", [pooled, mean_scale], [node.output[0]], name=f"{prefix}_mean_scale"),
            ]
            for offset, new_node in enumerate(new_nodes):
                graph.node.insert(index + offset, new_node)
            graph.node.remove(node)
            if scale_node is not None:
                graph.node.remove(scale_node)
            model.set_tensor_datatype(node.output[0], DataType["FLOAT32"])
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
            return model, True
        return model, False
