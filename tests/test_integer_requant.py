"""The integer requantizer (custom_ops.integer_requant) and its exact detection in thresholds
(transforms.uniform_thresholds): hand-computed roundings, and the exactness sweep: every fitted requantizer equals
qonnx's MultiThreshold on EVERY value of its input type (enumerated up to 16 bits, at the step positions and the
ends for INT32), and thresholds that are not a requantizer are refused."""

import numpy as np
import pytest
from requant_graphs import multithreshold_codes, quantizer_thresholds

from psa_finn.custom_ops.integer_requant import requantize, step_positions
from psa_finn.transforms.uniform_thresholds import fit_requantizer


def test_requantize_rounds_ties_as_asked():
    # v / 4 for v = 2, 6, 10, -2, -6: the ties 0.5, 1.5, 2.5, -0.5, -1.5
    x = np.array([2, 6, 10, -2, -6])
    assert requantize(x, [1], [0], 2, "half_even", -8, 7).tolist() == [0, 2, 2, 0, -2]
    assert requantize(x, [1], [0], 2, "half_up", -8, 7).tolist() == [1, 2, 3, 0, -1]
    # 3 * x + 1 over 8, clipped to [0, 3]: x = -1 -> -2/8 -> 0; x = 5 -> 16/8 = 2; x = 9 -> 28/8 = 3.5 -> 4 -> 3
    assert requantize(np.array([-1, 5, 9]), [3], [1], 3, "half_even", 0, 3).tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="rounding"):
        requantize(x, [1], [0], 2, "nearest", 0, 3)


def test_step_positions_are_where_the_codes_start():
    positions = step_positions(1, 0, 2, "half_even", -2, 2, -16, 15)
    y = requantize(np.arange(-16, 16), [1], [0], 2, "half_even", -2, 2)
    expected = [np.flatnonzero(y >= code)[0] - 16 for code in (-1, 0, 1, 2)]
    assert positions.tolist() == expected


SWEEP = [
    # (input type range, scale, output range); power-of-two scales with ties, others with float biases
    ((-128, 127), 1.0, (-128, 127)),  # identity-like, INT8 -> INT8
    ((-128, 127), 0.5, (-8, 7)),  # ties at every other input
    ((-128, 127), 2.0 ** -3, (0, 15)),  # UINT4 output, clipped at both ends
    ((0, 255), 2.0 ** -4, (0, 7)),  # unsigned input
    ((-2048, 2047), 2.0 ** -7, (-128, 127)),  # INT12 accumulator, the ResMLP's 127/129 steps
    ((-2048, 2047), 0.37, (-128, 127)),  # scales that are not powers of two
    ((-32768, 32767), 2.0 ** -9, (0, 255)),  # INT16
    ((-32768, 32767), 0.0123, (-8, 7)),
]


@pytest.mark.parametrize("in_range,scale,out_range", SWEEP)
def test_fitted_requantizer_equals_the_thresholds_on_every_input(in_range, scale, out_range):
    rng = np.random.default_rng(7)
    in_min, in_max = in_range
    out_min, out_max = out_range
    # with power-of-two scales half-integer and quarter biases put many inputs on a rounding tie
    dyadic = np.log2(scale) == np.round(np.log2(scale))
    biases = np.concatenate([rng.integers(-40, 40, 4) / 2, rng.integers(-40, 40, 2) / 4]) if dyadic else \
        rng.normal(0, 5, 6)
    thresholds = quantizer_thresholds(scale, biases, out_min, out_max, in_min, in_max)
    fit = fit_requantizer(thresholds, out_min, in_min, in_max)
    assert fit is not None
    assert (fit.out_min, fit.out_max) == (out_min, out_max)
    x = np.repeat(np.arange(in_min, in_max + 1)[:, None], len(biases), axis=1)
    expected = multithreshold_codes(x, thresholds, out_min)
    produced = requantize(x, fit.multipliers, fit.biases, fit.shift, fit.rounding, fit.out_min, fit.out_max)
    assert np.array_equal(produced, expected)
    if dyadic and scale < 1:
        assert fit.rounding == "half_even" and set(fit.multipliers) <= {0, 1, 2}


def test_int32_accumulator_requantizer_is_exact_at_every_step_and_both_ends():
    """INT32 cannot be enumerated: check every step position, its left neighbour, the ends and random inputs."""
    in_min, in_max = -2**31, 2**31 - 1
    rng = np.random.default_rng(3)
    biases = rng.integers(-1000, 1000, 16) / 2
    thresholds = quantizer_thresholds(2.0 ** -7, biases, 0, 255, in_min, in_max)
    steps = np.unique(np.diff(thresholds, axis=1))
    assert steps.tolist() == [127, 129]  # the ties rounded half-to-even: an equal-steps test misses them
    fit = fit_requantizer(thresholds, 0, in_min, in_max)
    assert fit is not None and fit.rounding == "half_even" and set(fit.multipliers) == {1} and fit.shift == 7
    probes = np.concatenate([thresholds.reshape(-1), thresholds.reshape(-1) - 1, [in_min, in_max],
                             rng.integers(in_min, in_max, 2000)])
    probes = np.clip(probes, in_min, in_max).astype(np.int64)
    x = np.repeat(probes[:, None], len(biases), axis=1)
    expected = multithreshold_codes(x, thresholds, 0)
    produced = requantize(x, fit.multipliers, fit.biases, fit.shift, fit.rounding, 0, 255)
    assert np.array_equal(produced, expected)


@pytest.mark.parametrize("change", ["one_threshold_moved", "two_scales", "constant"])
def test_thresholds_that_are_no_requantizer_are_refused(change):
    thresholds = quantizer_thresholds(2.0 ** -3, [0.25, -1.5], -8, 7, -128, 127)
    if change == "one_threshold_moved":
        thresholds[1, 7] += 1
    elif change == "two_scales":
        thresholds[0, 8:] = thresholds[0, 8] + 3 * np.arange(7)
    else:
        thresholds[:] = 128  # never reached: a constant, no step to fit
    assert fit_requantizer(thresholds, -8, -128, 127) is None
