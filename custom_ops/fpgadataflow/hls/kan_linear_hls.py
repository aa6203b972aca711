"""HLS backend of the KANLinear layer: a self-contained kernel (kan_linear.hpp) plus a generated table header.

As PerChannelLUT_hls: finn-plus's HLSBackend hooks write `top_<node>.cpp`; `generate_params` copies the kernel
headers beside it and writes `kan_table.h` (the lane ROMs as a `static const` array [SIMD][NF * SF][2^b][PE]).
Python execution (exec_mode "") runs the base layer's lane model; C++ simulation without Vitis is
`tests/hls_cppsim.py` `run_hls_cppsim`.
"""

from pathlib import Path

import numpy as np
from finn.util.data_packing import numpy_to_hls_code

from psa_finn.custom_ops.fpgadataflow.embedded_table import embedded_table
from psa_finn.custom_ops.fpgadataflow.hls.per_channel_lut_hls import KERNEL_HEADER as LUT_KERNEL_HEADER
from psa_finn.custom_ops.fpgadataflow.hls.table_kernel_backend import TableKernelBackend, table_header_text
from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear

KERNEL_HEADER = Path(__file__).with_name("kan_linear.hpp")


class KANLinear_hls(TableKernelBackend, KANLinear):
    """KANLinear implemented by the psa_finn::kan_linear HLS kernel (II = 1, SIMD x PE lookups per cycle)."""

    KERNEL_HEADERS = (KERNEL_HEADER, LUT_KERNEL_HEADER)
    TABLE_HEADER = "kan_table.h"

    def table_header(self, model):
        """kan_table.h: the lane ROMs as one static const array [SIMD][NF * SF][2^b][PE]."""
        node = self.onnx_node
        tables = embedded_table(node, model, "tables")
        comment = (f"KANLinear tables of node {node.name}: MW={self.get_nodeattr('MW')}, MH={self.get_nodeattr('MH')}, "
                   f"SIMD={self.get_nodeattr('SIMD')}, PE={self.get_nodeattr('PE')}; "
                   "[s][nf * SF + sf][k][p] holds T[nf * PE + p][sf * SIMD + s][k]")
        array = numpy_to_hls_code(self.get_lane_tables(tables).astype(np.float32), self.get_input_datatype(1),
                                  "kan_table", False, False)
        return table_header_text("PSA_FINN_KAN_TABLE_H", comment, [array])

    def defines(self, var):
        """Template parameters of the kernel call."""
        self.code_gen_dict["$DEFINES$"] = [
            f"constexpr unsigned SF = {self.calc_sf()};",
            f"constexpr unsigned NF = {self.calc_nf()};",
            f"constexpr unsigned SIMD = {self.get_nodeattr('SIMD')};",
            f"constexpr unsigned PE = {self.get_nodeattr('PE')};",
            f"constexpr unsigned ENTRIES = {self.get_entries()};",
            f"constexpr unsigned NUM_REPS = {int(np.prod(self.get_nodeattr('numInputVectors')))};",
            f"using TI = {self.get_input_datatype(0).get_hls_datatype_str()};",
            f"using TT = {self.get_input_datatype(1).get_hls_datatype_str()};",
            f"using TA = {self.get_output_datatype().get_hls_datatype_str()};",
        ]

    def docompute(self):
        """One call of the kernel."""
        self.code_gen_dict["$DOCOMPUTE$"] = [
            "psa_finn::kan_linear<SF, NF, SIMD, PE, ENTRIES, TI, TT, TA>(in0_V, out0_V, kan_table, NUM_REPS);"]

    def pragmas(self):
        """AXI-stream ports, free-running control, one ROM per input lane (PE entries wide) in the resolved style."""
        self.code_gen_dict["$PRAGMAS$"] = self.stream_pragmas() + [
            "#pragma HLS ARRAY_PARTITION variable=kan_table complete dim=1",
            "#pragma HLS ARRAY_PARTITION variable=kan_table complete dim=4",
            f"#pragma HLS BIND_STORAGE variable=kan_table {self.rom_binding()}",
        ]
