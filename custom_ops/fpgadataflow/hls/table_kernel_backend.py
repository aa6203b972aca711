"""The HLS backend shared by psa-finn's layers computed by a self-contained kernel from a generated table header.

`TableKernelBackend` is finn-plus's HLSBackend for a one-in, one-out AXI-stream layer whose kernel (`hls/*.hpp`,
needing only `ap_int.h` and `hls_stream.h`, no finn-hlslib) reads the lane ROMs from a generated header:
`generate_params` writes the header (`table_header`) and copies the kernel headers beside finn-plus's
`top_<node>.cpp`; the top function has FINN's stream names; exec_mode "" runs the layer's Python model, "cppsim" and
"rtlsim" the stock HLSBackend machinery (Vitis required). A backend lists it BEFORE its layer and says what differs:
KERNEL_HEADERS, TABLE_HEADER, `table_header`, `defines`, `docompute` and `pragmas` (`stream_pragmas` first).
"""

from abc import abstractmethod
from pathlib import Path

from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend

from psa_finn.common.atomic_files import write_text_atomic

# storage binding of the lane ROMs per resolved ram_style (URAM cannot hold a ROM: Versal RAM_S2P as finn does)
ROM_BINDINGS = {
    "distributed": "type=rom_1p impl=lutram",
    "block": "type=rom_1p impl=bram",
    "ultra": "type=ram_s2p impl=uram",
}


def table_header_text(guard: str, comment: str, arrays) -> str:
    """A C++ header `#include <ap_int.h>` + `arrays` (each a `static const` array definition) under include guard
    `guard`, headed by the comment line `comment`."""
    return "\n".join([f"// {comment}", f"#ifndef {guard}", f"#define {guard}", "#include <ap_int.h>",
                      *(f"static const {array}" for array in arrays), "#endif"]) + "\n"


class TableKernelBackend(HLSBackend):
    """HLSBackend of a layer computed by one of psa-finn's kernels from its generated table header."""

    KERNEL_HEADERS = ()  # paths of the kernel headers to copy, the layer's own kernel first
    TABLE_HEADER = ""  # file name of the generated table header

    @abstractmethod
    def table_header(self, model) -> str:
        """Text of the generated table header (table_header_text)."""

    def generate_params(self, model, path, fpgapart=None):
        """Write the table header into path and copy the kernel headers beside it."""
        out_dir = Path(path)
        write_text_atomic(out_dir / self.TABLE_HEADER, self.table_header(model))
        for header in self.KERNEL_HEADERS:
            write_text_atomic(out_dir / header.name, header.read_text())

    def global_includes(self):
        """The kernel and this node's tables."""
        self.code_gen_dict["$GLOBALS$"] = [f'#include "{self.KERNEL_HEADERS[0].name}"',
                                           f'#include "{self.TABLE_HEADER}"']

    def blackboxfunction(self):
        """Top-level function: one input and one output AXI stream."""
        self.code_gen_dict["$BLACKBOXFUNCTION$"] = [
            f"void {self.onnx_node.name}(hls::stream<ap_uint<{self.get_instream_width(0)}>> &in0_V, "
            f"hls::stream<ap_uint<{self.get_outstream_width()}>> &out0_V)"
        ]

    def stream_pragmas(self):
        """AXI-stream ports and free-running control."""
        return ["#pragma HLS INTERFACE axis port=in0_V", "#pragma HLS INTERFACE axis port=out0_V",
                "#pragma HLS INTERFACE ap_ctrl_none port=return"]

    def rom_binding(self):
        """BIND_STORAGE options of the lane ROMs for the resolved ram_style."""
        return ROM_BINDINGS[self.get_resolved_ram_style()]

    def execute_node(self, context, graph):
        """exec_mode "" runs the layer's Python lane model; "cppsim"/"rtlsim" the generated code (needs Vitis)."""
        if self.get_nodeattr("exec_mode") == "":
            # the layer's own execution: the class after HLSBackend in the method resolution order
            super(HLSBackend, self).execute_node(context, graph)
        else:
            HLSBackend.execute_node(self, context, graph)
