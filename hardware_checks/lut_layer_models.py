"""One-layer PerChannelLUT models with random tables, for synthesis checks (synth-check) and the simulation tests.

The model goes through the same path as a real build: a lowered `custom_ops.PerChannelLUT` node, then
`InferPerChannelLUTLayer` (the HW layer), PE set, and optionally finn-plus's `SpecializeLayers` with the node's
`preferred_impl_style` ("hls" or "rtl").
"""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from psa_finn.custom_ops.domain import OPS_DOMAIN, PER_CHANNEL_LUT_OP
from psa_finn.custom_ops.lut_tables import table_entries
from psa_finn.transforms.convert_to_hw_per_channel_lut import InferPerChannelLUTLayer

DEFAULT_FPGA_PART = "xcu50-fsvh2104-2-e"


def make_lut_layer_model(num_channels, pe, input_dt="INT8", output_dt="INT8", mode="full", num_vectors=(2, 3),
                         impl_style=None, ram_style="auto", seed=0, fpgapart=DEFAULT_FPGA_PART) -> ModelWrapper:
    """ModelWrapper with one PerChannelLUT HW node named "lut" (specialised to `impl_style` when given)."""
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers

    rng = np.random.default_rng(seed)
    idt, odt = DataType[input_dt], DataType[output_dt]
    shape = [*num_vectors, num_channels]
    entries = table_entries(mode, idt.bitwidth())
    table = rng.integers(odt.min(), odt.max() + 1, size=(num_channels, entries)).astype(np.float32)
    node = helper.make_node(PER_CHANNEL_LUT_OP, ["x", "table"], ["y"], domain=OPS_DOMAIN, name="lut",
                            inputDataType=input_dt, outputDataType=output_dt, mode=mode)
    graph = helper.make_graph([node], "per_channel_lut",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="psa-finn"))
    model.set_initializer("table", table)
    model.set_tensor_datatype("x", idt)
    model = model.transform(InferPerChannelLUTLayer())
    layer = getCustomOp(model.graph.node[0])
    layer.set_nodeattr("PE", pe)
    layer.set_nodeattr("ram_style", ram_style)
    if impl_style is not None:
        layer.set_nodeattr("preferred_impl_style", impl_style)
        model = model.transform(SpecializeLayers(fpgapart))
    return model
