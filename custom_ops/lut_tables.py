"""Per-channel lookup-table layouts of PerChannelLUT: the one place that defines table sizes, the lerp64
compression and the lookup itself (used by the qonnx op, the HW layer, the code generators and the lowering).

Index k = code - min(inputDataType) runs over 0 .. 2^b - 1.
- "full": table [C, 2^b], y = T[c, k].
- "lerp64": table [C, 2^(b-2) + 1] holding every 4th entry of the full table plus the value at k = 2^b (one code
  past the end, so nothing is read past the table); y0 = T[c, k>>2], y1 = T[c, (k>>2) + 1],
  y = y0 + floor(((y1 - y0) * (k & 3) + 2) / 4), the paper's 2 fraction bits with round half up.
  lerp64 needs input codes of at least LERP64_MIN_INPUT_BITS = 3 bits: the 2 fraction bits and at least one
  segment bit (the one rule for the qonnx op, the lowering and both hardware backends).
`check_lut_table` and `lut_codes` are the one check of a table and of input codes, for the qonnx op and the HW layer.
"""

import numpy as np

LUT_MODES = ("full", "lerp64")
LERP64_FRACTION_BITS = 2
LERP64_MIN_INPUT_BITS = LERP64_FRACTION_BITS + 1
CODE_TOLERANCE = 0.01  # float noise tolerated on integer codes: a Mul by 1/scale leaves < 1e-3 at 12 bits


def table_entries(mode: str, bits: int) -> int:
    """Number of entries per channel that mode `mode` stores for `bits`-bit input codes."""
    if mode == "full":
        return 2**bits
    if mode == "lerp64":
        if bits < LERP64_MIN_INPUT_BITS:
            raise ValueError(f"lerp64 needs input codes of at least {LERP64_MIN_INPUT_BITS} bits ("
                             f"{LERP64_FRACTION_BITS} fraction bits and a segment bit), got {bits}; use mode full")
        return 2 ** (bits - LERP64_FRACTION_BITS) + 1
    raise ValueError(f"unknown LUT mode {mode!r}; use one of {LUT_MODES}")


def lerp64_table(full_table, past_end):
    """lerp64 table [C, 2^(b-2) + 1] from a full table [C, 2^b] and the integer outputs one code past its end [C]."""
    full_table = np.asarray(full_table, dtype=np.int64)
    past_end = np.asarray(past_end, dtype=np.int64).reshape(-1)
    channels, entries = full_table.shape
    if entries < 4 or entries & (entries - 1):
        raise ValueError(f"a full table needs 2^b >= 4 entries per channel, got {entries}")
    if past_end.shape != (channels,):
        raise ValueError(f"past_end must have one entry per channel ({channels}), got {list(past_end.shape)}")
    return np.concatenate([full_table[:, ::4], past_end[:, None]], axis=1)


def lut_lookup(table, index, mode: str):
    """Outputs [..., C] (int64) of table [C, E] (or one shared row [1, E]) at integer indices k = code - min,
    index [..., C] (channels last)."""
    table = np.asarray(table, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    channel = np.arange(table.shape[0])
    if mode == "full":
        return table[channel, index]
    if mode == "lerp64":
        y0 = table[channel, index >> 2]
        y1 = table[channel, (index >> 2) + 1]
        return y0 + (((y1 - y0) * (index & 3) + 2) >> 2)
    raise ValueError(f"unknown LUT mode {mode!r}; use one of {LUT_MODES}")


def lerp64_decode(lerp_table):
    """The full table [C, 2^b] that a lerp64 table [C, 2^(b-2) + 1] reconstructs."""
    lerp_table = np.asarray(lerp_table, dtype=np.int64)
    codes = 4 * (lerp_table.shape[1] - 1)
    index = np.broadcast_to(np.arange(codes)[:, None], (codes, lerp_table.shape[0]))
    return lut_lookup(lerp_table, index, "lerp64").T


def check_lut_table(table, mode: str, input_datatype, output_datatype, rows, rows_text: str):
    """The int64 table of a PerChannelLUT; ValueError unless `table` is [R, E] with R in `rows` (described by
    `rows_text`, e.g. "one row per channel"), E = table_entries(mode, bits of `input_datatype`), and every entry is an
    integer of `output_datatype` (qonnx DataTypes)."""
    entries = table_entries(mode, input_datatype.bitwidth())
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] != entries or table.shape[0] not in rows:
        shape = tuple(int(size) for size in table.shape)
        raise ValueError(f"table has shape {shape}, expected ({'/'.join(str(r) for r in rows)}, {entries}): mode "
                         f"{mode} with {input_datatype.name} input needs a table [C, {entries}] with {rows_text}")
    if not (np.all(table == np.round(table)) and output_datatype.allowed(table.min())
            and output_datatype.allowed(table.max())):
        raise ValueError(f"table entries must be integers of {output_datatype.name} (outputDataType) in "
                         f"[{output_datatype.min()}, {output_datatype.max()}]; got range [{table.min()}, "
                         f"{table.max()}]")
    return table.astype(np.int64)


def lut_codes(x, input_datatype):
    """The int64 codes of input `x` (integer codes of `input_datatype` in a float container, float noise up to
    CODE_TOLERANCE allowed); ValueError when a value is no such code."""
    x = np.asarray(x, dtype=np.float64)
    codes = np.round(x)
    if x.size and (np.any(np.abs(x - codes) > CODE_TOLERANCE) or codes.min() < input_datatype.min()
                   or codes.max() > input_datatype.max()):
        raise ValueError(f"input must be integer codes of {input_datatype.name} in [{input_datatype.min()}, "
                         f"{input_datatype.max()}]; got values in [{x.min()}, {x.max()}] (missing Mul by 1/scale or "
                         f"Add of zero point?)")
    return codes.astype(np.int64)
