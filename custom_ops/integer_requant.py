"""The integer requantizer's arithmetic: one home for what the IntegerRequant layer computes.

On an integer input x of channel c:

    v = M[c] * x + B[c]                                  (exact integer)
    y = clip(round(v / 2^S), out_min, out_max)

with one shift S >= 1 for the layer and `rounding` "half_even" (ties to the even code, as QONNX's Quant and
psa-finn's thresholds: transforms/round_half_even_thresholds.py) or "half_up" (ties up, as finn-plus's Requant).
In integers: q = v >> S (floor), r = v - q * 2^S, half = 2^(S-1); y = q + (r > half or r == half and
(half_up or q odd)). `code_threshold` is the smallest v that rounds to at least a code, which makes the step
positions in x analytic (`step_positions`): the proof that a requantizer equals a MultiThreshold on every input
needs no enumeration of the input range.
"""

import numpy as np

ROUNDINGS = ("half_even", "half_up")


def _check_rounding(rounding):
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding {rounding!r} is not one of {ROUNDINGS}")


def requantize(x, multipliers, biases, shift: int, rounding: str, out_min: int, out_max: int):
    """y (int64, shape of x) for integer codes x whose LAST axis holds the channels of `multipliers`/`biases`."""
    _check_rounding(rounding)
    if shift < 1:
        raise ValueError(f"shift must be >= 1, got {shift}")
    x = np.asarray(x).astype(np.int64)
    v = np.asarray(multipliers, dtype=np.int64) * x + np.asarray(biases, dtype=np.int64)
    q = v >> shift
    r = v - (q << shift)
    half = 1 << (shift - 1)
    tie_up = np.ones_like(q, dtype=bool) if rounding == "half_up" else (q & 1) == 1
    y = q + ((r > half) | ((r == half) & tie_up))
    return np.clip(y, out_min, out_max)


def code_threshold(codes, shift: int, rounding: str):
    """The smallest integer v with round(v / 2^S) >= code, per code (int64 array)."""
    _check_rounding(rounding)
    codes = np.asarray(codes, dtype=np.int64)
    lowest = (codes << shift) - (1 << (shift - 1))  # v / 2^S = code - 1/2: a tie between code - 1 and code
    if rounding == "half_up":
        return lowest
    return lowest + (codes & 1)  # half-even: the tie goes down to the even code - 1 when code is odd


def step_positions(multiplier: int, bias: int, shift: int, rounding: str, out_min: int, out_max: int,
                   in_min: int, in_max: int):
    """For each code c in (out_min, out_max]: the smallest x in [in_min, in_max + 1] with y(x) >= c (in_max + 1:
    never within the input range), for one channel with multiplier >= 0 (0: a constant). Any non-decreasing integer
    function on [in_min, in_max] with outputs in [out_min, out_max] is fixed by these positions."""
    if multiplier < 0:
        raise ValueError(f"multiplier must be >= 0, got {multiplier}")
    codes = np.arange(out_min + 1, out_max + 1, dtype=np.int64)
    needed = code_threshold(codes, shift, rounding) - bias  # M * x >= needed
    if multiplier == 0:
        return np.where(needed <= 0, in_min, in_max + 1)
    positions = -((-needed) // multiplier)  # ceil division
    return np.clip(positions, in_min, in_max + 1)
