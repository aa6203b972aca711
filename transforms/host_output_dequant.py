"""The output dequantisation (trailing float Mul/Add by constants) stays on the host, off the dataflow partition.

After streamlining, the classifier's integer accumulators leave the last MVAU and a `Mul` (scale) and `Add` (bias)
by constants turn them into float logits. `step_convert_to_hw` would map those to float ElementwiseMul/Add HW
layers. `split_host_output_dequant(model)` cuts that tail off: it returns the model whose outputs are the integer
tensors feeding the tail, and the tail (nodes, their constants, original outputs) for `attach_host_output_dequant`
to put back after hardware conversion, where `step_create_dataflow_partition` leaves it outside the partition like
any host-side post-processing.
"""

from copy import deepcopy
from dataclasses import dataclass, field

from onnx import TensorProto, helper


@dataclass
class HostTail:
    """Nodes cut off the end of a graph and the graph outputs they produce."""

    nodes: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    cut_outputs: list = field(default_factory=list)
    initializers: dict = field(default_factory=dict)


def _is_dequant(model, node):
    return node.op_type in ("Mul", "Add") and model.get_initializer(node.input[1]) is not None


def host_output_dequant_nodes(model):
    """Trailing Mul/Add-by-constant nodes between the graph outputs and the last non-dequant node, output first."""
    tail = []
    for out in model.graph.output:
        node = model.find_producer(out.name)
        while node is not None and _is_dequant(model, node) and not model.is_fork_node(node):
            tail.append(node)
            node = model.find_producer(node.input[0])
    return tail


def split_host_output_dequant(model):
    """Remove the output dequant tail (in place); return (model, HostTail). No tail -> empty HostTail."""
    tail_nodes = host_output_dequant_nodes(model)
    tail = HostTail()
    if not tail_nodes:
        return model, tail
    tail.nodes = [deepcopy(n) for n in model.graph.node if n in tail_nodes]
    tail.outputs = list(model.graph.output)
    produced = {o for n in tail.nodes for o in n.output}
    cut = [i for n in tail.nodes for i in n.input if i not in produced and model.get_initializer(i) is None]
    tail.initializers = {i: (model.get_initializer(i), model.get_tensor_datatype(i))
                         for n in tail.nodes for i in n.input if model.get_initializer(i) is not None}
    for node in tail.nodes:
        model.graph.node.remove(node)
    del model.graph.output[:]
    for name in cut:
        vi = model.get_tensor_valueinfo(name)
        if vi is None:
            vi = helper.make_tensor_value_info(name, TensorProto.FLOAT, model.get_tensor_shape(name))
        else:
            model.graph.value_info.remove(vi)
        model.graph.output.append(vi)
        tail.cut_outputs.append(name)
    return model, tail


def attach_host_output_dequant(model, tail):
    """Put a HostTail back behind the (converted) model and restore the original graph outputs."""
    if not tail.nodes:
        return model
    for out in list(model.graph.output):
        if out.name in tail.cut_outputs:
            model.graph.value_info.append(out)
    del model.graph.output[:]
    model.graph.output.extend(tail.outputs)
    model.graph.node.extend(tail.nodes)
    for name, (value, dtype) in tail.initializers.items():
        model.set_initializer(name, value)
        model.set_tensor_datatype(name, dtype)
    return model
