"""The resource model against yosys `synth_xilinx` where yosys can read the layer's HDL: psa-finn's PerChannelLUT
Verilog (finn-rtllib's SystemVerilog cannot be read by yosys 0.23 or 0.70: docs/hardware_numbers.md).

A sweep over channels, PE, input bits, mode and ROM style: LUT within +-25 %, BRAM18 within 2. Layers whose whole
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
