"""RTL backend of the PerChannelLUT layer: generated plain Verilog, one ROM per lane and bank from $readmemh files.

`generate_hdl` (rtl/generated_verilog_backend.py) writes `<node>.v` (rtl/per_channel_lut_verilog.py) and the lanes'
`.dat` memory files into code_gen_dir_ipgen; exec_mode "rtlsim" simulates them (Icarus Verilog or Verilator).
"""

from finn.util.basic import is_versal

from psa_finn.custom_ops.fpgadataflow.embedded_table import embedded_table
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT
from psa_finn.custom_ops.fpgadataflow.rtl.generated_verilog_backend import GeneratedVerilogBackend
from psa_finn.custom_ops.fpgadataflow.rtl.per_channel_lut_verilog import (
    PIPELINE_LATENCY,
    LutLayerGeometry,
    generate_per_channel_lut_verilog,
    rom_file_name,
    rom_files,
)


class PerChannelLUT_rtl(GeneratedVerilogBackend, PerChannelLUT):
    """PerChannelLUT as generated plain Verilog (AXI-stream in/out, FINN port names, PE lanes, II = 1)."""

    def get_geometry(self):
        """The generator's view of this node (bit widths, signedness, folding, mode, ram_style resolved)."""
        return LutLayerGeometry.from_layer(self, mode=self.get_nodeattr("mode"),
                                           ram_style=self.get_resolved_ram_style())

    def get_pipeline_latency(self):
        """Cycles from an accepted input word to its output word."""
        return PIPELINE_LATENCY[self.get_nodeattr("mode")]

    def generated_files(self, model, fpgapart, top):
        """<top>.v and the lanes' memory files; URAM only on Versal parts."""
        if self.get_resolved_ram_style() == "ultra" and not is_versal(fpgapart):
            raise ValueError(f"{self.onnx_node.name}: ram_style=ultra needs a Versal part (UltraScale+ URAM cannot "
                             f"be initialised with the table); got {fpgapart}. Use block, distributed or auto.")
        geometry = self.get_geometry()
        banks = self.get_lane_tables(embedded_table(self.onnx_node, model))
        files = rom_files(top, geometry, banks)
        files[f"{top}.v"] = generate_per_channel_lut_verilog(top, geometry, [bank.shape[2] for bank in banks])
        return files

    def memory_file_names(self, top):
        """The $readmemh files of every lane and bank."""
        geometry = self.get_geometry()
        return [rom_file_name(top, bank, lane) for bank in geometry.bank_names() for lane in range(geometry.pe)]
