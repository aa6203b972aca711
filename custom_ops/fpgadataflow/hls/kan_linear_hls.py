"""HLS backend of the KANLinear layer: a self-contained kernel (kan_linear.hpp) plus a generated table header.

As PerChannelLUT_hls: finn-plus's HLSBackend hooks write `top_<node>.cpp`; `generate_params` copies the kernel
headers beside it and writes `kan_table.h` (the lane ROMs as a `static const` array [SIMD][NF * SF][2^b][PE]).
Python execution (exec_mode "") runs the base layer's lane model; C++ simulation without Vitis is
`hardware_checks.hls_cppsim.run_hls_cppsim`.
"""

from pathlib import Path

import numpy as np
from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend
from finn.util.data_packing import numpy_to_hls_code

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.custom_ops.fpgadataflow.hls.per_channel_lut_hls import KERNEL_HEADER as LUT_KERNEL_HEADER
from psa_finn.custom_ops.fpgadataflow.hls.per_channel_lut_hls import ROM_BINDINGS
from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear

KERNEL_HEADER = Path(__file__).with_name("kan_linear.hpp")
TABLE_HEADER = "kan_table.h"


class KANLinear_hls(KANLinear, HLSBackend):
    """KANLinear implemented by the psa_finn::kan_linear HLS kernel (II = 1, SIMD x PE lookups per cycle)."""

    def get_nodeattr_types(self):
        """Attributes of the layer and of the HLS backend."""
        my_attrs = {}
        my_attrs.update(KANLinear.get_nodeattr_types(self))
        my_attrs.update(HLSBackend.get_nodeattr_types(self))
        return my_attrs

    def generate_params(self, model, path, fpgapart=None):
        """Copy the kernel headers into path and write the lane ROMs as kan_table.h."""
        node = self.onnx_node
        tables = model.get_initializer(node.input[1])
        if tables is None:
            raise ValueError(f"{node.name}: the tables input {node.input[1]} must be an initializer")
        code = [f"// KANLinear tables of node {node.name}: MW={self.get_nodeattr('MW')}, MH={self.get_nodeattr('MH')}, "
                f"SIMD={self.get_nodeattr('SIMD')}, PE={self.get_nodeattr('PE')}; "
                "[s][nf * SF + sf][k][p] holds T[nf * PE + p][sf * SIMD + s][k]",
                "#ifndef PSA_FINN_KAN_TABLE_H", "#define PSA_FINN_KAN_TABLE_H", "#include <ap_int.h>",
                "static const " + numpy_to_hls_code(self.get_lane_tables(tables).astype(np.float32),
                                                    self.get_input_datatype(1), "kan_table", False, False),
                "#endif"]
        out_dir = Path(path)
        write_text_atomic(out_dir / TABLE_HEADER, "\n".join(code) + "\n")
        for header in (KERNEL_HEADER, LUT_KERNEL_HEADER):
            write_text_atomic(out_dir / header.name, header.read_text())

    def global_includes(self):
        """The kernel and this node's tables."""
        self.code_gen_dict["$GLOBALS$"] = [f'#include "{KERNEL_HEADER.name}"', f'#include "{TABLE_HEADER}"']

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

    def blackboxfunction(self):
        """Top-level function: one input and one output AXI stream."""
        self.code_gen_dict["$BLACKBOXFUNCTION$"] = [
            f"void {self.onnx_node.name}(hls::stream<ap_uint<{self.get_instream_width(0)}>> &in0_V, "
            f"hls::stream<ap_uint<{self.get_outstream_width()}>> &out0_V)"]

    def pragmas(self):
        """AXI-stream ports, free-running control, one ROM per input lane (PE entries wide) in the resolved style."""
        binding = ROM_BINDINGS[self.get_resolved_ram_style()]
        self.code_gen_dict["$PRAGMAS$"] = [
            "#pragma HLS INTERFACE axis port=in0_V",
            "#pragma HLS INTERFACE axis port=out0_V",
            "#pragma HLS INTERFACE ap_ctrl_none port=return",
            "#pragma HLS ARRAY_PARTITION variable=kan_table complete dim=1",
            "#pragma HLS ARRAY_PARTITION variable=kan_table complete dim=4",
            f"#pragma HLS BIND_STORAGE variable=kan_table {binding}",
        ]

    def execute_node(self, context, graph):
        """exec_mode "" runs the Python lane model; "cppsim"/"rtlsim" the generated code (needs Vitis)."""
        if self.get_nodeattr("exec_mode") == "":
            KANLinear.execute_node(self, context, graph)
        else:
            HLSBackend.execute_node(self, context, graph)
