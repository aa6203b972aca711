"""The RTL backend shared by psa-finn's layers whose Verilog is generated in Python (no finn-rtllib template).

`GeneratedVerilogBackend` is finn-plus's RTLBackend for a one-in, one-out AXI-stream layer: `generate_hdl` (called by
PrepareIP / step_hw_codegen) writes the files the layer generates into code_gen_dir_ipgen; exec_mode "rtlsim"
simulates them with Icarus Verilog or Verilator (rtl/axis_stream_sim.py, no Vivado) and records the cycle count in
`cycles_rtlsim`; any other exec_mode runs the layer's Python execution. A layer's backend lists it BEFORE the layer
(`class PerChannelLUT_rtl(GeneratedVerilogBackend, PerChannelLUT)`) and says only what differs: `get_geometry`
(the generator's view, with `in_stream_bits` / `out_stream_bits`), `generated_files` and `memory_file_names`.
"""

from abc import abstractmethod
from pathlib import Path

import numpy as np
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import SIMULATORS, simulate_axis_stream


class GeneratedVerilogBackend(RTLBackend):
    """RTLBackend of a layer whose Verilog (and $readmemh files) come from a Python generator."""

    def get_nodeattr_types(self):
        """The layer's and RTLBackend's attributes, and the simulator used for exec_mode "rtlsim"."""
        my_attrs = {"rtlsim_simulator": ("s", False, "auto", {"auto", *SIMULATORS})}
        my_attrs.update(super().get_nodeattr_types())
        return my_attrs

    # ---- what each layer says -------------------------------------------------------------------------------

    @abstractmethod
    def get_geometry(self):
        """The generator's view of this node; it has `in_stream_bits` and `out_stream_bits`."""

    @abstractmethod
    def generated_files(self, model, fpgapart, top):
        """{file name: text} of everything the layer generates for top module `top`, `<top>.v` included."""

    def memory_file_names(self, top):
        """Names of the $readmemh files among generated_files (none by default)."""
        return []

    def rtlsim_input(self, context):
        """The input tensor as the layer streams it (normal input shape)."""
        node = self.onnx_node
        x = np.asarray(context[node.input[0]])
        if x.shape != tuple(self.get_normal_input_shape(0)):
            raise ValueError(f"{node.name}: input shape {x.shape}, expected {self.get_normal_input_shape(0)}")
        return x

    # ---- RTLBackend -----------------------------------------------------------------------------------------

    def _top(self):
        return self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()

    def _prefix(self, abspath):
        return self.get_nodeattr("code_gen_dir_ipgen") + "/" if abspath else ""

    def generate_hdl(self, model, fpgapart, clk):
        """Write the generated files into code_gen_dir_ipgen and point gen_top_module, ipgen_path, ip_path at them."""
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        if not code_gen_dir or not Path(code_gen_dir).is_dir():
            raise ValueError(f"{self.onnx_node.name}: code_gen_dir_ipgen {code_gen_dir!r} is not a folder; "
                             "run PrepareIP (step_hw_codegen) or set it before generate_hdl")
        top = self.get_verilog_top_module_name()
        for name, text in self.generated_files(model, fpgapart, top).items():
            write_text_atomic(Path(code_gen_dir) / name, text)
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(code_gen_dir))
        self.set_nodeattr("ip_path", str(code_gen_dir))

    def get_rtl_file_list(self, abspath=False):
        """The generated top-level Verilog file (it holds every module of the layer)."""
        return [f"{self._prefix(abspath)}{self._top()}.v"]

    def get_all_meminit_filenames(self, abspath=False):
        """The $readmemh files of the layer's ROMs."""
        return [self._prefix(abspath) + name for name in self.memory_file_names(self._top())]

    def code_generation_ipi(self):
        """Vivado IPI: add the Verilog and memory files, instantiate the module."""
        files = self.get_rtl_file_list(abspath=True) + self.get_all_meminit_filenames(abspath=True)
        cmd = [f"add_files -norecurse {f}" for f in files]
        cmd.append(f"create_bd_cell -type module -reference {self.get_nodeattr('gen_top_module')} "
                   f"{self.onnx_node.name}")
        return cmd

    def execute_node(self, context, graph):
        """exec_mode "rtlsim": Icarus/Verilator run of the generated Verilog; otherwise the layer's Python model."""
        if self.get_nodeattr("exec_mode") != "rtlsim":
            # the layer's own execution: the class after RTLBackend in the method resolution order
            super(RTLBackend, self).execute_node(context, graph)
            return
        node = self.onnx_node
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        top = self.get_nodeattr("gen_top_module")
        if not (code_gen_dir and top and (Path(code_gen_dir) / f"{top}.v").is_file()):
            raise ValueError(f"{node.name}: no generated Verilog in {code_gen_dir!r}; run PrepareIP "
                             "(or generate_hdl) before exec_mode='rtlsim'")
        x = self.rtlsim_input(context).astype(np.float32)
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
