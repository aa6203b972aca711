"""One-layer HW models built the way a real build makes them, for simulations, synthesis checks and their tests.

`one_layer_model` takes a lowered table op node (x -> y, its table an initializer), converts it with the stage's
HW conversion, sets the layer's attributes (folding, ram_style) and optionally runs finn-plus's `SpecializeLayers`
with `preferred_impl_style` ("hls" or "rtl").
"""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

DEFAULT_FPGA_PART = "xcu50-fsvh2104-2-e"


def one_layer_model(node, in_shape, out_shape, table, datatypes, conversion, attributes, impl_style=None,
                    fpgapart=DEFAULT_FPGA_PART) -> ModelWrapper:
    """ModelWrapper of `node` (inputs x and its table, output y) after `conversion` (a Transformation) with
    `attributes` set on the HW node; `table` becomes node.input[1]'s initializer, `datatypes` {tensor: DataType
    name} annotate the graph."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    graph = helper.make_graph([node], node.name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="psa-finn"))
    model.set_initializer(node.input[1], np.asarray(table, dtype=np.float32))
    for tensor, datatype in datatypes.items():
        model.set_tensor_datatype(tensor, DataType[datatype])
    model = model.transform(conversion)
    layer = getCustomOp(model.graph.node[0])
    for name, value in attributes.items():
        layer.set_nodeattr(name, value)
    if impl_style is not None:
        layer.set_nodeattr("preferred_impl_style", impl_style)
        model = model.transform(SpecializeLayers(fpgapart))
    return model
