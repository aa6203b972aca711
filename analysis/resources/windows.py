"""Resource models of the sliding-window layers finn-plus gives no estimate: Pool_hls and FMPadding_rtl.

(ConvolutionInputGenerator_rtl keeps finn-plus's own model: its backend estimates the line buffer and its control.)
"""

from math import prod

from psa_finn.analysis.resources.primitives import adder_luts, clog2, comparator_luts, counter_luts
from psa_finn.analysis.resources.primitives import memory_resources, mux_luts
from psa_finn.analysis.resources.streams import hls_loop_luts


def pool_resources(op, model, fpgapart) -> dict:
    """Pool_hls (finn-hlslib Pool_batch): the window's K x K elements of each channel arrive one after another
    (from the sliding window generator), PE channels per cycle. Per PE one reduction unit: MaxPool a comparison and
    a 2:1 mux of the input bits; an average / sum pool an accumulator of AccumBits. With Channels / PE > 1 folds the
    partial results of all folds are held in a writable memory of that depth (LUTRAM). Loop control."""
    pe, channels = op.get_nodeattr("PE"), op.get_nodeattr("Channels")
    in_bits = op.get_input_datatype().bitwidth()
    folds = channels // pe
    if op.get_nodeattr("Function") == "MaxPool":
        width, per_pe = in_bits, comparator_luts(in_bits) + mux_luts(2, in_bits)
    else:
        width = op.get_nodeattr("AccumBits")
        per_pe = adder_luts(width)
    lut = pe * per_pe
    if folds > 1:
        lut += memory_resources(folds, pe * width, "distributed", writable=True)["lut"]
    kernel = prod(op.get_nodeattr("KernelSize"))
    pixels = prod(op.get_nodeattr("OutImgDims")) * op.get_nodeattr("BatchSize")
    lut += hls_loop_luts(pixels * kernel * folds, 2) + counter_luts(kernel)
    return {"lut": lut, "dsp": 0, "bram18": 0, "uram": 0}


def fmpadding_rtl_resources(op, model, fpgapart) -> dict:
    """FMPadding_rtl (finn-rtllib fmpadding.sv): column, row and SIMD-fold counters, each compared with the
    run-time configurable padding bounds (start / end registers: variable comparisons), and the two-stage output
    buffer that selects input data or zeros (a 2:1 mux plus the zero gating: one LUT per stream bit)."""
    dims = op.get_nodeattr("ImgDim")
    padding = op.get_nodeattr("Padding")
    out_x = dims[1] + padding[1] + padding[3]
    out_y = dims[0] + padding[0] + padding[2]
    stream_bits = op.get_nodeattr("SIMD") * op.get_input_datatype().bitwidth()
    folds = op.get_nodeattr("NumChannels") // op.get_nodeattr("SIMD")
    x_bits, y_bits = clog2(out_x) + 1, clog2(out_y) + 1
    lut = stream_bits + counter_luts(2 ** x_bits) + counter_luts(2 ** y_bits) + counter_luts(folds)
    lut += 2 * comparator_luts(x_bits) + 2 * comparator_luts(y_bits)
    return {"lut": lut, "dsp": 0, "bram18": 0, "uram": 0}
