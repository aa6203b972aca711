"""Resource model of Requant_rtl (finn-rtllib requant/hdl/requant.sv): clip(round(x * scale + bias)) per channel.

finn-plus gives the layer no resource estimate. The datapath, per PE: stage 1 reads the channel's parameters, stage 2
multiplies X (x bits) by the scale mantissa (s bits), stage 3 adds the aligned bias, stage 4 shifts the product
window by the channel's shift and clips to N output bits.
"""

from finn.util.basic import get_dsp_block

from psa_finn.analysis.resources.mvau import DSP_VERSION
from psa_finn.analysis.resources.primitives import clog2, counter_luts, memory_resources, mux_luts, or_reduce_luts


def requant_rtl_resources(op, model, fpgapart) -> dict:
    """Requant_rtl, embedded or decoupled parameters.

    DSP: one per PE (an x x s multiply with s <= 25, x <= 27 (DSP48E2) and the bias add fit one DSP48E2 / DSP58).
    LUT per PE: the parameters of CF = C / PE channels (scale s bits, bias s + x + 1 bits, shift
    clog2(shift range) bits) as a LUT ROM of CF words (a one-channel fold is constants: 0); the shifter, an
    R:1 mux per output bit for the R = shift_max - shift_min + 1 shifts the channels use; the overflow test, an OR
    over the product bits above the output window (plus the shifted-out bits when R > 1); the clip, one LUT per
    output bit (neg ? 0 : ovf ? max : value). Per layer: the channel counter. Parameters from finn-plus's own
    `decompose_params` (the port of requant.sv's derive_PARAMS).
    """
    pe, channels = op.get_nodeattr("PE"), op.get_nodeattr("NumChannels")
    cf = channels // pe
    n_bits = op.get_output_datatype().bitwidth()
    version = DSP_VERSION.get(get_dsp_block(fpgapart), 1)
    params = op.decompose_params(model, version)
    s_bits, x_bits = params["s_width"], params["x_width"]
    shift_range = params["shift_max"] - params["shift_min"] + 1
    word = s_bits + (s_bits + x_bits + 1) + max(clog2(shift_range), 1)
    lut = pe * memory_resources(cf, word, "distributed")["lut"] if cf > 1 else 0
    product_bits = s_bits + x_bits + 1
    above = max(product_bits - 1 - (params["shift_max"] + n_bits), 0)
    per_pe = mux_luts(shift_range, n_bits) + or_reduce_luts(above + (shift_range - 1)) + n_bits
    lut += pe * per_pe + counter_luts(cf)
    return {"lut": lut, "dsp": pe, "bram18": 0, "uram": 0}
