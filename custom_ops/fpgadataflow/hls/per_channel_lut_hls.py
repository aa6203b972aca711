"""HLS backend of the PerChannelLUT layer: a self-contained kernel (per_channel_lut.hpp) plus a generated table header.

Code generation goes through finn-plus's HLSBackend hooks, so ``PrepareIP`` / ``step_hw_codegen`` write
``top_<node>.cpp`` and ``hls_syn_<node>.tcl`` as for any stock layer; ``generate_params`` puts next to them a copy of
the kernel header and ``lut_table.h`` (the lane ROMs as ``static const`` arrays). The kernel needs only ``ap_int.h``
and ``hls_stream.h`` (no finn-hlslib). Python execution (exec_mode "") runs the base layer's lane model; "cppsim" and
"rtlsim" go through the stock HLSBackend machinery (Vitis required).
"""

from pathlib import Path

import numpy as np
from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend
from finn.util.basic import is_versal
from finn.util.data_packing import numpy_to_hls_code

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT

KERNEL_HEADER = Path(__file__).with_name("per_channel_lut.hpp")
TABLE_HEADER = "lut_table.h"
# storage binding of the lane ROMs per resolved ram_style (URAM cannot hold a ROM: Versal RAM_S2P as finn does)
ROM_BINDINGS = {
    "distributed": "type=rom_1p impl=lutram",
    "block": "type=rom_1p impl=bram",
    "ultra": "type=ram_s2p impl=uram",
}


class PerChannelLUT_hls(PerChannelLUT, HLSBackend):
    """PerChannelLUT implemented by the psa_finn::per_channel_lut_{full,lerp64} HLS kernels (II=1, PE lanes)."""

    def get_nodeattr_types(self):
        """Attributes of the layer and of the HLS backend."""
        my_attrs = {}
        my_attrs.update(PerChannelLUT.get_nodeattr_types(self))
        my_attrs.update(HLSBackend.get_nodeattr_types(self))
        return my_attrs

    def table_arrays(self):
        """C++ names of the lane ROM banks, in the order of get_lane_tables()."""
        return ["lut_table"] if self.get_nodeattr("mode") == "full" else ["lut_even", "lut_odd"]

    def generate_params(self, model, path, fpgapart=None):
        """Copy the kernel header into path and write the lane tables as lut_table.h."""
        node = self.onnx_node
        table = model.get_initializer(node.input[1])
        if table is None:
            raise ValueError(f"{node.name}: the table input {node.input[1]} must be an initializer")
        odt = self.get_output_datatype()
        code = [
            f"// PerChannelLUT tables of node {node.name}: mode={self.get_nodeattr('mode')}, "
            f"NumChannels={self.get_nodeattr('NumChannels')}, PE={self.get_nodeattr('PE')}; "
            "[lane p][fold t] holds channel t * PE + p",
            "#ifndef PSA_FINN_LUT_TABLE_H",
            "#define PSA_FINN_LUT_TABLE_H",
            "#include <ap_int.h>",
        ]
        for name, bank in zip(self.table_arrays(), self.get_lane_tables(table)):
            code.append("static const " + numpy_to_hls_code(bank.astype(np.float32), odt, name, False, False))
        code.append("#endif")
        out_dir = Path(path)
        write_text_atomic(out_dir / TABLE_HEADER, "\n".join(code) + "\n")
        write_text_atomic(out_dir / KERNEL_HEADER.name, KERNEL_HEADER.read_text())

    def global_includes(self):
        """The kernel and this node's tables."""
        self.code_gen_dict["$GLOBALS$"] = [f'#include "{KERNEL_HEADER.name}"', f'#include "{TABLE_HEADER}"']

    def defines(self, var):
        """Template parameters of the kernel call."""
        self.code_gen_dict["$DEFINES$"] = [
            f"constexpr unsigned TMEM = {self.calc_tmem()};",
            f"constexpr unsigned PE = {self.get_nodeattr('PE')};",
            f"constexpr unsigned ENTRIES = {self.get_entries()};",
            f"constexpr unsigned NUM_REPS = {int(np.prod(self.get_nodeattr('numInputVectors')))};",
            f"using TI = {self.get_input_datatype(0).get_hls_datatype_str()};",
            f"using TO = {self.get_output_datatype().get_hls_datatype_str()};",
        ]

    def docompute(self):
        """One call of the kernel for this node's mode."""
        kernel = f"psa_finn::per_channel_lut_{self.get_nodeattr('mode')}<TMEM, PE, ENTRIES, TI, TO>"
        tables = ", ".join(self.table_arrays())
        self.code_gen_dict["$DOCOMPUTE$"] = [f"{kernel}(in0_V, out0_V, {tables}, NUM_REPS);"]

    def blackboxfunction(self):
        """Top-level function: one input and one output AXI stream."""
        self.code_gen_dict["$BLACKBOXFUNCTION$"] = [
            f"void {self.onnx_node.name}(hls::stream<ap_uint<{self.get_instream_width(0)}>> &in0_V, "
            f"hls::stream<ap_uint<{self.get_outstream_width()}>> &out0_V)"
        ]

    def pragmas(self):
        """AXI-stream ports, free-running control, one ROM per lane and bank bound to the resolved ram_style."""
        binding = ROM_BINDINGS[self.get_resolved_ram_style()]
        pragmas = [
            "#pragma HLS INTERFACE axis port=in0_V",
            "#pragma HLS INTERFACE axis port=out0_V",
            "#pragma HLS INTERFACE ap_ctrl_none port=return",
        ]
        for name in self.table_arrays():
            pragmas.append(f"#pragma HLS ARRAY_PARTITION variable={name} complete dim=1")
            pragmas.append(f"#pragma HLS BIND_STORAGE variable={name} {binding}")
        self.code_gen_dict["$PRAGMAS$"] = pragmas

    def code_generation_ipgen(self, model, fpgapart, clk):
        """Stock HLS code generation; URAM tables only on Versal, where URAM is initialised from the bitstream."""
        if self.get_resolved_ram_style() == "ultra" and not is_versal(fpgapart):
            raise ValueError(
                f"{self.onnx_node.name}: ram_style=ultra needs a Versal part (UltraScale+ URAM cannot be "
                f"initialised with the table); got {fpgapart}. Use ram_style block, distributed or auto."
            )
        super().code_generation_ipgen(model, fpgapart, clk)

    def execute_node(self, context, graph):
        """exec_mode "" runs the Python lane model; "cppsim"/"rtlsim" the generated code (needs Vitis)."""
        if self.get_nodeattr("exec_mode") == "":
            PerChannelLUT.execute_node(self, context, graph)
        else:
            HLSBackend.execute_node(self, context, graph)
