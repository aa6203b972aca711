"""RTL backend of the IntegerRequant layer: generated plain Verilog (rtl/integer_requant_verilog.py).

`generate_hdl` (rtl/generated_verilog_backend.py) writes `<node>.v` into code_gen_dir_ipgen; exec_mode "rtlsim"
simulates it (Icarus Verilog or Verilator).
"""

from psa_finn.custom_ops.fpgadataflow.integer_requant import IntegerRequant
from psa_finn.custom_ops.fpgadataflow.rtl.generated_verilog_backend import GeneratedVerilogBackend
from psa_finn.custom_ops.fpgadataflow.rtl.integer_requant_verilog import (
    PIPELINE_LATENCY,
    RequantGeometry,
    generate_integer_requant_verilog,
)


class IntegerRequant_rtl(GeneratedVerilogBackend, IntegerRequant):
    """IntegerRequant as generated plain Verilog (AXI-stream in/out, FINN port names, PE lanes, II = 1)."""

    def get_geometry(self):
        """The generator's view of this node."""
        return RequantGeometry.from_layer(
            self, acc_bits=self.accumulator_bits(), shift=self.get_nodeattr("Shift"),
            rounding=self.get_nodeattr("Rounding"), out_min=self.get_nodeattr("OutMin"),
            out_max=self.get_nodeattr("OutMax"), multipliers=tuple(int(m) for m in self.multipliers()),
            biases=tuple(int(b) for b in self.biases()))

    def get_pipeline_latency(self):
        """Cycles from an accepted input word to its output word."""
        return PIPELINE_LATENCY

    def generated_files(self, model, fpgapart, top):
        """<top>.v (the constants are in the Verilog: no memory files)."""
        return {f"{top}.v": generate_integer_requant_verilog(top, self.get_geometry())}

    def rtlsim_input(self, context):
        """The input as the layer streams it (IntegerRequant.stream_input)."""
        return self.stream_input(context)
