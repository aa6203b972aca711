"""Verilog text shared by the generated streaming layers (PerChannelLUT, KANLinear, IntegerRequant).

Each layer's generator (`rtl/*_verilog.py`) writes its own datapath and asks this module for the parts they share:
the module with FINN's AXI-stream ports and its byte padding, the stream widths FINN pads to bytes, the $readmemh
ROM module, sign extension and table indices, and the valid pipeline that stalls as a whole
(`en = !valid_out || out_ready`) with its fold counter.
"""

from qonnx.util.basic import roundup_to_integer_multiple

# FINN ram_style -> the ram_style attribute that Vivado and yosys read ("auto" sets none).
RAM_STYLE_ATTRIBUTE = {"auto": "", "block": "block", "distributed": "distributed", "ultra": "ultra"}

NEWLINE = "\n"


def clog2(n: int) -> int:
    """Address bits of n words (at least 1, as a Verilog vector needs)."""
    return max(1, (n - 1).bit_length())


def stream_bits(bits: int) -> int:
    """TDATA width of a stream carrying `bits` payload bits (byte aligned, as FINN pads it)."""
    return roundup_to_integer_multiple(bits, 8)


def check_ram_style(layer: str, ram_style: str):
    """Raise ValueError naming `layer` when ram_style is not one FINN knows."""
    if ram_style not in RAM_STYLE_ATTRIBUTE:
        raise ValueError(f"{layer}: ram_style {ram_style!r} is not one of {sorted(RAM_STYLE_ATTRIBUTE)}")


def sign_bit(bus: str, bit: int, signed: bool) -> str:
    """The bit that extends a value whose top bit is bus[bit]: that bit when signed, else 1'b0."""
    return f"{bus}[{bit}]" if signed else "1'b0"


def extend(value: str, top_bit: str, extra: int) -> str:
    """`value` extended by `extra` copies of `top_bit` (see sign_bit)."""
    return f"{{{{{extra}{{{top_bit}}}}}, {value}}}"


def table_index(bus: str, msb: int, lsb: int, signed: bool) -> str:
    """Index k = x - min(type) of the code in bus[msb:lsb]: the code itself, or with its MSB flipped when signed."""
    if not signed:
        return f"{bus}[{msb}:{lsb}]"
    if msb == lsb:
        return f"~{bus}[{msb}]"
    return f"{{~{bus}[{msb}], {bus}[{msb - 1}:{lsb}]}}"


def rom_module(top: str, ram_style: str, keep_hierarchy: bool = False) -> str:
    """Module `<top>_rom`: DEPTH x WIDTH words from $readmemh(INIT_FILE), synchronous read with enable.

    keep_hierarchy: the ROM is synthesised on its own, not merged with the logic of its address (KANLinear: yosys'
    abc otherwise re-maps every lane ROM through the input word's stream / buffer mux, several times larger)."""
    attribute = RAM_STYLE_ATTRIBUTE[ram_style]
    attr_text = f'(* ram_style = "{attribute}" *) ' if attribute else ""
    keep_text = "(* keep_hierarchy *)\n" if keep_hierarchy else ""
    return f"""// One ROM bank of one lane: DEPTH words of WIDTH bits, synchronous read with enable.
{keep_text}module {top}_rom #(
  parameter DEPTH = 1,
  parameter WIDTH = 1,
  parameter ADDR_BITS = 1,
  parameter INIT_FILE = ""
) (
  input clk,
  input en,
  input [ADDR_BITS-1:0] addr,
  output reg [WIDTH-1:0] rd
);
  {attr_text}reg [WIDTH-1:0] mem [0:DEPTH-1];
  initial $readmemh(INIT_FILE, mem);
  always @(posedge clk) begin
    if (en) rd <= mem[addr];
  end
endmodule
"""


def axis_module(top: str, in_stream_bits: int, out_stream_bits: int, payload_bits: int, body: str) -> str:
    """Module `top` with FINN's AXI-stream ports (ap_clk, ap_rst_n, in0_V_TDATA/TVALID/TREADY, out0_V_*), `body`
    inside, and TDATA's byte padding above the `payload_bits` output bits tied to zero."""
    pad_bits = out_stream_bits - payload_bits
    pad = f"  assign out0_V_TDATA[{out_stream_bits - 1}:{payload_bits}] = {pad_bits}'d0;\n" if pad_bits else ""
    return f"""module {top} (
  input ap_clk,
  input ap_rst_n,
  output in0_V_TREADY,
  input in0_V_TVALID,
  input [{in_stream_bits - 1}:0] in0_V_TDATA,
  input out0_V_TREADY,
  output out0_V_TVALID,
  output [{out_stream_bits - 1}:0] out0_V_TDATA
);
{body}{pad}endmodule
"""


def stall_pipeline(latency: int, tmem: int, state=(), state_reset=(), state_step=()) -> str:
    """Control of a pipeline of `latency` stages taking one word per cycle and stalling as a whole.

    Valid bits v1..v<latency>, `en = !v<latency> || out0_V_TREADY`, the fold counter `fold` over `tmem` steps
    (advanced with each accepted input word), and further registers: `state` (declarations), `state_reset`
    (under reset) and `state_step` (on each accepted word), each a list of Verilog lines.
    """
    valid_regs = [f"v{i}" for i in range(1, latency + 1)]
    declarations = [f"  reg [{clog2(tmem) - 1}:0] fold;  // fold step t of the next input word", *state]
    reset = ["      fold <= 0;", *state_reset] + [f"      {v} <= 1'b0;" for v in valid_regs]
    step = [f"        fold <= (fold == {tmem - 1}) ? 0 : fold + 1'b1;", *state_step]
    shift = ["        v1 <= in0_V_TVALID;"] + [
        f"        {valid_regs[i]} <= {valid_regs[i - 1]};" for i in range(1, latency)]
    return f"""  reg {', '.join(valid_regs)};  // valid bit of each pipeline stage
{NEWLINE.join(declarations)}
  wire en = !{valid_regs[-1]} || out0_V_TREADY;  // the whole pipeline advances together
  assign in0_V_TREADY = en;
  assign out0_V_TVALID = {valid_regs[-1]};
  always @(posedge ap_clk) begin
    if (!ap_rst_n) begin
{NEWLINE.join(reset)}
    end else begin
      if (in0_V_TVALID && en) begin
{NEWLINE.join(step)}
      end
      if (en) begin
{NEWLINE.join(shift)}
      end
    end
  end
"""
