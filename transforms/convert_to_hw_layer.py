"""What the conversions of psa-finn's lowered table ops into their finn-plus HW layers share.

``ConvertToHWLayer`` replaces, in one pass, every node its subclass ``matches`` by the HW node ``hw_node`` makes
(same tensor names, same place in the graph), then infers shapes and datatypes again, as finn-plus's
``convert_to_hw_layers`` transformations do. The HW layers embed their tables, so a table must be an initializer
(``custom_ops.fpgadataflow.embedded_table``) and the data input's shape known (``known_input_shape``).
"""

from abc import abstractmethod

from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes


def infer_shapes_and_datatypes(model):
    """The model after qonnx's InferShapes and InferDataTypes (after a pass replaced or removed nodes)."""
    return model.transform(InferShapes()).transform(InferDataTypes())


class ConvertToHWLayer(Transformation):
    """Replace each node that ``matches`` by ``hw_node(model, node)``; subclasses define both."""

    @abstractmethod
    def matches(self, node):
        """True for the nodes this conversion replaces."""

    @abstractmethod
    def hw_node(self, model, node):
        """The HW layer node that replaces `node` (it may rewrite the table initializer, e.g. repeat a shared row)."""

    def known_input_shape(self, model, node, layout):
        """Shape of `node`'s data input (at least 2 axes, `layout` e.g. "[..., C]"), else a ValueError."""
        shape = model.get_tensor_shape(node.input[0])
        if shape is None or len(shape) < 2:
            raise ValueError(f"{node.name}: input {node.input[0]} needs a known shape {layout} (got {shape}); run "
                             "InferShapes")
        return shape

    def apply(self, model):
        """Convert all matching nodes in one pass."""
        graph = model.graph
        graph_modified = False
        for index, node in enumerate(list(graph.node)):
            if not self.matches(node):
                continue
            graph.node.insert(index, self.hw_node(model, node))
            graph.node.remove(node)
            graph_modified = True
        if graph_modified:
            model = infer_shapes_and_datatypes(model)
        return model, graph_modified
