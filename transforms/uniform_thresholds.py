"""Detect MultiThreshold thresholds that are a uniform requantizer, and prove it on the whole input range.

A quantizer behind an integer accumulator, y = clip(round(s * x + b)), becomes a MultiThreshold whose thresholds
are the real steps (k - 1/2 - b) / s rounded up to the integer grid of x; the repeated thresholds at the ends are
the clip. With power-of-two scales the steps often sit on a rounding tie, which psa-finn rounds half-to-even
(transforms/round_half_even_thresholds.py), so on an INT32 accumulator the integer steps alternate 127 / 129 for
s = 1/128: an exact-equality test of the steps misses them, a requantizer with half-even rounding does not.

`fit_requantizer` looks, per channel, for integers M >= 0, B and one layer shift S (custom_ops.integer_requant:
y = clip(round((M x + B) / 2^S), out_min, out_max)) that reproduce the thresholds EXACTLY on every integer x of
[in_min, in_max]. For given (M, S, rounding) the function steps to code c where M x + B >= g_c
(`code_threshold`), so the MultiThreshold's step position P_c (its thresholds rounded up and clamped to
[in_min, in_max + 1]) gives B a closed interval: g_c - M P_c <= B <= g_c - M (P_c - 1) - 1 for a position inside
the range, only the lower (upper) bound for a step at in_min (beyond in_max). The requantizer exists iff the
intersection over all codes is not empty, and then every B in it is exact: the proof is analytic, on the threshold
positions, with no enumeration of the input (INT32 inputs included). For a shift S the
exact multipliers form an interval (the bias interval's width is concave in M), found by a ternary search; the
smallest exact S <= MAX_SHIFT by bisection (exact at S implies exact at S + 1). The result is checked once more by
`step_positions`, an independent evaluation of the requantizer's steps.
"""

from dataclasses import dataclass

import numpy as np

from psa_finn.custom_ops.integer_requant import ROUNDINGS, code_threshold, step_positions

# largest shift tried (8-bit codes << 32 and M * x + B stay inside int64 for 32-bit inputs)
MAX_SHIFT = 32
# |M * x| stays below this (int64 arithmetic with room for the bias)
MAX_PRODUCT = 2**61
# ternary-search steps over a multiplier bracket (each shrinks it to 2/3; 2^61 needs ~105)
MAX_SEARCH_STEPS = 128


@dataclass(frozen=True)
class RequantizerFit:
    """Exact integer requantizer of a [C, N] threshold matrix: per-channel multipliers and biases, one shift."""

    multipliers: tuple
    biases: tuple
    shift: int
    rounding: str
    out_min: int
    out_max: int


def threshold_positions(thresholds, in_min: int, in_max: int):
    """The integer step positions of thresholds [C, N] on integer inputs: x >= t <=> x >= ceil(t), clamped to
    [in_min, in_max + 1], sorted per channel (the MultiThreshold counts them in any order)."""
    positions = np.ceil(np.asarray(thresholds, dtype=np.float64))
    return np.sort(np.clip(positions, in_min, in_max + 1).astype(np.int64), axis=-1)


def _bias_interval(positions, multiplier, shift, rounding, out_min, in_min, in_max):
    """The closed interval of exact biases [low, high] for one channel (low > high: none)."""
    codes = out_min + 1 + np.arange(positions.size, dtype=np.int64)
    g = code_threshold(codes, shift, rounding)
    lows = np.where(positions <= in_max, g - multiplier * positions, np.iinfo(np.int64).min)
    highs = np.where(positions > in_min, g - multiplier * (positions - 1) - 1, np.iinfo(np.int64).max)
    return int(lows.max()), int(highs.min())


def _slack(positions, multiplier, shift, rounding, out_min, in_min, in_max):
    """high - low of the exact bias interval (>= 0: a requantizer exists) and the interval's low end."""
    low, high = _bias_interval(positions, multiplier, shift, rounding, out_min, in_min, in_max)
    return high - low, low, high


def _multiplier_bracket(positions, shift, rounding, out_min, in_min, in_max):
    """[lowest, highest] multiplier a requantizer with this shift can have, from the first and last steps inside
    the range (codes i < j at P_i < P_j): M (P_j - P_i + 1) >= g_j - g_i + 1 and M (P_j - P_i - 1) <= g_j - g_i - 1;
    None when fewer than two distinct positions lie inside."""
    inside = np.flatnonzero((positions > in_min) & (positions <= in_max))
    if inside.size < 2 or positions[inside[-1]] == positions[inside[0]]:
        return None
    i, j = inside[0], inside[-1]
    g_i, g_j = code_threshold(out_min + 1 + np.array([i, j]), shift, rounding).tolist()
    span = int(positions[j] - positions[i])
    lowest = max(1, -((-(g_j - g_i + 1)) // (span + 1)))
    highest = (g_j - g_i - 1) // (span - 1) if span > 1 else 2 * (g_j - g_i) + 2
    largest_input = max(abs(in_min), abs(in_max) + 1)
    highest = min(highest, MAX_PRODUCT // largest_input)
    return (lowest, highest) if lowest <= highest else None


def _exact_in_bracket(positions, bracket, shift, rounding, out_min, in_min, in_max):
    """(M, B) of an exact requantizer with this shift and M in the bracket, or None. The bias slack high - low is
    a concave function of M (a min of lines minus a max of lines), so a ternary search finds its maximum."""
    if bracket is None:
        return None
    lowest, highest = bracket
    for _ in range(MAX_SEARCH_STEPS):
        if highest - lowest < 3:
            break
        third = (highest - lowest) // 3
        left, right = lowest + third, highest - third
        if _slack(positions, left, shift, rounding, out_min, in_min, in_max)[0] < \
                _slack(positions, right, shift, rounding, out_min, in_min, in_max)[0]:
            lowest = left + 1
        else:
            highest = right
    for multiplier in range(lowest, highest + 1):
        slack, low, high = _slack(positions, multiplier, shift, rounding, out_min, in_min, in_max)
        if slack >= 0:
            return multiplier, min(max(0, low), high)
    return None


def _exact_at_shift(positions, shift, rounding, out_min, in_min, in_max):
    """(M, B) of an exact requantizer with this shift, or None."""
    bracket = _multiplier_bracket(positions, shift, rounding, out_min, in_min, in_max)
    return _exact_in_bracket(positions, bracket, shift, rounding, out_min, in_min, in_max)


def _largest_shift(positions, in_min, in_max):
    """The largest shift worth trying: MAX_SHIFT, or less where M ~ 2^S / step would pass MAX_PRODUCT / |x|."""
    inside = np.flatnonzero((positions > in_min) & (positions <= in_max))
    if inside.size < 2 or positions[inside[-1]] == positions[inside[0]]:
        return 0
    step = (positions[inside[-1]] - positions[inside[0]]) / (inside[-1] - inside[0])  # inputs per code: 1 / s
    largest_input = max(abs(in_min), abs(in_max) + 1)
    return min(MAX_SHIFT, int(np.floor(np.log2(step * MAX_PRODUCT / largest_input))) - 1)


def _fit_channel(positions, rounding, out_min, in_min, in_max):
    """(M, B, S) with the smallest shift that reproduces one channel's positions, or None. A requantizer exact at
    shift S is exact at S + 1 (M, B doubled), so the smallest shift is found by bisection."""
    highest = _largest_shift(positions, in_min, in_max)
    if highest < 1 or _exact_at_shift(positions, highest, rounding, out_min, in_min, in_max) is None:
        return None
    lowest = 1
    while lowest < highest:
        middle = (lowest + highest) // 2
        if _exact_at_shift(positions, middle, rounding, out_min, in_min, in_max) is None:
            lowest = middle + 1
        else:
            highest = middle
    multiplier, bias = _exact_at_shift(positions, lowest, rounding, out_min, in_min, in_max)
    return multiplier, bias, lowest


def _has_slope(positions, in_min, in_max):
    """True when at least two distinct step positions lie inside the input range (a scale can be fitted)."""
    inside = positions[(positions > in_min) & (positions <= in_max)]
    return inside.size >= 1 and inside[-1] != inside[0]


def _fit_step_channel(positions, shift, rounding, out_min, in_min, in_max):
    """(M, B) of a channel with at most one step position inside the range, at the layer's shift (M = 0: a
    constant), searched between 0 and a slope that crosses every code in one input step; None where none fits."""
    g = code_threshold(out_min + 1 + np.array([0, positions.size - 1]), shift, rounding)
    largest_input = max(abs(in_min), abs(in_max) + 1)
    steep = min(int(g[-1] - g[0]) + 1, MAX_PRODUCT // largest_input)
    return _exact_in_bracket(positions, (0, steep), shift, rounding, out_min, in_min, in_max)


def fit_requantizer(thresholds, out_min: int, in_min: int, in_max: int):
    """The exact RequantizerFit of thresholds [C, N] (a MultiThreshold with out_scale 1, out_bias out_min) on
    integer inputs in [in_min, in_max], or None when no channel-wise (M, B) with one shift S <= MAX_SHIFT and one
    rounding mode reproduces every channel on the whole input range. Channels with at most one step inside the
    range (constants, single steps) take the shift of the others; a layer needs at least one sloped channel."""
    positions = threshold_positions(thresholds, in_min, in_max)
    out_max = out_min + positions.shape[-1]
    sloped = [_has_slope(row, in_min, in_max) for row in positions]
    if not any(sloped):
        return None
    for rounding in ROUNDINGS:
        fits = [_fit_channel(row, rounding, out_min, in_min, in_max) if slope else None
                for row, slope in zip(positions, sloped)]
        if any(fit is None for fit, slope in zip(fits, sloped) if slope):
            continue
        shift = max(fit[2] for fit in fits if fit is not None)
        channels = []
        for row, fit in zip(positions, fits):
            if fit is None:
                fit = _fit_step_channel(row, shift, rounding, out_min, in_min, in_max)
                channels.append(fit)
            else:
                channels.append((fit[0] << (shift - fit[2]), fit[1] << (shift - fit[2])))
        if any(channel is None for channel in channels):
            continue
        multipliers = tuple(m for m, _ in channels)
        biases = tuple(b for _, b in channels)
        exact = all(np.array_equal(step_positions(m, b, shift, rounding, out_min, out_max, in_min, in_max), row)
                    for m, b, row in zip(multipliers, biases, positions))
        if exact:
            return RequantizerFit(multipliers, biases, shift, rounding, out_min, out_max)
    return None
