"""RTL backend of the PerChannelLUT layer: generated plain Verilog, one ROM per lane and bank from $readmemh files.

`generate_hdl` (called by finn-plus's PrepareIP / step_hw_codegen) writes `<node>.v` and the lanes' `.dat` memory
files into code_gen_dir_ipgen. Execution: exec_mode "" runs the layer's Python lane model; "rtlsim" simulates the
generated Verilog with Icarus Verilog or Verilator (no Vivado), recording the cycle count in `cycles_rtlsim`.
"""

from pathlib import Path

import numpy as np
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend
from finn.util.basic import is_versal
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT
from psa_finn.custom_ops.fpgadataflow.rtl.per_channel_lut_verilog import (
    PIPELINE_LATENCY,
    LutLayerGeometry,
    generate_per_channel_lut_verilog,
    rom_file_name,
    rom_files,
)
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import SIMULATORS, simulate_axis_stream


class PerChannelLUT_rtl(PerChannelLUT, RTLBackend):
    """PerChannelLUT as generated plain Verilog (AXI-stream in/out, FINN port names, PE lanes, II = 1)."""

    def get_nodeattr_types(self):
        """Attributes of the layer, of the RTL backend, and the simulator used for exec_mode "rtlsim"."""
        my_attrs = {"rtlsim_simulator": ("s", False, "auto", {"auto", *SIMULATORS})}
        my_attrs.update(PerChannelLUT.get_nodeattr_types(self))
        my_attrs.update(RTLBackend.get_nodeattr_types(self))
        return my_attrs

    def get_geometry(self):
        """The generator's view of this node (bit widths, signedness, folding, mode, ram_style resolved)."""
        idt = self.get_input_datatype(0)
        odt = self.get_output_datatype()
        return LutLayerGeometry(
            num_channels=self.get_nodeattr("NumChannels"), pe=self.get_nodeattr("PE"),
            in_bits=idt.bitwidth(), in_signed=idt.signed(), out_bits=odt.bitwidth(), out_signed=odt.signed(),
            mode=self.get_nodeattr("mode"), ram_style=self.get_resolved_ram_style())

    def get_pipeline_latency(self):
        """Cycles from an accepted input word to its output word."""
        return PIPELINE_LATENCY[self.get_nodeattr("mode")]

    def _table(self, model):
        node = self.onnx_node
        table = model.get_initializer(node.input[1])
        if table is None:
            raise ValueError(f"{node.name}: the table input {node.input[1]} must be an initializer")
        return table

    def generate_hdl(self, model, fpgapart, clk):
        """Write <top>.v and the lanes' memory files into code_gen_dir_ipgen."""
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        if not code_gen_dir or not Path(code_gen_dir).is_dir():
            raise ValueError(f"{self.onnx_node.name}: code_gen_dir_ipgen {code_gen_dir!r} is not a folder; "
                             "run PrepareIP (step_hw_codegen) or set it before generate_hdl")
        code_gen_dir = Path(code_gen_dir)
        if self.get_resolved_ram_style() == "ultra" and not is_versal(fpgapart):
            raise ValueError(f"{self.onnx_node.name}: ram_style=ultra needs a Versal part (UltraScale+ URAM cannot "
                             f"be initialised with the table); got {fpgapart}. Use block, distributed or auto.")
        top = self.get_verilog_top_module_name()
        geometry = self.get_geometry()
        banks = self.get_lane_tables(self._table(model))
        for name, text in rom_files(top, geometry, banks).items():
            write_text_atomic(code_gen_dir / name, text)
        verilog = generate_per_channel_lut_verilog(top, geometry, [bank.shape[2] for bank in banks])
        write_text_atomic(code_gen_dir / f"{top}.v", verilog)
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(code_gen_dir))
        self.set_nodeattr("ip_path", str(code_gen_dir))

    def get_rtl_file_list(self, abspath=False):
        """The generated top-level Verilog file (it holds the ROM module too)."""
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        prefix = self.get_nodeattr("code_gen_dir_ipgen") + "/" if abspath else ""
        return [f"{prefix}{top}.v"]

    def get_all_meminit_filenames(self, abspath=False):
        """The $readmemh files of every lane and bank."""
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        prefix = self.get_nodeattr("code_gen_dir_ipgen") + "/" if abspath else ""
        geometry = self.get_geometry()
        return [prefix + rom_file_name(top, bank, lane)
                for bank in geometry.bank_names() for lane in range(geometry.pe)]

    def code_generation_ipi(self):
        """Vivado IPI: add the Verilog and memory files, instantiate the module."""
        files = self.get_rtl_file_list(abspath=True) + self.get_all_meminit_filenames(abspath=True)
        cmd = [f"add_files -norecurse {f}" for f in files]
        cmd.append(f"create_bd_cell -type module -reference {self.get_nodeattr('gen_top_module')} "
                   f"{self.onnx_node.name}")
        return cmd

    def execute_node(self, context, graph):
        """exec_mode "" (or "cppsim"): Python lane model; "rtlsim": Icarus/Verilator run of the generated Verilog."""
        if self.get_nodeattr("exec_mode") != "rtlsim":
            PerChannelLUT.execute_node(self, context, graph)
            return
        node = self.onnx_node
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        top = self.get_nodeattr("gen_top_module")
        if not (code_gen_dir and top and (Path(code_gen_dir) / f"{top}.v").is_file()):
            raise ValueError(f"{node.name}: no generated Verilog in {code_gen_dir!r}; run PrepareIP "
                             "(or generate_hdl) before exec_mode='rtlsim'")
        code_gen_dir = Path(code_gen_dir)
        x = np.asarray(context[node.input[0]], dtype=np.float32)
        if x.shape != tuple(self.get_normal_input_shape(0)):
            raise ValueError(f"{node.name}: input shape {x.shape}, expected {self.get_normal_input_shape(0)}")
        geometry = self.get_geometry()
        words = npy_to_rtlsim_input(x.reshape(self.get_folded_input_shape(0)), self.get_input_datatype(0),
                                    geometry.in_stream_bits)
        result = simulate_axis_stream(
            self.get_rtl_file_list(abspath=True), top, geometry.in_stream_bits, geometry.out_stream_bits, words,
            len(words), code_gen_dir / "rtlsim", support_files=self.get_all_meminit_filenames(abspath=True),
            simulator=self.get_nodeattr("rtlsim_simulator"))
        odt = self.get_output_datatype()
        y = rtlsim_output_to_npy(result.out_words, None, odt, self.get_folded_output_shape(0),
                                 geometry.out_stream_bits, odt.bitwidth())
        self.set_nodeattr("cycles_rtlsim", result.cycles)
        context[node.output[0]] = np.asarray(y, dtype=np.float32).reshape(self.get_normal_output_shape(0))
