"""One-layer KANLinear models with random integer edge tables, for simulations, synthesis checks and their tests.

The model goes the way of a real build: a lowered `custom_ops.KANLUT` node, `InferKANLinearLayer` (the HW layer),
SIMD and PE set, and optionally finn-plus's `SpecializeLayers` with `preferred_impl_style` ("hls" or "rtl").
"""

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from psa_finn.custom_ops.domain import KAN_LUT_OP, OPS_DOMAIN
from psa_finn.hardware_checks.one_layer_models import DEFAULT_FPGA_PART, one_layer_model
from psa_finn.transforms.convert_to_hw_kan_linear import InferKANLinearLayer
from psa_finn.transforms.lower_kan_linear import accumulator_datatype


def make_kan_layer_model(inputs, outputs, simd, pe, input_dt="INT4", table_dt="INT6", num_vectors=(2,),
                         impl_style=None, ram_style="auto", seed=0, fpgapart=DEFAULT_FPGA_PART,
                         pruned_edges=None) -> ModelWrapper:
    """ModelWrapper with one KANLinear HW node named "kan" (x [*num_vectors, inputs] -> y [..., outputs]);
    `pruned_edges` [outputs, inputs] bool: those edges get all-zero tables (as a pruned QuantKANLinear exports)."""
    rng = np.random.default_rng(seed)
    idt, tdt = DataType[input_dt], DataType[table_dt]
    tables = rng.integers(tdt.min(), tdt.max() + 1, size=(outputs, inputs, 2 ** idt.bitwidth()))
    if pruned_edges is not None:
        tables[np.asarray(pruned_edges, dtype=bool)] = 0
    node = helper.make_node(KAN_LUT_OP, ["x", "tables"], ["y"], domain=OPS_DOMAIN, name="kan",
                            inputDataType=input_dt, outputDataType=accumulator_datatype(tables).name)
    return one_layer_model(node, [*num_vectors, inputs], [*num_vectors, outputs], tables,
                           {"tables": table_dt, "x": input_dt}, InferKANLinearLayer(),
                           {"SIMD": simd, "PE": pe, "ram_style": ram_style}, impl_style, fpgapart)
