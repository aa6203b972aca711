"""The resource model against yosys `synth_xilinx` where yosys can read the layer's HDL: psa-finn's PerChannelLUT
and KANLinear Verilog (finn-rtllib's SystemVerilog cannot be read by yosys 0.23 or 0.70: docs/hardware_numbers.md).

Sweeps over channels, PE, input bits, mode and ROM style (PerChannelLUT) and over MW, MH, SIMD, PE and bits
(KANLinear): LUT within +-25 %, BRAM18 within 2. Layers whose whole
logic is a few dozen LUTs (address and control only) are outside the LUT tolerance and are listed in the docs.
"""

import pytest

from psa_finn.analysis.resources import layer_resources
from psa_finn.hardware_checks.yosys_synth import yosys_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not yosys_available(), reason="yosys is not installed")]

U50 = "xcu50-fsvh2104-2-e"
SWEEP = [  # channels, PE, input/output bits, mode, ram_style
    (16, 1, 6, "full", "distributed"),
    (16, 4, 6, "full", "distributed"),
    (8, 8, 8, "lerp64", "distributed"),
    (64, 4, 8, "lerp64", "block"),
]


@pytest.mark.parametrize("channels,pe,bits,mode,ram_style", SWEEP)
def test_per_channel_lut_model_agrees_with_yosys(tmp_path, channels, pe, bits, mode, ram_style):
    from psa_finn.build_configs import finn_shims

    finn_shims.boot_finn(tmp_path)
    from psa_finn.hardware_checks.lut_layer_models import make_lut_layer_model
    from psa_finn.hardware_checks.synth_check import synth_check_layer

    model = make_lut_layer_model(channels, pe, f"INT{bits}", f"INT{bits}", mode, num_vectors=(8,),
                                 impl_style="rtl", ram_style=ram_style)
    node = model.graph.node[0]
    figures = layer_resources(model, U50)[node.name]
    synthesised = synth_check_layer(model, node, U50, tmp_path / "synth")
    assert figures["basis"] == "psa-finn model"
    assert abs(figures["lut"] - synthesised["lut"]) <= 0.25 * synthesised["lut"], (figures, synthesised["cells"])
    assert abs(figures["bram18"] - synthesised["bram18"]) <= 2
    assert figures["dsp"] == synthesised["dsp"] == 0


KAN_SWEEP = [  # MW, MH, SIMD, PE, input bits, table bits: unrolled, folded with the input buffer, block RAM
    (8, 4, 8, 4, "INT4", "INT6"),      # unrolled: LUT ROMs 16 deep, the flat sums dominate
    (16, 8, 4, 2, "INT4", "INT6"),     # folded, LUT ROMs 256 deep, LUTRAM input buffer
    (16, 8, 2, 1, "INT4", "INT7"),     # block RAM ROMs (1,024 x 7)
    (64, 16, 1, 1, "INT4", "INT7"),    # the digits KAN's first layer folded to one lookup per cycle
    (16, 16, 4, 4, "INT8", "INT10"),   # 8 bits: 4,096 x 40 ROMs in two RAMB18 aspect ratios
]


@pytest.mark.parametrize("mw,mh,simd,pe,input_dt,table_dt", KAN_SWEEP)
def test_kan_linear_model_agrees_with_yosys(tmp_path, mw, mh, simd, pe, input_dt, table_dt):
    """KANLinear's model (LUT logic and LUT as memory, as Vivado counts LUTs) against yosys' LUT + LUTRAM."""
    from psa_finn.build_configs import finn_shims

    finn_shims.boot_finn(tmp_path)
    from psa_finn.hardware_checks.kan_layer_models import make_kan_layer_model
    from psa_finn.hardware_checks.synth_check import synth_check_layer

    model = make_kan_layer_model(mw, mh, simd, pe, input_dt, table_dt, num_vectors=(2,), impl_style="rtl")
    node = model.graph.node[0]
    figures = layer_resources(model, U50)[node.name]
    synthesised = synth_check_layer(model, node, U50, tmp_path / "synth")
    luts = synthesised["lut"] + synthesised["lutram"]
    assert figures["basis"] == "psa-finn model"
    assert abs(figures["lut"] - luts) <= 0.25 * luts, (figures, synthesised["cells"])
    assert abs(figures["bram18"] - synthesised["bram18"]) <= 2
    assert figures["dsp"] == synthesised["dsp"] == 0
