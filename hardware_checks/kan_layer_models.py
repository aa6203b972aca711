"""One-layer KANLinear models with random integer edge tables, for simulations, synthesis checks and their tests.

The model goes the way of a real build: a lowered `custom_ops.KANLUT` node, `InferKANLinearLayer` (the HW layer),
SIMD and PE set, and optionally finn-plus's `SpecializeLayers` with `preferred_impl_style` ("hls" or "rtl").
"""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from psa_finn.custom_ops.domain import KAN_LUT_OP, OPS_DOMAIN
from psa_finn.hardware_checks.lut_layer_models import DEFAULT_FPGA_PART
from psa_finn.transforms.convert_to_hw_kan_linear import InferKANLinearLayer
from psa_finn.transforms.lower_kan_linear import accumulator_datatype


def make_kan_layer_model(inputs, outputs, simd, pe, input_dt="INT4", table_dt="INT6", num_vectors=(2,),
                         impl_style=None, ram_style="auto", seed=0, fpgapart=DEFAULT_FPGA_PART,
                         pruned_edges=None) -> ModelWrapper:
    """ModelWrapper with one KANLinear HW node named "kan" (x [*num_vectors, inputs] -> y [..., outputs]);
    `pruned_edges` [outputs, inputs] bool: those edges get all-zero tables (as a pruned QuantKANLinear exports)."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    rng = np.random.default_rng(seed)
    idt, tdt = DataType[input_dt], DataType[table_dt]
    tables = rng.integers(tdt.min(), tdt.max() + 1, size=(outputs, inputs, 2 ** idt.bitwidth()))
    if pruned_edges is not None:
        tables[np.asarray(pruned_edges, dtype=bool)] = 0
    acc_dt = accumulator_datatype(tables)
    node = helper.make_node(KAN_LUT_OP, ["x", "tables"], ["y"], domain=OPS_DOMAIN, name="kan",
                            inputDataType=input_dt, outputDataType=acc_dt.name)
    graph = helper.make_graph([node], "kan_linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*num_vectors, inputs])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*num_vectors, outputs])])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="psa-finn"))
    model.set_initializer("tables", tables.astype(np.float32))
    model.set_tensor_datatype("tables", tdt)
    model.set_tensor_datatype("x", idt)
    model = model.transform(InferKANLinearLayer())
    layer = getCustomOp(model.graph.node[0])
    layer.set_nodeattr("SIMD", simd)
    layer.set_nodeattr("PE", pe)
    layer.set_nodeattr("ram_style", ram_style)
    if impl_style is not None:
        layer.set_nodeattr("preferred_impl_style", impl_style)
        model = model.transform(SpecializeLayers(fpgapart))
    return model
