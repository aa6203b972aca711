"""LUT6-level building blocks of the layer models (AMD UltraScale+ fabric: LUT6, CARRY8, MUXF7/F8, RAMB18, URAM288).

Every layer model adds these up along the layer's datapath; each function states the mapping it assumes. They are
the mappings yosys `synth_xilinx` produces (and Vivado's usual ones): an adder or a comparison of two variables is
one LUT6 per bit feeding the carry chain, a mux of n inputs costs ceil((n - 1) / 3) LUT6 per bit (a LUT6 is a 4:1
mux), registers cost no LUT (flip-flops are counted apart by the tools, not here). Memories reuse the one home of
each rule: the RAMB18 aspect ratios and LUT-ROM mapping of the PerChannelLUT layer
(`custom_ops.fpgadataflow.per_channel_lut`) and finn-plus's Vivado-fitted choice between LUTRAM and block RAM for a
memory left to synthesis (`finn.util.resource_models._hi_in_ram`).
"""

from math import ceil

from finn.util.resource_models import _hi_in_ram, _lutram_luts

from psa_finn.custom_ops.fpgadataflow.per_channel_lut import (
    bram18_count,
    bram18_read_mux_luts,
    lutrom_luts,
    uram_count,
)

MEMORY_STYLES = ("distributed", "block", "ultra")


def clog2(x: int) -> int:
    """$clog2 as SystemVerilog defines it: 0 for x <= 1."""
    return max(int(x) - 1, 0).bit_length()


def adder_luts(width: int) -> int:
    """A two-operand adder / subtractor of `width` result bits: one LUT6 per bit on the carry chain."""
    return max(int(width), 0)


def comparator_luts(width: int) -> int:
    """A magnitude comparison of two `width`-bit variables: a subtraction on the carry chain, one LUT6 per bit."""
    return max(int(width), 0)


def constant_comparator_luts(width: int) -> int:
    """A comparison of a `width`-bit variable with a constant: the carry chain takes 2 bits per LUT6 (O5/O6)."""
    return ceil(max(int(width), 0) / 2)


def mux_luts(inputs: int, width: int) -> int:
    """An `inputs`:1 multiplexer of `width` bits: ceil((inputs - 1) / 3) LUT6 per bit (a LUT6 is a 4:1 mux);
    a 2:1 mux of two bits shares one LUT6_2 (five inputs)."""
    if inputs <= 1 or width <= 0:
        return 0
    if inputs == 2:
        return ceil(width / 2)
    return width * ceil((inputs - 1) / 3)


def counter_luts(states: int) -> int:
    """A wrapping counter over `states` values: one LUT6 per bit (increment on the carry chain)."""
    return clog2(states)


def or_reduce_luts(bits: int) -> int:
    """An OR (or AND) over `bits` signals: a tree of LUT6, each taking 6 inputs."""
    luts, n = 0, int(bits)
    while n > 1:
        level = ceil(n / 6)
        luts += level
        n = level
    return luts


def sum_width(n: int, width: int, lo: int = 0, hi: int = 0) -> int:
    """Bits of the sum of n `width`-bit addends (finn-rtllib mvu_pkg::sumwidth): unsigned addends
    (lo = hi = 0) need clog2(1 + n (2^width - 1)); addends in [lo, hi] need the bits of [n lo, n hi]."""
    if lo == 0 and hi == 0:
        return clog2(1 + n * (2 ** width - 1)) if width <= 16 else width + clog2(n)
    low, high = n * lo, n * hi
    bits = 1
    while not (-(2 ** (bits - 1)) <= low and high <= 2 ** (bits - 1) - 1):
        bits += 1
    return bits


def adder_tree_luts(n: int, width: int, lo: int = 0, hi: int = 0) -> int:
    """LUT6 of a balanced binary adder tree over n addends (finn-rtllib add_multi.sv): every inner node is a
    two-operand adder as wide as the sum of the leaves below it (`sum_width`)."""
    if n <= 1:
        return 0
    loads = [0] * (2 * n - 1)
    for i in range(2 * n - 2, n - 2, -1):
        loads[i] = 1
    for i in range(n - 2, -1, -1):
        loads[i] = loads[2 * i + 1] + loads[2 * i + 2]
    return sum(adder_luts(sum_width(loads[i], width, lo, hi)) for i in range(n - 1))


def auto_memory_style(depth: int, width: int) -> str:
    """What synthesis makes of a memory whose style is left open ("auto"): block RAM when depth^2 x width >=
    2^20, else LUTRAM (finn-plus's boundary fitted against Vivado, `finn.util.resource_models._hi_in_ram`)."""
    return "block" if _hi_in_ram(depth, width) else "distributed"


def memory_resources(depth: int, width: int, style: str, writable: bool = False) -> dict:
    """{lut, bram18, uram} of a depth x width memory with one read port in `style` (distributed, block, ultra,
    or auto: `auto_memory_style`).

    distributed: a ROM is LUT logic (`lutrom_luts`: 64 x 1 per LUT6, MUXF7/F8 free up to 256 deep); a writable
    memory is simple-dual-port LUTRAM (finn-plus's Vivado-fitted `_lutram_luts`: 32 x 2 per LUT6 + 1/4 for write
    decode and read select). A one-entry memory is a register.
    block: the RAMB18 aspect ratio that needs fewest blocks, plus the read mux over blocks stacked in depth.
    ultra: URAM288 (4K x 72).
    """
    depth, width = int(depth), int(width)
    if depth <= 1 or width <= 0:
        return {"lut": 0, "bram18": 0, "uram": 0}
    if style == "auto":
        style = auto_memory_style(depth, width)
    if style == "distributed":
        luts = _lutram_luts(depth, width) if writable else lutrom_luts(depth, width)
        return {"lut": luts, "bram18": 0, "uram": 0}
    if style == "block":
        return {"lut": bram18_read_mux_luts(depth, width), "bram18": bram18_count(depth, width), "uram": 0}
    if style == "ultra":
        return {"lut": 0, "bram18": 0, "uram": uram_count(depth, width)}
    raise ValueError(f"unknown memory style {style!r}: expected one of {('auto',) + MEMORY_STYLES}")


def shift_register_luts(depth: int, width: int) -> int:
    """A fixed-length delay line of `depth` x `width` in SRLC32E (32 stages per LUT6); <= 1 stage is a register."""
    if depth <= 1:
        return 0
    return width * ceil(depth / 32)
