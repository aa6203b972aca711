"""What a new user's first hour hit (scripts/fault_trial_newuser.sh, docs/faults.md "A new user's trial"): each case
asserts one line naming the argument, file, node, key or flag and the fix, and the exit code of its kind."""

import pytest

from psa_finn.nn import QuantBSpline, QuantKANLinear, QuantLerpPSA


@pytest.mark.parametrize("layer", [lambda b: QuantLerpPSA(16, bit_width=b), lambda b: QuantBSpline(16, bit_width=b),
                                   lambda b: QuantKANLinear(4, 2, bit_width=b)])
@pytest.mark.parametrize("bits", [1, 17])
def test_layer_bit_width_outside_2_to_8_is_refused_at_construction(layer, bits):
    """Before: bit_width=17 exported silently, bit_width=1 failed at export with 'give the layer an input quantizer'
    (Brevitas makes a 1-bit quantizer a BipolarQuant)."""
    with pytest.raises(ValueError, match=rf"bit_width must be from 2 to 8 .*got {bits}; pass e.g. bit_width=8"):
        layer(bits)
