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

from psa_finn.custom_ops.fpgadataflow.rtl.channel_lanes import ChannelLanes
from psa_finn.custom_ops.fpgadataflow.rtl.verilog_text import axis_module, clog2, extend, sign_bit, stall_pipeline
from psa_finn.custom_ops.integer_requant import ROUNDINGS

PIPELINE_LATENCY = 2


@dataclass(frozen=True, kw_only=True)
class RequantGeometry(ChannelLanes):
    """What the generated hardware depends on: the channel lanes and the requantizer's constants."""

    acc_bits: int
    shift: int
    rounding: str
    out_min: int
    out_max: int
    multipliers: tuple
    biases: tuple

    layer = "IntegerRequant_rtl"

    def __post_init__(self):
        super().__post_init__()
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"IntegerRequant_rtl: rounding {self.rounding!r} is not one of {ROUNDINGS}")
        if self.shift < 1 or self.acc_bits <= self.shift:
            raise ValueError(f"IntegerRequant_rtl: need 1 <= Shift < accumulator bits, got Shift={self.shift}, "
                             f"{self.acc_bits} bits")
        if len(self.multipliers) != self.num_channels or len(self.biases) != self.num_channels:
            raise ValueError("IntegerRequant_rtl: one multiplier and one bias per channel")


def _literal(value: int, bits: int) -> str:
    """A sized signed Verilog literal (two's complement hex)."""
    return f"{bits}'sh{value & ((1 << bits) - 1):x}"


def _lane(g: RequantGeometry, lane: int) -> str:
    w, s, n = g.acc_bits, g.shift, g.out_bits
    lsb = lane * g.in_bits
    code = f"in0_V_TDATA[{lsb + g.in_bits - 1}:{lsb}]"
    x_ext = code if w <= g.in_bits else \
        extend(code, sign_bit("in0_V_TDATA", lsb + g.in_bits - 1, g.in_signed), w - g.in_bits)
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
            cases.append(f"      {clog2(g.tmem)}'d{t}: begin {m_part}b_{lane} = {_literal(g.biases[c], w)}; end")
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
    lanes = "".join(_lane(g, lane) for lane in range(g.pe))
    return f"""// Generated by psa-finn (IntegerRequant_rtl): NumChannels {g.num_channels}, PE {g.pe},
// input {g.in_bits} bits {'signed' if g.in_signed else 'unsigned'}, y = clip(round((M x + B) / 2^{g.shift}), {g.out_min}, {g.out_max}) on
// {g.acc_bits}-bit M x + B, rounding {g.rounding}; latency {PIPELINE_LATENCY} cycles, one word per cycle.
""" + axis_module(top, g.in_stream_bits, g.out_stream_bits, g.pe * g.out_bits,
                   stall_pipeline(PIPELINE_LATENCY, g.tmem) + lanes)
