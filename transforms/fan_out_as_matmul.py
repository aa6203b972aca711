"""FanOutAsMatMul: a fan-out written with shape ops becomes one MatMul by a fixed 0/1 matrix, which FINN maps onto an
MVAU (as it does a QuantLinear fan-out).

`torch.cat([x] * J, dim=-1)`, `x.unsqueeze(1).expand(-1, J, -1).reshape(N, J * I)`, `x.repeat(1, J)`: natural ways
to feed every edge of a KAN, which FINN has no hardware layer for (a Concat of one stream repeated, Unsqueeze,
Expand). The pattern: a quantizer's output x (so every value is finite and on a grid), then a chain of the
`FAN_OUT_OPS` below, each passing on one tensor of the chain (`custom_ops.domain.shape_op_source`), at least one of
them repeating values (Concat, Expand, Tile), ending at y of x's rank and shape but along one axis. The chain is
executed (qonnx execute_onnx) on x holding its own flat positions 0, 1, 2, ...; when y gathers x along that axis,
`y = take(x, index, axis)`, it becomes `y = MatMul(x, P)`, P[index[k], k] = 1, typed INT2 (FINN's weight types are
signed), between Transposes that move the axis last and back when it is another one (a channel concat of NCHW).
Each output is one input times 1 plus zeros: equal to the chain bit for bit. A Concat that repeats one of several
quantized tensors, `torch.cat([a, b, a])`, becomes the Concat of each once, `[a, b]`, and the same MatMul.
"""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name, qonnx_make_model

from psa_finn.custom_ops.domain import is_quantizer_node, shape_op_source

FAN_OUT_OPS = ("Unsqueeze", "Expand", "Tile", "Concat", "Reshape", "Flatten", "Squeeze")
REPEATING_OPS = ("Expand", "Tile", "Concat")
FAN_OUT_WEIGHT_TYPE = "INT2"


def _passes_on(model, node, tensor) -> bool:
    """Whether `node` is a FAN_OUT_OPS node passing on `tensor`, its other inputs constants."""
    return node.op_type in FAN_OUT_OPS and shape_op_source(node) == tensor and \
        all(model.get_initializer(name) is not None for name in node.input if name != tensor)


def _chains_from(model, first):
    """The chains of FAN_OUT_OPS nodes that start with node `first`, each node the only consumer of the tensor before
    it: every prefix that ends at or after the chain's last repeating op, longest first."""
    chain, node = [first], first
    outputs = [output.name for output in model.graph.output]
    while node.output[0] not in outputs:
        consumers = model.find_consumers(node.output[0])
        if len(consumers) != 1 or not _passes_on(model, consumers[0], node.output[0]):
            break
        node = consumers[0]
        chain.append(node)
    repeating = [position for position, node in enumerate(chain) if node.op_type in REPEATING_OPS]
    return [chain[:end] for end in range(len(chain), repeating[-1], -1)] if repeating else []


def _gathered_index(model, chain, source):
    """(axis, index [K]) with y = take(x, index, axis) for the chain's input x = `source` and output y (the axis where
    their shapes differ; the last one if none does); None otherwise."""
    x_shape = model.get_tensor_shape(source)
    y_shape = model.get_tensor_shape(chain[-1].output[0])
    if x_shape is None or y_shape is None or len(x_shape) != len(y_shape):
        return None
    differing = [axis for axis, (x, y) in enumerate(zip(x_shape, y_shape)) if x != y]
    if len(differing) > 1:
        return None
    axis = differing[0] if differing else len(x_shape) - 1
    constants = {name for node in chain for name in node.input if name != source and
                 model.get_initializer(name) is not None}
    graph = helper.make_graph(chain, "fan_out", [helper.make_tensor_value_info(source, TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(chain[-1].output[0], TensorProto.FLOAT, y_shape)])
    small = ModelWrapper(qonnx_make_model(graph, opset_imports=list(model.model.opset_import)))
    for name in constants:
        small.set_initializer(name, model.get_initializer(name))
    small = small.transform(InferShapes())
    positions = np.arange(int(np.prod(x_shape)), dtype=np.float32).reshape(x_shape)
    gathered = execute_onnx(small, {source: positions})[chain[-1].output[0]]
    stride = int(np.prod(x_shape[axis + 1:]))
    first_row = np.moveaxis(gathered, axis, -1).reshape(-1, y_shape[axis])[0].astype(np.int64)
    index = (first_row // stride) % x_shape[axis]
    if not np.array_equal(np.take(positions, index, axis=axis), gathered):
        return None
    return axis, index


def _fan_out_nodes(model, source, output, axis, index, name):
    """`output = take(source, index, axis)` as MatMul by a 0/1 matrix (typed FAN_OUT_WEIGHT_TYPE) on the last axis,
    between Transposes when `axis` is another one."""
    rank = len(model.get_tensor_shape(source))
    weights = np.zeros((model.get_tensor_shape(source)[axis], index.size), dtype=np.float32)
    weights[index, np.arange(index.size)] = 1.0
    weight_name = model.make_new_valueinfo_name()
    model.set_initializer(weight_name, weights)
    model.set_tensor_datatype(weight_name, DataType[FAN_OUT_WEIGHT_TYPE])
    if axis == rank - 1:
        return [helper.make_node("MatMul", [source, weight_name], [output], name=name)]
    perm = [a for a in range(rank) if a != axis] + [axis]
    moved, gathered = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
    return [helper.make_node("Transpose", [source], [moved], name=f"{name}_to_last", perm=perm),
            helper.make_node("MatMul", [moved, weight_name], [gathered], name=name),
            helper.make_node("Transpose", [gathered], [output], name=f"{name}_back",
                             perm=[int(a) for a in np.argsort(perm)])]


def _replace(model, nodes, replacement):
    """`nodes` out of the graph, `replacement` in where the first of them was."""
    graph = model.graph
    position = list(graph.node).index(nodes[0])
    for node in nodes:
        graph.node.remove(node)
    for offset, node in enumerate(replacement):
        graph.node.insert(position + offset, node)


def _repeating_concat(model, node):
    """(distinct inputs, axis, index) for a Concat of several quantized tensors, one of them repeated; else None."""
    distinct = list(dict.fromkeys(node.input))
    if node.op_type != "Concat" or len(distinct) in (1, len(node.input)) or \
            not all(is_quantizer_node(model.find_producer(name)) for name in distinct):
        return None
    shapes = [model.get_tensor_shape(name) for name in distinct]
    if None in shapes:
        return None
    axis = get_by_name(node.attribute, "axis").i % len(shapes[0])
    sizes = [shape[axis] for shape in shapes]
    offsets = dict(zip(distinct, np.cumsum([0] + sizes[:-1])))
    index = np.concatenate([offsets[name] + np.arange(sizes[distinct.index(name)]) for name in node.input])
    return distinct, axis, index


class FanOutAsMatMul(Transformation):
    """Every fan-out chain after a quantizer, and every Concat repeating one of its quantized inputs -> one MatMul by
    a fixed 0/1 matrix (see the module docstring)."""

    def apply(self, model):
        graph = model.graph
        for node in graph.node:
            repeating = _repeating_concat(model, node)
            if repeating is None:
                continue
            distinct, axis, index = repeating
            once = model.make_new_valueinfo_name()
            shape = list(model.get_tensor_shape(distinct[0]))
            shape[axis] = sum(model.get_tensor_shape(name)[axis] for name in distinct)
            model.set_tensor_shape(once, shape)
            concat = helper.make_node("Concat", distinct, [once], name=f"{node.name}_once", axis=axis)
            _replace(model, [node], [concat] + _fan_out_nodes(model, once, node.output[0], axis, index,
                                                              f"{node.name}_fan_out"))
            return model, True
        for quantizer in [node for node in graph.node if is_quantizer_node(node)]:
            source = quantizer.output[0]
            found = [(chain, _gathered_index(model, chain, source)) for first in model.find_consumers(source)
                     if _passes_on(model, first, source) for chain in _chains_from(model, first)]
            found = [(chain, index) for chain, index in found if index is not None]
            if not found:
                continue
            chain, (axis, index) = found[0]
            _replace(model, chain, _fan_out_nodes(model, source, chain[-1].output[0], axis, index,
                                                  f"{chain[0].name}_fan_out"))
            return model, True
        return model, False
