"""RTL simulation of a one-in, one-out AXI-stream module (FINN port names) with Verilator or Icarus Verilog.

A generated Verilog testbench feeds the input words from a $readmemh file, records every output word accepted,
and counts cycles. Random stalls come from a xorshift32 generator inside the testbench, so a run is reproducible
and identical on both simulators: the source withholds TVALID with probability `valid_stall` before each new word
(and holds TVALID and TDATA stable once raised, as AXI-stream demands); the sink drops TREADY with probability
`ready_stall` each cycle. The cycle of every input and output handshake is recorded too (`in_cycles`,
`out_cycles`, counted from reset release), so a stream behaviour model can be checked against the RTL's
ready/valid trace (tests/test_fifo_sizing_rtl.py).
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SIMULATORS = ("verilator", "iverilog")
_EXECUTABLES = {"verilator": ("verilator", "make", "g++"), "iverilog": ("iverilog", "vvp")}


@dataclass(frozen=True)
class StreamSimResult:
    """Output words in order, and cycle counts of the run."""

    out_words: list
    cycles: int  # from the first input handshake to the last output handshake, both included
    total_cycles: int  # from reset release to the last output handshake
    simulator: str
    in_cycles: tuple = ()  # cycle of each input handshake (from reset release)
    out_cycles: tuple = ()  # cycle of each output handshake


def simulator_available(simulator: str) -> bool:
    """True when every executable `simulator` needs is on PATH."""
    return all(shutil.which(exe) for exe in _EXECUTABLES[simulator])


def pick_simulator(preferred: str = "auto") -> str:
    """The simulator to use: `preferred` if installed, or for "auto" Icarus then Verilator; clear error if none."""
    candidates = ("iverilog", "verilator") if preferred == "auto" else (preferred,)
    for sim in candidates:
        if sim not in SIMULATORS:
            raise ValueError(f"unknown simulator {sim!r}: use one of {SIMULATORS} or 'auto'")
        if simulator_available(sim):
            return sim
    raise RuntimeError(f"no RTL simulator found ({', '.join(candidates)}): install Debian's verilator or iverilog "
                       "(scripts/setup.sh does so when run as root)")


def _stall_threshold(probability: float) -> int:
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"stall probability must be in [0, 1), got {probability}")
    return int(round(probability * 256))


def testbench_verilog(top: str, in_bits: int, out_bits: int, n_in: int, n_out: int, valid_stall: float,
                      ready_stall: float, seed: int, max_cycles: int) -> str:
    """Verilog text of the testbench module `tb` around `top` (reads in_words.hex, writes out_words.hex)."""
    valid_thr = _stall_threshold(valid_stall)
    ready_thr = _stall_threshold(ready_stall)
    seed32 = (seed & 0xFFFFFFFF) or 1
    return f"""`timescale 1ns/1ps
module tb;
  reg ap_clk = 1'b0;
  reg ap_rst_n = 1'b0;
  reg [{in_bits - 1}:0] in_words [0:{max(n_in, 1) - 1}];
  reg [{in_bits - 1}:0] in_data = 0;
  reg in_valid = 1'b0;
  wire in_ready;
  wire [{out_bits - 1}:0] out_data;
  wire out_valid;
  reg out_ready = 1'b0;
  reg [31:0] rng = 32'd{seed32};
  integer n_sent = 0, n_recv = 0, cycle = 0, first_in = -1, fd, fh;

  {top} dut (
    .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
    .in0_V_TREADY(in_ready), .in0_V_TVALID(in_valid), .in0_V_TDATA(in_data),
    .out0_V_TREADY(out_ready), .out0_V_TVALID(out_valid), .out0_V_TDATA(out_data));

  always #5 ap_clk = ~ap_clk;

  initial begin
    $readmemh("in_words.hex", in_words);
    fd = $fopen("out_words.hex", "w");
    fh = $fopen("handshakes.txt", "w");
    repeat (4) @(posedge ap_clk);
    ap_rst_n <= 1'b1;
  end

  always @(posedge ap_clk) begin
    if (ap_rst_n) begin
      rng = rng ^ (rng << 13);
      rng = rng ^ (rng >> 17);
      rng = rng ^ (rng << 5);
      if (in_valid && in_ready) begin
        if (first_in < 0) first_in = cycle;
        $fwrite(fh, "i %0d\\n", cycle);
        n_sent = n_sent + 1;
      end
      if (!in_valid || in_ready) begin
        if (n_sent < {n_in} && rng[7:0] >= {valid_thr}) begin
          in_valid <= 1'b1;
          in_data <= in_words[n_sent];
        end else begin
          in_valid <= 1'b0;
        end
      end
      if (out_valid && out_ready) begin
        $fwrite(fd, "%h\\n", out_data);
        $fwrite(fh, "o %0d\\n", cycle);
        n_recv = n_recv + 1;
        if (n_recv == {n_out}) begin
          $display("PSA_SIM_DONE cycles=%0d total=%0d", cycle - first_in + 1, cycle + 1);
          $fclose(fd);
          $fclose(fh);
          $finish;
        end
      end
      out_ready <= (rng[15:8] >= {ready_thr});
      cycle = cycle + 1;
      if (cycle > {max_cycles}) begin
        $display("PSA_SIM_TIMEOUT sent=%0d received=%0d", n_sent, n_recv);
        $fclose(fd);
        $fclose(fh);
        $finish;
      end
    end
  end
endmodule
"""


def _run(cmd, cwd, what):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd)}) in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _build_and_run(simulator: str, work: Path, sources: list) -> str:
    if simulator == "iverilog":
        _run(["iverilog", "-g2005", "-s", "tb", "-o", "tb.vvp", *sources], work, "iverilog compile")
        return _run(["vvp", "-n", "tb.vvp"], work, "vvp run")
    _run(["verilator", "--binary", "--timing", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style",
          "--top-module", "tb", "-Mdir", "obj_dir", *sources], work, "verilator build")
    return _run([str(work / "obj_dir" / "Vtb")], work, "verilator run")


def simulate_axis_stream(verilog_files, top: str, in_bits: int, out_bits: int, in_words, n_out: int,
                         work_dir, support_files=(), simulator: str = "auto", valid_stall: float = 0.0,
                         ready_stall: float = 0.0, seed: int = 1) -> StreamSimResult:
    """Stream `in_words` (ints) through module `top` and collect `n_out` output words.

    verilog_files: sources of the design; support_files: files the design reads at start-up ($readmemh), copied
    into `work_dir`, where the simulation runs.
    """
    simulator = pick_simulator(simulator)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    for f in support_files:
        if Path(f).resolve().parent != work.resolve():
            shutil.copy(f, work / Path(f).name)
    in_words = [int(w) for w in in_words]
    if any(w < 0 or w >> in_bits for w in in_words):
        raise ValueError(f"input words must be unsigned and fit in {in_bits} bits")
    digits = (in_bits + 3) // 4
    (work / "in_words.hex").write_text("".join(f"{w:0{digits}x}\n" for w in in_words) or "0\n")
    out_file = work / "out_words.hex"
    for stale in (out_file, work / "handshakes.txt"):
        if stale.exists():
            os.remove(stale)
    stall = max(valid_stall, ready_stall)
    max_cycles = int((len(in_words) + n_out + 100) * 8 / (1.0 - stall) ** 2)
    (work / "tb.v").write_text(testbench_verilog(top, in_bits, out_bits, len(in_words), n_out, valid_stall,
                                                 ready_stall, seed, max_cycles))
    sources = ["tb.v"] + [str(Path(f).resolve()) for f in verilog_files]
    log = _build_and_run(simulator, work, sources)
    done = [line for line in log.splitlines() if line.startswith("PSA_SIM_DONE")]
    if not done:
        raise RuntimeError(f"{simulator} run of {top} did not finish: "
                           f"{[line for line in log.splitlines() if 'PSA_SIM' in line] or log[-2000:]}")
    fields = dict(kv.split("=") for kv in done[0].split()[1:])
    out_words = [int(line, 16) for line in out_file.read_text().split()]
    handshakes = [line.split() for line in (work / "handshakes.txt").read_text().splitlines()]
    return StreamSimResult(out_words=out_words, cycles=int(fields["cycles"]), total_cycles=int(fields["total"]),
                           simulator=simulator, in_cycles=tuple(int(c) for k, c in handshakes if k == "i"),
                           out_cycles=tuple(int(c) for k, c in handshakes if k == "o"))
