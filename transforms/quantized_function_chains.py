"""Find every `Quant -> S -> Quant` of a QONNX graph: S a subgraph of elementwise nodes feeding an output Quant.

Walking back from each activation Quant (one whose input is not a constant), S takes every elementwise producer
(`transforms.elementwise_ops`) until it reaches constants (initializers or Constant nodes), Quant outputs, graph
inputs or non-elementwise nodes; the tensors it stops at are its sources. S is closed: a tensor inside it that
also feeds a node outside it becomes a source instead, so removing S removes nothing anybody else reads.
Chains whose S is empty or only affine (FINN's streamlining owns those) are not listed; which chains can be lowered,
and how, is decided by `transforms.lower_quantized_functions`.
"""

from collections import defaultdict
from dataclasses import dataclass

from onnx import numpy_helper
from qonnx.custom_op.registry import getCustomOp

from psa_finn.custom_ops.domain import is_quant_node
from psa_finn.transforms.elementwise_ops import FINN_NATIVE_OPS, is_affine, is_elementwise


@dataclass(frozen=True)
class QuantizedFunctionChain:
    """S (`nodes`, in graph order) between the quantizers: it reads the variable tensors `sources` and writes the
    input of `output_quant`. `input_quant` is the Quant producing the single source, None when S reads an
    unquantized tensor (an accumulator) or several tensors."""

    nodes: tuple
    sources: tuple
    input_quant: object
    output_quant: object

    @property
    def output(self) -> str:
        """The tensor S writes (the output Quant's input)."""
        return self.output_quant.input[0]

    @property
    def function_node(self):
        """The first node of S that is not an affine map: the node the chain is reported under."""
        return next((node for node in self.nodes if not is_affine(node)), self.nodes[0])

    @property
    def name(self) -> str:
        """The function node's name (its output tensor when it has none)."""
        node = self.function_node
        return node.name or node.output[0]

    @property
    def finn_native(self) -> bool:
        """Whether S holds only ops FINN turns into thresholds itself (ReLU and affine maps)."""
        return all(node.domain in ("", "ai.onnx") and node.op_type in FINN_NATIVE_OPS for node in self.nodes)


class GraphIndex:
    """Producer, consumers and constants of every tensor of a graph, read once."""

    def __init__(self, model):
        graph = model.graph
        self.model = model
        self.order = {}
        self.producer = {}
        self.consumers = defaultdict(list)
        for index, node in enumerate(graph.node):
            self.order[node.output[0]] = index
            for tensor in node.output:
                self.producer[tensor] = node
            for tensor in node.input:
                self.consumers[tensor].append(node)
        self.graph_outputs = {tensor.name for tensor in graph.output}

    def constant(self, tensor):
        """The value of `tensor` when it is an initializer, a Constant node's output or a Quant of constants (a
        quantized weight or bias, e.g. Brevitas' bias on the accumulator grid), else None."""
        value = self.model.get_initializer(tensor)
        if value is not None:
            return value
        producer = self.producer.get(tensor)
        if producer is not None and producer.op_type == "Constant" and producer.attribute and \
                producer.attribute[0].name == "value":
            return numpy_helper.to_array(producer.attribute[0].t)
        if is_quant_node(producer):
            context = {name: self.constant(name) for name in producer.input}
            if all(value is not None for value in context.values()):
                getCustomOp(producer).execute_node(context, self.model.graph)
                return context[tensor]
        return None

    def escapes(self, tensor, inside) -> bool:
        """Whether `tensor` is a graph output or feeds a node whose first output is not in `inside`."""
        return tensor in self.graph_outputs or any(node.output[0] not in inside for node in self.consumers[tensor])


def _walk(index, output, sources_forced):
    """S's nodes (keyed by first output) and sources, walking back from tensor `output`."""
    members, sources, seen, stack = {}, [], set(), [output]
    while stack:
        tensor = stack.pop()
        if not tensor or tensor in seen:
            continue
        seen.add(tensor)
        if index.constant(tensor) is not None:
            continue
        producer = index.producer.get(tensor)
        if producer is None or tensor in sources_forced or is_quant_node(producer) or not is_elementwise(producer):
            sources.append(tensor)
            continue
        members[producer.output[0]] = producer
        stack.extend(producer.input)
    return members, sources


def _function_subgraph(index, quant):
    """The closed S before Quant node `quant` and its sources; ((), ()) when S would be empty."""
    output = quant.input[0]
    if index.escapes(output, {quant.output[0]}):
        return (), ()
    forced = set()
    while True:  # every round turns at least one more tensor of the graph into a source: at most len(graph) rounds
        members, sources = _walk(index, output, forced)
        inside = set(members) | {quant.output[0]}
        escaping = {tensor for node in members.values() for tensor in node.output
                    if tensor != output and index.escapes(tensor, inside)}
        if not escaping:
            nodes = tuple(sorted(members.values(), key=lambda node: index.order[node.output[0]]))
            return nodes, tuple(dict.fromkeys(sources))
        forced |= escaping


def find_quantized_function_chains(model, index=None) -> list:
    """Every `Quant -> S -> Quant` of `model` (graph order of the output Quant) whose S holds a non-affine node."""
    index = index or GraphIndex(model)
    chains = []
    for node in model.graph.node:
        if not is_quant_node(node) or index.constant(node.input[0]) is not None:
            continue
        nodes, sources = _function_subgraph(index, node)
        if not nodes or all(is_affine(member) for member in nodes):
            continue
        producer = index.producer.get(sources[0]) if len(sources) == 1 else None
        input_quant = producer if is_quant_node(producer) and index.constant(producer.input[0]) is None else None
        chains.append(QuantizedFunctionChain(nodes, sources, input_quant, node))
    return chains


def stray_function_nodes(model, chains) -> list:
    """Non-affine elementwise nodes (LerpPSA included) that belong to no chain: nothing quantizes their output."""
    in_chains = {node.output[0] for chain in chains for node in chain.nodes}
    return [node for node in model.graph.node
            if is_elementwise(node) and not is_affine(node) and node.output[0] not in in_chains]
