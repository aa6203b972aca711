"""HLS backend of the PerChannelLUT layer: a self-contained kernel (per_channel_lut.hpp) plus a generated table header.

Code generation goes through finn-plus's HLSBackend hooks, so ``PrepareIP`` / ``step_hw_codegen`` write
``top_<node>.cpp`` and ``hls_syn_<node>.tcl`` as for any stock layer; ``generate_params`` puts next to them a copy of
the kernel header and ``lut_table.h`` (the lane ROMs as ``static const`` arrays). The kernel needs only ``ap_int.h``
and ``hls_stream.h`` (no finn-hlslib). Python execution (exec_mode "") runs the base layer's lane model; "cppsim" and
"rtlsim" go through the stock HLSBackend machinery (Vitis required).
"""

from pathlib import Path

import numpy as np
from finn.util.basic import is_versal
from finn.util.data_packing import numpy_to_hls_code

from psa_finn.custom_ops.fpgadataflow.embedded_table import embedded_table
from psa_finn.custom_ops.fpgadataflow.hls.table_kernel_backend import TableKernelBackend, table_header_text
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT

KERNEL_HEADER = Path(__file__).with_name("per_channel_lut.hpp")


class PerChannelLUT_hls(TableKernelBackend, PerChannelLUT):
    """PerChannelLUT implemented by the psa_finn::per_channel_lut_{full,lerp64} HLS kernels (II=1, PE lanes)."""

    KERNEL_HEADERS = (KERNEL_HEADER,)
    TABLE_HEADER = "lut_table.h"

    def table_arrays(self):
        """C++ names of the lane ROM banks, in the order of get_lane_tables()."""
        return ["lut_table"] if self.get_nodeattr("mode") == "full" else ["lut_even", "lut_odd"]

    def table_header(self, model):
        """lut_table.h: the lane ROM banks as static const arrays."""
        node = self.onnx_node
        table = embedded_table(node, model)
        odt = self.get_output_datatype()
        comment = (f"PerChannelLUT tables of node {node.name}: mode={self.get_nodeattr('mode')}, "
                   f"NumChannels={self.get_nodeattr('NumChannels')}, PE={self.get_nodeattr('PE')}; "
                   "[lane p][fold t] holds channel t * PE + p")
        arrays = [numpy_to_hls_code(bank.astype(np.float32), odt, name, False, False)
                  for name, bank in zip(self.table_arrays(), self.get_lane_tables(table))]
        return table_header_text("PSA_FINN_LUT_TABLE_H", comment, arrays)

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

    def pragmas(self):
        """AXI-stream ports, free-running control, one ROM per lane and bank bound to the resolved ram_style."""
        pragmas = self.stream_pragmas()
        for name in self.table_arrays():
            pragmas.append(f"#pragma HLS ARRAY_PARTITION variable={name} complete dim=1")
            pragmas.append(f"#pragma HLS BIND_STORAGE variable={name} {self.rom_binding()}")
        self.code_gen_dict["$PRAGMAS$"] = pragmas

    def code_generation_ipgen(self, model, fpgapart, clk):
        """Stock HLS code generation; URAM tables only on Versal, where URAM is initialised from the bitstream."""
        if self.get_resolved_ram_style() == "ultra" and not is_versal(fpgapart):
            raise ValueError(
                f"{self.onnx_node.name}: ram_style=ultra needs a Versal part (UltraScale+ URAM cannot be "
                f"initialised with the table); got {fpgapart}. Use ram_style block, distributed or auto."
            )
        super().code_generation_ipgen(model, fpgapart, clk)
