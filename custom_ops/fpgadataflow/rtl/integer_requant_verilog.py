"""Plain-Verilog generator for the IntegerRequant streaming layer (no SystemVerilog, no finn-rtllib).

FINN's AXI-stream ports (ap_clk, ap_rst_n, in0_V_*, out0_V_*); each word carries PE consecutive channels (lane p of
fold step t is channel t * PE + p, lane 0 in the least significant bits). Per lane, two pipeline stages:
  1. v = M * x + B on W signed bits (M, B: constants when a lane serves one channel, else a case ROM on the fold
     counter; a constant power-of-two M is a shift);
  2. q = v >>> S, r = v[S-1:0]; up = r[S-1] & (|r[S-2:0] | q[0]) (half-even) or r[S-1] (half-up);
     y = clip(q + up, OutMin, OutMax), registered.
The pipeline stalls as a whole when the output is not accepted (`en = !v2 || out_ready`); one word per cycle,
latency PIPELINE_LATENCY cycles.
"""

from dataclasses import dataclass

from psa_finn.custom_ops.integer_requant import ROUNDINGS

PIPELINE_LATENCY = 2


@dataclass(frozen=True)
class RequantGeometry:
    """What the generated hardware depends on."""

    num_channels: int
    pe: int
    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool
    acc_bits: int
    shift: int
    rounding: str
    out_min: int
    out_max: int
    multipliers: tuple
    biases: tuple

    def __post_init__(self):
        if self.pe < 1 or self.num_channels % self.pe != 0:
            raise ValueError(f"IntegerRequant_rtl: PE={self.pe} must divide NumChannels={self.num_channels}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"IntegerRequant_rtl: rounding {self.rounding!r} is not one of {ROUNDINGS}")
        if self.shift < 1 or self.acc_bits <= self.shift:
            raise ValueError(f"IntegerRequant_rtl: need 1 <= Shift < accumulator bits, got Shift={self.shift}, "
                             f"{self.acc_bits} bits")
        if len(self.multipliers) != self.num_channels or len(self.biases) != self.num_channels:
            raise ValueError("IntegerRequant_rtl: one multiplier and one bias per channel")

    @property
    def tmem(self) -> int:
        """Channels per lane."""
        return self.num_channels // self.pe

    @property
    def in_stream_bits(self) -> int:
        """TDATA width of the input stream (byte aligned)."""
        return _roundup8(self.pe * self.in_bits)

    @property
    def out_stream_bits(self) -> int:
        """TDATA width of the output stream (byte aligned)."""
        return _roundup8(self.pe * self.out_bits)

    def lane_channels(self, lane: int) -> list:
        """Channel of each fold step t of a lane."""
        return [t * self.pe + lane for t in range(self.tmem)]


def _roundup8(bits: int) -> int:
    return (bits + 7) // 8 * 8


def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _literal(value: int, bits: int) -> str:
    """A sized signed Verilog literal (two's complement hex)."""
    return f"{bits}'sh{value & ((1 << bits) - 1):x}"


def _lane(g: RequantGeometry, lane: int) -> str:
    w, s, n = g.acc_bits, g.shift, g.out_bits
    lsb = lane * g.in_bits
    top = f"in0_V_TDATA[{lsb + g.in_bits - 1}]" if g.in_signed else "1'b0"
    x_ext = f"{{{{{w - g.in_bits}{{{top}}}}}, in0_V_TDATA[{lsb + g.in_bits - 1}:{lsb}]}}" if w > g.in_bits else \
        f"in0_V_TDATA[{lsb + g.in_bits - 1}:{lsb}]"
    channels = g.lane_channels(lane)
    lines = [f"  // lane {lane}: channels {', '.join(map(str, channels[:4]))}{', ...' if len(channels) > 4 else ''}",
             f"  wire signed [{w - 1}:0] x_{lane} = {x_ext};"]
    if g.tmem == 1:
        c = channels[0]
        lines += [f"  wire signed [{w - 1}:0] m_{lane} = {_literal(g.multipliers[c], w)};",
                  f"  wire signed [{w - 1}:0] b_{lane} = {_literal(g.biases[c], w)};"]
    else:
        shared = len({g.multipliers[c] for c in channels}) == 1
        lines.append(f"  reg signed [{w - 1}:0] {'' if shared else f'm_{lane}, '}b_{lane};")
        if shared:
            lines.insert(len(lines) - 1, f"  wire signed [{w - 1}:0] m_{lane} = "
                                         f"{_literal(g.multipliers[channels[0]], w)};")
        cases = []
        for t, c in enumerate(channels):
            m_part = "" if shared else f"m_{lane} = {_literal(g.multipliers[c], w)}; "
            cases.append(f"      {_clog2(g.tmem)}'d{t}: begin {m_part}b_{lane} = {_literal(g.biases[c], w)}; end")
        default_m = "" if shared else f"m_{lane} = {w}'sd0; "
        lines += ["  always @* begin", f"    case (fold)", *cases,
                  f"      default: begin {default_m}b_{lane} = {w}'sd0; end", "    endcase", "  end"]
    remainder_rest = f"|v_{lane}[{s - 2}:0]" if s >= 2 else "1'b0"
    tie_rule = f"v_{lane}[{s - 1}]" if g.rounding == "half_up" else \
        f"v_{lane}[{s - 1}] & ({remainder_rest} | v_{lane}[{s}])"
    qw = w - s + 1  # q + up without overflow
    lines += [
        f"  reg signed [{w - 1}:0] v_{lane};  // stage 1: M * x + B",
        f"  wire signed [{qw - 1}:0] q_{lane} = {{v_{lane}[{w - 1}], v_{lane}[{w - 1}:{s}]}};  // v >>> S",
        f"  wire up_{lane} = {tie_rule};  // round {g.rounding.replace('_', ' ')}",
        f"  wire signed [{qw - 1}:0] y_{lane} = q_{lane} + {{{{{qw - 1}{{1'b0}}}}, up_{lane}}};",
        f"  reg [{n - 1}:0] out_{lane};  // stage 2: clip",
        "  always @(posedge ap_clk) begin",
        "    if (en) begin",
        f"      v_{lane} <= x_{lane} * m_{lane} + b_{lane};",
        f"      out_{lane} <= (y_{lane} < {_literal(g.out_min, qw)}) ? {_literal(g.out_min, n)} :",
        f"                 (y_{lane} > {_literal(g.out_max, qw)}) ? {_literal(g.out_max, n)} : y_{lane}[{n - 1}:0];",
        "    end",
        "  end",
        f"  assign out0_V_TDATA[{lane * n + n - 1}:{lane * n}] = out_{lane};",
    ]
    return "\n".join(lines) + "\n"


def generate_integer_requant_verilog(top: str, g: RequantGeometry) -> str:
    """Verilog source of the layer: module `top`."""
    pad_bits = g.out_stream_bits - g.pe * g.out_bits
    pad = f"  assign out0_V_TDATA[{g.out_stream_bits - 1}:{g.pe * g.out_bits}] = {pad_bits}'d0;\n" if pad_bits \
        else ""
    lanes = "".join(_lane(g, lane) for lane in range(g.pe))
    return f"""// Generated by psa-finn (IntegerRequant_rtl): NumChannels {g.num_channels}, PE {g.pe},
// input {g.in_bits} bits {'signed' if g.in_signed else 'unsigned'}, y = clip(round((M x + B) / 2^{g.shift}), {g.out_min}, {g.out_max}) on
// {g.acc_bits}-bit M x + B, rounding {g.rounding}; latency {PIPELINE_LATENCY} cycles, one word per cycle.
module {top} (
  input ap_clk,
  input ap_rst_n,
  output in0_V_TREADY,
  input in0_V_TVALID,
  input [{g.in_stream_bits - 1}:0] in0_V_TDATA,
  input out0_V_TREADY,
  output out0_V_TVALID,
  output [{g.out_stream_bits - 1}:0] out0_V_TDATA
);
  reg v1, v2;  // valid bit of each pipeline stage
  reg [{_clog2(g.tmem) - 1}:0] fold;  // fold step t of the next input word
  wire en = !v2 || out0_V_TREADY;  // the whole pipeline advances together
  assign in0_V_TREADY = en;
  assign out0_V_TVALID = v2;
  always @(posedge ap_clk) begin
    if (!ap_rst_n) begin
      fold <= 0;
      v1 <= 1'b0;
      v2 <= 1'b0;
    end else begin
      if (in0_V_TVALID && en) begin
        fold <= (fold == {g.tmem - 1}) ? 0 : fold + 1'b1;
      end
      if (en) begin
        v1 <= in0_V_TVALID;
        v2 <= v1;
      end
    end
  end
{lanes}{pad}endmodule
"""
