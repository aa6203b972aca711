"""Plain-Verilog generator for the KANLinear streaming layer (no SystemVerilog, no finn-rtllib).

FINN's AXI-stream ports (ap_clk, ap_rst_n, in0_V_*, out0_V_*). One input lane s per SIMD code, each with its ROM
(`KANLinear.get_lane_tables`: depth NF * SF * 2^b, PE entries of TW bits per word, entry p in bits [p*TW, (p+1)*TW)),
read at address {fold, k_s}, fold = nf * SF + sf, k_s = x_s - min(inputDataType) (the MSB flipped for signed codes).
Two stages, all advancing together (`en = !out_valid || out_ready`):
  issue:  for nf = 0 a word is taken from the stream (and kept in the SF-word input buffer when NF > 1), for nf > 0
          it is read back from the buffer; the ROMs read synchronously; the (sf, nf) counters advance;
  add:    each of the PE outputs adds its SIMD entries (sign-extended to the accumulator) to its accumulator
          (restarting at sf = 0); at sf = SF - 1 the PE sums form the output word.
One issue per cycle: NF * SF cycles per vector, latency 2 cycles from the last input word of a group to its output.
"""

from dataclasses import dataclass

import numpy as np

from psa_finn.custom_ops.fpgadataflow.rtl.verilog_text import axis_module, check_ram_style, clog2, extend, rom_module
from psa_finn.custom_ops.fpgadataflow.rtl.verilog_text import sign_bit, stream_bits, table_index

PIPELINE_LATENCY = 2

@dataclass(frozen=True)
class KanLayerGeometry:
    """What the generated hardware depends on: sizes, folding, bit widths, signedness, memory style."""

    mw: int
    mh: int
    simd: int
    pe: int
    in_bits: int
    in_signed: bool
    table_bits: int
    table_signed: bool
    acc_bits: int
    ram_style: str = "auto"
    # live[s][p]: entry p of lane s holds a non-zero table in some fold (KANLinear.get_live_lane_entries); a dead
    # entry is left out of the lane's ROM word and of output p's sum (a lane with none has no ROM). Empty: all live.
    live: tuple = ()

    def __post_init__(self):
        if self.simd < 1 or self.mw % self.simd or self.pe < 1 or self.mh % self.pe:
            raise ValueError(f"KANLinear_rtl: SIMD={self.simd} must divide MW={self.mw} and PE={self.pe} MH={self.mh}")
        check_ram_style("KANLinear_rtl", self.ram_style)
        if self.live and (len(self.live) != self.simd or any(len(lane) != self.pe for lane in self.live)):
            raise ValueError(f"KANLinear_rtl: live entries must be SIMD={self.simd} x PE={self.pe}")

    def lane_entries(self, lane: int) -> tuple:
        """The live entries p of lane `lane`, in the order its ROM word holds them (entry k in bits [k*TW, ...))."""
        if not self.live:
            return tuple(range(self.pe))
        return tuple(p for p in range(self.pe) if self.live[lane][p])

    @property
    def sf(self) -> int:
        """Input words per vector."""
        return self.mw // self.simd

    @property
    def nf(self) -> int:
        """Output words per vector."""
        return self.mh // self.pe

    @property
    def depth(self) -> int:
        """Words of one lane ROM."""
        return self.nf * self.sf * 2 ** self.in_bits

    @property
    def in_stream_bits(self) -> int:
        """TDATA width of the input stream (byte aligned, as FINN pads it)."""
        return stream_bits(self.simd * self.in_bits)

    @property
    def out_stream_bits(self) -> int:
        """TDATA width of the output stream (byte aligned)."""
        return stream_bits(self.pe * self.acc_bits)


def rom_file_name(top_name: str, lane: int) -> str:
    """File name of input lane `lane`'s $readmemh file (read relative to the simulator's / synthesis' cwd)."""
    return f"{top_name}_lane{lane}.dat"


def rom_files(top_name: str, g: KanLayerGeometry, lanes) -> dict:
    """{file name: $readmemh text} of every lane ROM (lanes with a live entry); `lanes` [SIMD, NF * SF, 2^b, PE]
    from get_lane_tables. A word holds the lane's live entries only (`KanLayerGeometry.lane_entries`)."""
    lanes = np.asarray(lanes, dtype=np.int64)
    if lanes.shape != (g.simd, g.nf * g.sf, 2 ** g.in_bits, g.pe):
        raise ValueError(f"KANLinear_rtl: lane tables of shape {lanes.shape} do not match the geometry {g}")
    mask = (1 << g.table_bits) - 1
    files = {}
    for lane in range(g.simd):
        live = list(g.lane_entries(lane))
        if not live:
            continue
        if g.live and np.any(np.delete(lanes[lane], live, axis=-1)):
            raise ValueError(f"KANLinear_rtl: lane {lane} has a non-zero table in an entry marked dead")
        shifts = np.arange(len(live), dtype=object) * g.table_bits
        digits = (len(live) * g.table_bits + 3) // 4
        entries = (lanes[lane][..., live].reshape(-1, len(live)) & mask).astype(object)
        words = (entries << shifts).sum(axis=1)
        files[rom_file_name(top_name, lane)] = "".join(f"{int(w):0{digits}x}\n" for w in words)
    return files


def _entry(g: KanLayerGeometry, lane: int, p: int) -> str:
    """Entry p (live) of lane `lane`'s ROM word, sign- or zero-extended to the accumulator width."""
    tb, ab = g.table_bits, g.acc_bits
    k = g.lane_entries(lane).index(p)
    lsb, msb = k * tb, k * tb + tb - 1
    bits = f"rd_{lane}[{msb}:{lsb}]"
    if ab <= tb:
        return bits
    return extend(bits, sign_bit(f"rd_{lane}", msb, g.table_signed), ab - tb)


def generate_kan_linear_verilog(top: str, g: KanLayerGeometry) -> str:
    """Verilog source of the layer (ROM module + top module `top`)."""
    ib, tb, ab = g.in_bits, g.table_bits, g.acc_bits
    fold_bits = clog2(g.nf * g.sf)
    addr_bits = (fold_bits if g.nf * g.sf > 1 else 0) + ib
    word_bits = g.simd * ib
    lines = []
    for s in range(g.simd):
        width = len(g.lane_entries(s)) * tb
        if not width:
            continue
        lsb, msb = s * ib, s * ib + ib - 1
        code = table_index("word", msb, lsb, g.in_signed)
        address = f"{{fold, {code}}}" if g.nf * g.sf > 1 else code
        lines.append(f"  wire [{width - 1}:0] rd_{s};\n"
                     f"  {top}_rom #(.DEPTH({g.depth}), .WIDTH({width}), .ADDR_BITS({addr_bits}),\n"
                     f"    .INIT_FILE(\"{rom_file_name(top, s)}\")) rom_{s} (\n"
                     f"    .clk(ap_clk), .en(en), .addr({address}), .rd(rd_{s}));")
    adders = []
    for p in range(g.pe):
        terms = "".join(f" + {_entry(g, s, p)}" for s in range(g.simd) if p in g.lane_entries(s))
        adders.append(f"  reg [{ab - 1}:0] acc_{p};\n"
                      f"  wire [{ab - 1}:0] sum_{p} = (first1 ? {ab}'d0 : acc_{p}){terms};\n"
                      f"  assign out0_V_TDATA[{p * ab + ab - 1}:{p * ab}] = acc_{p};")
    acc_update = "\n".join(f"          acc_{p} <= sum_{p};" for p in range(g.pe))
    sf_bits, nf_bits = clog2(g.sf), clog2(g.nf)
    buffer = ""
    word = "in0_V_TDATA"
    if g.nf > 1:
        buffer = (f"  reg [{word_bits - 1}:0] buffer [0:{g.sf - 1}];  // the SF words of the current vector\n"
                  f"  always @(posedge ap_clk) if (fire && nf == 0) buffer[sf] <= in0_V_TDATA[{word_bits - 1}:0];\n")
        word = f"(nf == 0 ? in0_V_TDATA[{word_bits - 1}:0] : buffer[sf])"
    fold = ""
    if g.nf * g.sf > 1:
        fold = (f"  reg [{fold_bits - 1}:0] fold;  // nf * SF + sf\n")
    fold_reset = "      fold <= 0;\n" if g.nf * g.sf > 1 else ""
    fold_step = (f"        fold <= (fold == {g.nf * g.sf - 1}) ? 0 : fold + 1'b1;\n" if g.nf * g.sf > 1 else "")
    return f"""// Generated by psa-finn (KANLinear_rtl): MW {g.mw}, MH {g.mh}, SIMD {g.simd}, PE {g.pe}, input
// {'signed' if g.in_signed else 'unsigned'} {ib} bits, tables {'signed' if g.table_signed else 'unsigned'} {tb} bits,
// accumulator {ab} bits; {g.nf * g.sf} cycles per vector, latency {PIPELINE_LATENCY}.
{rom_module(top, g.ram_style, keep_hierarchy=True)}
""" + axis_module(top, g.in_stream_bits, g.out_stream_bits, g.pe * ab, f"""\
  reg [{sf_bits - 1}:0] sf;  // input word of the group being issued
  reg [{nf_bits - 1}:0] nf;  // output group being issued
{fold}  reg v1, first1, last1;  // the add stage: valid, first word (sf = 0), last word (sf = SF - 1)
  reg out_valid;
  wire en = !out_valid || out0_V_TREADY;  // both stages advance together
  wire have_word = (nf == 0) ? in0_V_TVALID : 1'b1;
  wire fire = en && have_word;
  assign in0_V_TREADY = en && nf == 0;
  assign out0_V_TVALID = out_valid;
{buffer}  wire [{word_bits - 1}:0] word = {word};
{chr(10).join(lines)}
{chr(10).join(adders)}
  always @(posedge ap_clk) begin
    if (!ap_rst_n) begin
      sf <= 0;
      nf <= 0;
{fold_reset}      v1 <= 1'b0;
      first1 <= 1'b0;
      last1 <= 1'b0;
      out_valid <= 1'b0;
    end else if (en) begin
      v1 <= fire;
      first1 <= sf == 0;
      last1 <= sf == {g.sf - 1};
      out_valid <= v1 && last1;
      if (v1) begin
{acc_update}
      end
      if (fire) begin
        sf <= (sf == {g.sf - 1}) ? 0 : sf + 1'b1;
        if (sf == {g.sf - 1}) nf <= (nf == {g.nf - 1}) ? 0 : nf + 1'b1;
{fold_step}      end
    end
  end
""")
