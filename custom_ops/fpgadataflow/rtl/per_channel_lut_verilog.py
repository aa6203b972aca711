"""Plain-Verilog generator for the PerChannelLUT streaming layer (no SystemVerilog, no finn-rtllib).

The generated top module has FINN's AXI-stream ports (ap_clk, ap_rst_n, in0_V_TDATA/TVALID/TREADY,
out0_V_TDATA/TVALID/TREADY). Each cycle carries PE consecutive channels (lane p of fold step t is channel
t * PE + p, lane 0 in the least significant bits). Every lane owns the ROM banks of the HW layer's lane
architecture (`PerChannelLUT.get_lane_tables`), each a single-port ROM initialised with $readmemh:
  full:   one bank [TMEM, 2^b]; k = x - min(inputDataType) (the MSB flipped for signed inputs); y = bank[t][k].
  lerp64: even bank T[0::2] and odd bank T[1::2]; segment s = k >> 2 reads even[(s + 1) >> 1] and odd[s >> 1],
          so y0 = T[s] and y1 = T[s + 1] come from different banks; y = y0 + floor(((y1 - y0) * (k & 3) + 2) / 4)
          in fabric (shift-add, no multiplier).
A bank whose per-channel depth is a power of two is addressed {t, index}; otherwise a running base t * depth
is kept in a register and added. The whole pipeline stalls when its output is not accepted
(`en = !out_valid || out_ready`); it takes one word per cycle, with a latency of PIPELINE_LATENCY[mode] cycles.
"""

from dataclasses import dataclass

import numpy as np

from psa_finn.custom_ops.fpgadataflow.rtl.channel_lanes import ChannelLanes
from psa_finn.custom_ops.fpgadataflow.rtl.verilog_text import axis_module, check_ram_style, clog2, extend, rom_module
from psa_finn.custom_ops.fpgadataflow.rtl.verilog_text import sign_bit, stall_pipeline, table_index
from psa_finn.custom_ops.lut_tables import table_entries

# Cycles from the input handshake of a word to the cycle its output word is first valid.
PIPELINE_LATENCY = {"full": 1, "lerp64": 2}


@dataclass(frozen=True, kw_only=True)
class LutLayerGeometry(ChannelLanes):
    """What the generated hardware depends on: channels, lanes, bit widths, signedness, mode, memory style."""

    mode: str
    ram_style: str = "auto"

    layer = "PerChannelLUT_rtl"

    def __post_init__(self):
        if self.mode not in PIPELINE_LATENCY:
            raise ValueError(f"PerChannelLUT_rtl: mode {self.mode!r} is not one of {sorted(PIPELINE_LATENCY)}")
        super().__post_init__()
        try:
            table_entries(self.mode, self.in_bits)
        except ValueError as err:
            raise ValueError(f"PerChannelLUT_rtl: {err}") from err
        check_ram_style("PerChannelLUT_rtl", self.ram_style)

    def bank_names(self) -> tuple:
        """Names of one lane's ROM banks, in the order of `PerChannelLUT.get_lane_tables`."""
        return ("table",) if self.mode == "full" else ("even", "odd")


def _is_pow2(n: int) -> bool:
    return n & (n - 1) == 0


def rom_file_name(top_name: str, bank: str, lane: int) -> str:
    """File name of a lane's $readmemh memory file (read relative to the simulator's / synthesis' cwd)."""
    return f"{top_name}_{bank}_lane{lane}.dat"


def rom_files(top_name: str, geometry: LutLayerGeometry, banks) -> dict:
    """{file name: $readmemh text} of every lane's banks; `banks` as returned by get_lane_tables ([PE, TMEM, E])."""
    g = geometry
    if len(banks) != len(g.bank_names()):
        raise ValueError(f"PerChannelLUT_rtl: mode {g.mode} has banks {g.bank_names()}, got {len(banks)} arrays")
    digits = (g.out_bits + 3) // 4
    mask = (1 << g.out_bits) - 1
    files = {}
    for name, bank in zip(g.bank_names(), banks):
        bank = np.asarray(bank, dtype=np.int64)
        if bank.shape[:2] != (g.pe, g.tmem):
            raise ValueError(f"PerChannelLUT_rtl: bank {name} has shape {bank.shape}, expected ({g.pe}, {g.tmem}, E)")
        for lane in range(g.pe):
            words = (bank[lane].reshape(-1) & mask).tolist()
            files[rom_file_name(top_name, name, lane)] = "".join(f"{w:0{digits}x}\n" for w in words)
    return files


@dataclass(frozen=True)
class _Bank:
    name: str
    per_channel: int  # words per channel
    index_expr: str  # Verilog expression of the word within the channel, "{lane}" replaced per lane

    def address(self, g: LutLayerGeometry, lane: int) -> str:
        index = self.index_expr.format(lane=lane)
        if g.tmem == 1:
            return index if self.per_channel > 1 else "1'b0"
        if _is_pow2(self.per_channel):
            return f"{{fold, {index}}}" if self.per_channel > 1 else "fold"
        return f"base_{self.name} + {index}"


def _banks(g: LutLayerGeometry, bank_depths: list) -> list:
    b = g.in_bits
    if g.mode == "full":
        return [_Bank("table", bank_depths[0], "code_{lane}")]
    segment_bits = b - 2
    # even word (s + 1) >> 1 (segment_bits wide, computed per lane), odd word s >> 1 (one bit narrower)
    odd_index = f"code_{{lane}}[{b - 1}:3]" if segment_bits > 1 else "1'b0"
    return [_Bank("even", bank_depths[0], "even_index_{lane}"), _Bank("odd", bank_depths[1], odd_index)]


def _code_expr(g: LutLayerGeometry, lane: int) -> str:
    """Verilog expression of lane `lane`'s table index k = x - min(inputDataType) (b bits)."""
    lsb = lane * g.in_bits
    return table_index("in0_V_TDATA", lsb + g.in_bits - 1, lsb, g.in_signed)


def _rom_instance(top: str, g: LutLayerGeometry, bank: _Bank, lane: int, rd: str) -> str:
    depth = g.tmem * bank.per_channel
    return (f"  {top}_rom #(.DEPTH({depth}), .WIDTH({g.out_bits}), .ADDR_BITS({clog2(depth)}),\n"
            f"    .INIT_FILE(\"{rom_file_name(top, bank.name, lane)}\")) rom_{bank.name}_{lane} (\n"
            f"    .clk(ap_clk), .en(en), .addr({bank.address(g, lane)}), .rd({rd}));\n")


def _lane_full(top: str, g: LutLayerGeometry, banks: list, lane: int) -> str:
    ob = g.out_bits
    return (f"  // lane {lane}: channels {lane}, {lane} + PE, ...\n"
            f"  wire [{g.in_bits - 1}:0] code_{lane} = {_code_expr(g, lane)};\n"
            f"  wire [{ob - 1}:0] y_{lane};\n"
            + _rom_instance(top, g, banks[0], lane, f"y_{lane}")
            + f"  assign out0_V_TDATA[{lane * ob + ob - 1}:{lane * ob}] = y_{lane};\n")


def _lane_lerp(top: str, g: LutLayerGeometry, banks: list, lane: int) -> str:
    ob = g.out_bits
    b = g.in_bits
    wide = ob + 3  # holds y1 - y0, (y1 - y0) * 3 + 2 and y0 with its sign
    seg_bits = b - 2
    lines = [f"  // lane {lane}: channels {lane}, {lane} + PE, ...",
             f"  wire [{b - 1}:0] code_{lane} = {_code_expr(g, lane)};",
             f"  wire [{seg_bits}:0] even_sum_{lane} = code_{lane}[{b - 1}:2] + 1'b1;  // s + 1",
             f"  wire [{seg_bits - 1}:0] even_index_{lane} = even_sum_{lane}[{seg_bits}:1];"]
    lines += [f"  wire [{ob - 1}:0] from_even_{lane}, from_odd_{lane};",
              f"  reg [1:0] frac_{lane};",
              f"  reg odd_segment_{lane};"]
    text = "\n".join(lines) + "\n"
    text += _rom_instance(top, g, banks[0], lane, f"from_even_{lane}")
    text += _rom_instance(top, g, banks[1], lane, f"from_odd_{lane}")
    y0_wide, y1_wide = (extend(f"{y}_{lane}", sign_bit(f"{y}_{lane}", ob - 1, g.out_signed), 3) for y in ("y0", "y1"))
    text += f"""  wire [{ob - 1}:0] y0_{lane} = odd_segment_{lane} ? from_odd_{lane} : from_even_{lane};
  wire [{ob - 1}:0] y1_{lane} = odd_segment_{lane} ? from_even_{lane} : from_odd_{lane};
  wire signed [{wide - 1}:0] y0w_{lane} = {y0_wide};
  wire signed [{wide - 1}:0] y1w_{lane} = {y1_wide};
  wire signed [{wide - 1}:0] d_{lane} = y1w_{lane} - y0w_{lane};
  wire signed [{wide - 1}:0] step_{lane} = (frac_{lane}[0] ? d_{lane} : {wide}'sd0)
    + (frac_{lane}[1] ? (d_{lane} <<< 1) : {wide}'sd0) + {wide}'sd2;
  wire signed [{wide - 1}:0] y_{lane} = y0w_{lane} + (step_{lane} >>> 2);
  reg [{ob - 1}:0] out_{lane};
  always @(posedge ap_clk) begin
    if (en) begin
      frac_{lane} <= code_{lane}[1:0];
      odd_segment_{lane} <= code_{lane}[2];
      out_{lane} <= y_{lane}[{ob - 1}:0];
    end
  end
  assign out0_V_TDATA[{lane * ob + ob - 1}:{lane * ob}] = out_{lane};
"""
    return text


def generate_per_channel_lut_verilog(top_name: str, geometry: LutLayerGeometry, bank_depths: list) -> str:
    """Verilog source of the layer (ROM module + top module `top_name`); bank_depths: words per channel per bank."""
    g = geometry
    top = top_name
    banks = _banks(g, list(bank_depths))
    latency = PIPELINE_LATENCY[g.mode]
    state, state_reset, state_step = [], [], []
    for bank in banks:
        if g.tmem > 1 and not _is_pow2(bank.per_channel):
            bits = clog2(g.tmem * bank.per_channel)
            state.append(f"  reg [{bits - 1}:0] base_{bank.name};  // t * {bank.per_channel}: first word of "
                         f"channel t in bank {bank.name}")
            state_reset.append(f"      base_{bank.name} <= 0;")
            state_step.append(f"        base_{bank.name} <= (fold == {g.tmem - 1}) ? 0 : "
                              f"base_{bank.name} + {bits}'d{bank.per_channel};")
    lane_fn = _lane_full if g.mode == "full" else _lane_lerp
    lanes = "".join(lane_fn(top, g, banks, lane) for lane in range(g.pe))
    signedness = {True: "signed", False: "unsigned"}
    bank_text = ", ".join(f"{b.name} {g.tmem} x {b.per_channel}" for b in banks)
    return f"""// Generated by psa-finn (PerChannelLUT_rtl): mode {g.mode}, NumChannels {g.num_channels}, PE {g.pe},
// input {signedness[g.in_signed]} {g.in_bits} bits, output {signedness[g.out_signed]} {g.out_bits} bits,
// banks per lane {bank_text}; latency {latency} cycles, one word per cycle.
{rom_module(top, g.ram_style)}
""" + axis_module(top, g.in_stream_bits, g.out_stream_bits, g.pe * g.out_bits,
                   stall_pipeline(latency, g.tmem, state, state_reset, state_step) + lanes)
