"""Tiny hand-made ONNX graphs for the transformation tests (tests only)."""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model


def graph_model(nodes, inputs, outputs, initializers=(), datatypes=()):
    """A shape- and datatype-inferred model of `nodes`; inputs/outputs as (name, shape), datatypes as (name, str)."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="test"))
    for name, value in initializers:
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    for name, dtype in datatypes:
        model.set_tensor_datatype(name, DataType[dtype])
    model = model.transform(InferShapes())
    return model.transform(InferDataTypes())
