"""RTL backend of the IntegerRequant layer: generated plain Verilog (rtl/integer_requant_verilog.py).

`generate_hdl` (finn-plus's PrepareIP / step_hw_codegen) writes `<node>.v` into code_gen_dir_ipgen. Execution:
exec_mode "" runs the layer's Python arithmetic; "rtlsim" simulates the generated Verilog with Icarus Verilog or
Verilator (no Vivado), recording the cycle count in `cycles_rtlsim`.
"""

from pathlib import Path

import numpy as np
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy

from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.custom_ops.fpgadataflow.integer_requant import IntegerRequant
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import SIMULATORS, simulate_axis_stream
from psa_finn.custom_ops.fpgadataflow.rtl.integer_requant_verilog import (
    PIPELINE_LATENCY,
    RequantGeometry,
    generate_integer_requant_verilog,
)


class IntegerRequant_rtl(IntegerRequant, RTLBackend):
    """IntegerRequant as generated plain Verilog (AXI-stream in/out, FINN port names, PE lanes, II = 1)."""

    def get_nodeattr_types(self):
        """Attributes of the layer, of the RTL backend, and the simulator used for exec_mode "rtlsim"."""
        my_attrs = {"rtlsim_simulator": ("s", False, "auto", {"auto", *SIMULATORS})}
        my_attrs.update(IntegerRequant.get_nodeattr_types(self))
        my_attrs.update(RTLBackend.get_nodeattr_types(self))
        return my_attrs

    def get_geometry(self):
        """The generator's view of this node."""
        idt = self.get_input_datatype(0)
        odt = self.get_output_datatype()
        return RequantGeometry(
            num_channels=self.get_nodeattr("NumChannels"), pe=self.get_nodeattr("PE"), in_bits=idt.bitwidth(),
            in_signed=idt.signed(), out_bits=odt.bitwidth(), out_signed=odt.signed(),
            acc_bits=self.accumulator_bits(), shift=self.get_nodeattr("Shift"),
            rounding=self.get_nodeattr("Rounding"), out_min=self.get_nodeattr("OutMin"),
            out_max=self.get_nodeattr("OutMax"), multipliers=tuple(int(m) for m in self.multipliers()),
            biases=tuple(int(b) for b in self.biases()))

    def get_pipeline_latency(self):
        """Cycles from an accepted input word to its output word."""
        return PIPELINE_LATENCY

    def generate_hdl(self, model, fpgapart, clk):
        """Write <top>.v into code_gen_dir_ipgen."""
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        if not code_gen_dir or not Path(code_gen_dir).is_dir():
            raise ValueError(f"{self.onnx_node.name}: code_gen_dir_ipgen {code_gen_dir!r} is not a folder; "
                             "run PrepareIP (step_hw_codegen) or set it before generate_hdl")
        top = self.get_verilog_top_module_name()
        write_text_atomic(Path(code_gen_dir) / f"{top}.v", generate_integer_requant_verilog(top, self.get_geometry()))
        self.set_nodeattr("gen_top_module", top)
        self.set_nodeattr("ipgen_path", str(code_gen_dir))
        self.set_nodeattr("ip_path", str(code_gen_dir))

    def get_rtl_file_list(self, abspath=False):
        """The generated Verilog file."""
        top = self.get_nodeattr("gen_top_module") or self.get_verilog_top_module_name()
        prefix = self.get_nodeattr("code_gen_dir_ipgen") + "/" if abspath else ""
        return [f"{prefix}{top}.v"]

    def code_generation_ipi(self):
        """Vivado IPI: add the Verilog file, instantiate the module."""
        cmd = [f"add_files -norecurse {f}" for f in self.get_rtl_file_list(abspath=True)]
        cmd.append(f"create_bd_cell -type module -reference {self.get_nodeattr('gen_top_module')} "
                   f"{self.onnx_node.name}")
        return cmd

    def execute_node(self, context, graph):
        """exec_mode "" (or "cppsim"): Python arithmetic; "rtlsim": Icarus/Verilator run of the generated Verilog."""
        if self.get_nodeattr("exec_mode") != "rtlsim":
            IntegerRequant.execute_node(self, context, graph)
            return
        node = self.onnx_node
        code_gen_dir = self.get_nodeattr("code_gen_dir_ipgen")
        top = self.get_nodeattr("gen_top_module")
        if not (code_gen_dir and top and (Path(code_gen_dir) / f"{top}.v").is_file()):
            raise ValueError(f"{node.name}: no generated Verilog in {code_gen_dir!r}; run PrepareIP "
                             "(or generate_hdl) before exec_mode='rtlsim'")
        x = self.stream_input(context).astype(np.float32)
        geometry = self.get_geometry()
        words = npy_to_rtlsim_input(x.reshape(self.get_folded_input_shape(0)), self.get_input_datatype(0),
                                    geometry.in_stream_bits)
        result = simulate_axis_stream(self.get_rtl_file_list(abspath=True), top, geometry.in_stream_bits,
                                      geometry.out_stream_bits, words, len(words), Path(code_gen_dir) / "rtlsim",
                                      simulator=self.get_nodeattr("rtlsim_simulator"))
        odt = self.get_output_datatype()
        y = rtlsim_output_to_npy(result.out_words, None, odt, self.get_folded_output_shape(0),
                                 geometry.out_stream_bits, odt.bitwidth())
        self.set_nodeattr("cycles_rtlsim", result.cycles)
        context[node.output[0]] = np.asarray(y, dtype=np.float32).reshape(self.get_normal_output_shape(0))
