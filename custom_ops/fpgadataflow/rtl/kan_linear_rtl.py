"""RTL backend of the KANLinear layer: generated plain Verilog, one ROM per input lane from $readmemh files.

`generate_hdl` (rtl/generated_verilog_backend.py) writes `<node>.v` (rtl/kan_linear_verilog.py) and the lanes' `.dat`
files into code_gen_dir_ipgen; exec_mode "rtlsim" simulates them (Icarus Verilog or Verilator).
"""

from psa_finn.custom_ops.fpgadataflow.embedded_table import embedded_table
from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear
from psa_finn.custom_ops.fpgadataflow.rtl.generated_verilog_backend import GeneratedVerilogBackend
from psa_finn.custom_ops.fpgadataflow.rtl.kan_linear_verilog import KanLayerGeometry, generate_kan_linear_verilog, \
    rom_file_name, rom_files


class KANLinear_rtl(GeneratedVerilogBackend, KANLinear):
    """KANLinear as generated plain Verilog (AXI-stream in/out, FINN port names, SIMD x PE lookups per cycle)."""

    def get_geometry(self):
        """The generator's view of this node (ram_style resolved)."""
        idt, tdt, odt = self.get_input_datatype(0), self.get_input_datatype(1), self.get_output_datatype()
        return KanLayerGeometry(mw=self.get_nodeattr("MW"), mh=self.get_nodeattr("MH"), simd=self.get_nodeattr("SIMD"),
                                pe=self.get_nodeattr("PE"), in_bits=idt.bitwidth(), in_signed=idt.signed(),
                                table_bits=tdt.bitwidth(), table_signed=tdt.signed(), acc_bits=odt.bitwidth(),
                                ram_style=self.get_resolved_ram_style(), live=self.live_lane_entries())

    def live_lane_entries(self) -> tuple:
        """The geometry's `live` ([SIMD][PE] flags), or () when every lane entry is live."""
        live = self.get_live_lane_entries()
        return () if live.all() else tuple(tuple(bool(v) for v in lane) for lane in live)

    def generated_files(self, model, fpgapart, top):
        """<top>.v and the lanes' memory files."""
        geometry = self.get_geometry()
        files = rom_files(top, geometry, self.get_lane_tables(embedded_table(self.onnx_node, model, "tables")))
        files[f"{top}.v"] = generate_kan_linear_verilog(top, geometry)
        return files

    def memory_file_names(self, top):
        """The $readmemh files of every input lane with a live entry (a lane of pruned edges only has no ROM)."""
        live = self.get_live_lane_entries()
        return [rom_file_name(top, lane) for lane in range(self.get_nodeattr("SIMD")) if live[lane].any()]
