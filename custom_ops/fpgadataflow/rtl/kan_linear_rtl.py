"""RTL backend of the KANLinear layer: generated plain Verilog, one ROM per input lane from $readmemh files.

`generate_hdl` (called by finn-plus's PrepareIP / step_hw_codegen) writes `<node>.v` and the lanes' `.dat` files into
code_gen_dir_ipgen. Execution: exec_mode "" runs the layer's Python lane model; "rtlsim" simulates the generated
Verilog with Icarus Verilog or Verilator (no Vivado), recording the cycle count in `cycles_rtlsim`.
"""

from pathlib import Path

import numpy as np
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import SIMULATORS, simulate_axis_stream
from psa_finn.custom_ops.fpgadataflow.rtl.kan_linear_verilog import KanLayerGeometry, generate_kan_linear_verilog, \
    rom_file_name, rom_files


class KANLinear_rtl(KANLinear, RTLBackend):
    """KANLinear as generated plain Verilog (AXI-stream in/out, FINN port names, SIMD x PE lookups per cycle)."""

    def get_nodeattr_types(self):
        """Attributes of the layer, of the RTL backend, and the simulator used for exec_mode "rtlsim"."""
        my_attrs = {"rtlsim_simulator": ("s", False, "auto", {"auto", *SIMULATORS})}
        my_attrs.update(KANLinear.get_nodeattr_types(self))
        my_attrs.update(RTLBackend.get_nodeattr_types(self))
        return my_attrs

    def get_geometry(self):
        """The generator's view of this node (ram_style resolved)."""
        idt, tdt, odt = self.get_input_datatype(0), self.get_input_datatype(1), self.get_output_datatype()
        return KanLayerGeometry(mw=self.get_nodeattr("MW"), mh=self.get_nodeattr("MH"), simd=self.get_nodeattr("SIMD"),
                                pe=self.get_nodeattr("PE"), in_bits=idt.bitwidth(), in_signed=idt.signed(),
                                table_bits=tdt.bitwidth(), table_signed=tdt.signed(), acc_bits=odt.bitwidth(),
                                ram_style=self.get_resolved_ram_style())

    def generate_hdl(self, model, fpgapart, clk):
        """Write <top>.v and the lanes' memory files into code_gen_dir_ipgen."""
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        if not code_gen_dir or not Path(code_gen_dir).is_dir():
            raise ValueError(f"{self.onnx_node.name}: code_gen_dir_ipgen {code_gen_dir!r} is not a folder; "
                             "run PrepareIP (step_hw_codegen) or set it before generate_hdl")
        tables = model.get_initializer(self.onnx_node.input[1])
        if tables is None:
            raise ValueError(f"{self.onnx_node.name}: the tables input {self.onnx_node.input[1]} must be an "
                             f"initializer")
        code_gen_dir = Path(code_gen_dir)
        top = self.get_verilog_top_module_name()
        geometry = self.get_geometry()
        for name, text in rom_files(top, geometry, self.get_lane_tables(tables)).items():
            write_text_atomic(code_gen_dir / name, text)
        write_text_atomic(code_gen_dir / f"{top}.v", generate_kan_linear_verilog(top, geometry))
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(code_gen_dir))
        self.set_nodeattr("ip_path", str(code_gen_dir))

    def get_rtl_file_list(self, abspath=False):
        """The generated top-level Verilog file (it holds the ROM module too)."""
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        prefix = self.get_nodeattr("code_gen_dir_ipgen") + "/" if abspath else ""
        return [f"{prefix}{top}.v"]

    def get_all_meminit_filenames(self, abspath=False):
        """The $readmemh files of every input lane."""
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        prefix = self.get_nodeattr("code_gen_dir_ipgen") + "/" if abspath else ""
        return [prefix + rom_file_name(top, lane) for lane in range(self.get_nodeattr("SIMD"))]

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
            KANLinear.execute_node(self, context, graph)
            return
        node = self.onnx_node
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        top = self.get_nodeattr("gen_top_module")
        if not (code_gen_dir and top and (Path(code_gen_dir) / f"{top}.v").is_file()):
            raise ValueError(f"{node.name}: no generated Verilog in {code_gen_dir!r}; run PrepareIP "
                             "(or generate_hdl) before exec_mode='rtlsim'")
        x = np.asarray(context[node.input[0]], dtype=np.float32)
        if x.shape != tuple(self.get_normal_input_shape(0)):
            raise ValueError(f"{node.name}: input shape {x.shape}, expected {self.get_normal_input_shape(0)}")
        geometry = self.get_geometry()
        words = npy_to_rtlsim_input(x.reshape(self.get_folded_input_shape(0)), self.get_input_datatype(0),
                                    geometry.in_stream_bits)
        result = simulate_axis_stream(
            self.get_rtl_file_list(abspath=True), top, geometry.in_stream_bits, geometry.out_stream_bits, words,
            self.get_number_output_values(), Path(code_gen_dir) / "rtlsim",
            support_files=self.get_all_meminit_filenames(abspath=True),
            simulator=self.get_nodeattr("rtlsim_simulator"))
        odt = self.get_output_datatype()
        y = rtlsim_output_to_npy(result.out_words, None, odt, self.get_folded_output_shape(0),
                                 geometry.out_stream_bits, odt.bitwidth())
        self.set_nodeattr("cycles_rtlsim", result.cycles)
        context[node.output[0]] = np.asarray(y, dtype=np.float32).reshape(self.get_normal_output_shape(0))
