"""One-layer PerChannelLUT models with random tables, for synthesis checks (synth-check) and the simulation tests.

The model goes through the same path as a real build: a lowered `custom_ops.PerChannelLUT` node, then
`InferPerChannelLUTLayer` (the HW layer), PE set, and optionally finn-plus's `SpecializeLayers` with the node's
`preferred_impl_style` ("hls" or "rtl").
"""

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from psa_finn.custom_ops.domain import OPS_DOMAIN, PER_CHANNEL_LUT_OP
from psa_finn.custom_ops.lut_tables import table_entries
from psa_finn.hardware_checks.one_layer_models import DEFAULT_FPGA_PART, one_layer_model
from psa_finn.transforms.convert_to_hw_per_channel_lut import InferPerChannelLUTLayer


def make_lut_layer_model(num_channels, pe, input_dt="INT8", output_dt="INT8", mode="full", num_vectors=(2, 3),
                         impl_style=None, ram_style="auto", seed=0, fpgapart=DEFAULT_FPGA_PART) -> ModelWrapper:
    """ModelWrapper with one PerChannelLUT HW node named "lut" (specialised to `impl_style` when given)."""
    rng = np.random.default_rng(seed)
    idt, odt = DataType[input_dt], DataType[output_dt]
    shape = [*num_vectors, num_channels]
    table = rng.integers(odt.min(), odt.max() + 1, size=(num_channels, table_entries(mode, idt.bitwidth())))
    node = helper.make_node(PER_CHANNEL_LUT_OP, ["x", "table"], ["y"], domain=OPS_DOMAIN, name="lut",
                            inputDataType=input_dt, outputDataType=output_dt, mode=mode)
    return one_layer_model(node, shape, shape, table, {"x": input_dt}, InferPerChannelLUTLayer(),
                           {"PE": pe, "ram_style": ram_style}, impl_style, fpgapart)
