"""Resource models of the stream layers: DuplicateStreams, elementwise binary ops, GlobalAccPool, Inner/OuterShuffle,
Reshape, StreamingDataWidthConverter and LabelSelect.

finn-plus reports 0 for most of them (no `lut_estimation`, or only the parameter memory of an elementwise op). Where
a layer is pure wiring by its RTL (a Reshape between equal stream widths: dwc's `vpc` collapses to wires), the model
says 0 and that is a result.
"""

from math import gcd, prod

from psa_finn.analysis.resources.primitives import adder_luts, clog2, comparator_luts, counter_luts
from psa_finn.analysis.resources.primitives import memory_resources, mux_luts

# An HLS-generated streaming loop: its iteration counter plus one LUT per stream for the valid/ready handshake.
HANDSHAKE_LUTS_PER_STREAM = 1


def hls_loop_luts(iterations: int, streams: int) -> int:
    """Control of one pipelined HLS loop (II = 1): the trip counter and the stream handshakes."""
    return counter_luts(iterations) + HANDSHAKE_LUTS_PER_STREAM * streams


def lut_multiplier_luts(a_bits: int, b_bits: int) -> int:
    """A multiplier in LUTs: FINN-R's per-product cost (2 ceil((a + b) / 6) - 1) (a + b), the multiplier term of
    finn-plus's MVAU_hls model."""
    width = a_bits + b_bits
    return (2 * -(-width // 6) - 1) * width


def duplicate_streams_resources(op, model, fpgapart) -> dict:
    """DuplicateStreams_hls: the input word is wired to every output; logic = the HLS loop's trip counter over
    vectors x NumChannels / PE and one handshake per stream (1 + NumOutputStreams)."""
    iterations = prod(op.get_nodeattr("numInputVectors")) * op.get_nodeattr("NumChannels") // op.get_nodeattr("PE")
    return {"lut": hls_loop_luts(iterations, 1 + op.get_nodeattr("NumOutputStreams")), "dsp": 0, "bram18": 0,
            "uram": 0}


# Elementwise operations by datapath: "add" an adder of the output width, "mul" a multiplier, "compare" a comparison
# of the wider input, "select" compare + 2:1 mux, "absdiff" two subtractions + mux, "logic" one LUT per 3 bit pairs.
ELEMENTWISE_DATAPATH = {
    "ElementwiseAdd": "add", "ElementwiseSub": "add", "ElementwiseAbsDiff": "absdiff", "ElementwiseMul": "mul",
    "ElementwiseAnd": "logic", "ElementwiseOr": "logic", "ElementwiseXor": "logic",
    "ElementwiseBitwiseAnd": "logic", "ElementwiseBitwiseOr": "logic", "ElementwiseBitwiseXor": "logic",
    "ElementwiseEqual": "compare", "ElementwiseLess": "compare", "ElementwiseLessOrEqual": "compare",
    "ElementwiseGreater": "compare", "ElementwiseGreaterOrEqual": "compare",
    "ElementwiseMax": "select", "ElementwiseMin": "select",
}
# Vivado HLS binds a multiplication to a DSP once both operands are wider than this (smaller ones go to LUTs).
HLS_DSP_MULTIPLY_MIN_BITS = 10


def elementwise_datapath(op_type: str):
    """The ELEMENTWISE_DATAPATH kind of an Elementwise*_hls / _rtl op type, or None."""
    return ELEMENTWISE_DATAPATH.get(op_type.rsplit("_", 1)[0])


def elementwise_binary_resources(op, model, fpgapart) -> dict:
    """Elementwise binary ops (hls and rtl): PE copies of the operator (ELEMENTWISE_DATAPATH) on lhs/rhs bits giving
    out bits, the loop control, and the constant operand's memory by finn-plus's own rules (`bram_estimation`,
    `uram_estimation`, `lut_estimation` for distributed), or a LUT ROM when finn places it nowhere (ram_style auto
    with an embedded constant of few words). A multiply by an operand of one value per channel and PE = channels
    is a constant multiply, still counted as a full multiplier (an upper bound)."""
    pe = op.get_nodeattr("PE")
    lhs, rhs = op.lhs_dtype.bitwidth(), op.rhs_dtype.bitwidth()
    out = op.out_dtype.bitwidth()
    kind = elementwise_datapath(op.onnx_node.op_type)
    dsp = 0
    if kind == "add":
        per_pe = adder_luts(out)
    elif kind == "absdiff":
        per_pe = 2 * adder_luts(out) + mux_luts(2, out)
    elif kind == "mul":
        if min(lhs, rhs) > HLS_DSP_MULTIPLY_MIN_BITS:
            per_pe, dsp = 0, pe
        else:
            per_pe = lut_multiplier_luts(lhs, rhs)
    elif kind == "compare":
        per_pe = comparator_luts(max(lhs, rhs))
    elif kind == "select":
        per_pe = comparator_luts(max(lhs, rhs)) + mux_luts(2, out)
    else:
        per_pe = -(-max(lhs, rhs) // 3)
    iterations = prod(op.get_folded_output_shape()[:-1])
    lut = pe * per_pe + hls_loop_luts(iterations, 3)
    bram, uram = int(op.bram_estimation(fpgapart)), int(op.uram_estimation(fpgapart))
    lut += int(op.lut_estimation(fpgapart))
    if bram == 0 and uram == 0 and op.get_nodeattr("ram_style") != "distributed":
        for width, depth in op._parameter_memory_specs():
            lut += memory_resources(depth, width, "distributed")["lut"]
    return {"lut": lut, "dsp": dsp, "bram18": bram, "uram": uram}


def global_acc_pool_resources(op, model, fpgapart) -> dict:
    """GlobalAccPool_hls: per PE an accumulator of (input bits + clog2(vectors)) bits; with NumChannels / PE > 1
    folds, the partial sums of all folds sit in a writable memory of that depth (LUTRAM); the loop control."""
    pe, channels = op.get_nodeattr("PE"), op.get_nodeattr("NumChannels")
    vectors = prod(op.get_nodeattr("numInputVectors"))
    acc_bits = op.get_output_datatype().bitwidth()
    folds = channels // pe
    lut = pe * adder_luts(acc_bits)
    if folds > 1:
        lut += memory_resources(folds, pe * acc_bits, "distributed", writable=True)["lut"]
    lut += hls_loop_luts(vectors * folds, 2) + counter_luts(folds)
    return {"lut": lut, "dsp": 0, "bram18": 0, "uram": 0}


def inner_shuffle_resources(op, model, fpgapart) -> dict:
    """InnerShuffle_rtl (finn-rtllib inner_shuffle.sv): an I x J transpose through SIMD dual-port banks of
    2 I J / SIMD words of BITS (double-buffered pages; style left to synthesis), the write rotation (a
    gcd(J, SIMD):1 mux per lane and bit, when > 1), the read permutation (a SIMD:1 mux per lane and bit), the
    per-bank read address (clog2(depth) bits each) and the write address / page counters."""
    shape = op.get_nodeattr("transpose_in_shape")
    i_dim, j_dim = shape[-2], shape[-1]
    simd = op.get_nodeattr("SIMD")
    bits = op.get_input_datatype().bitwidth()
    depth = 2 * i_dim * j_dim // simd
    bank = memory_resources(depth, bits, "auto", writable=True)
    rotations = gcd(j_dim, simd)
    lut = simd * bank["lut"] + simd * mux_luts(rotations, bits) + simd * mux_luts(simd, bits)
    lut += simd * adder_luts(clog2(depth)) + 2 * counter_luts(depth)
    return {"lut": lut, "dsp": 0, "bram18": simd * bank["bram18"], "uram": simd * bank["uram"]}


def width_converter_luts(in_bits: int, out_bits: int, elem_bits: int) -> int:
    """finn-rtllib dwc `vpc` from in_bits to out_bits words: equal widths are wires (0). Otherwise the wider word
    is held in a buffer of max(in, out) bits loaded from or shifted towards the narrow side, one 2:1 mux per bit
    (two bits per LUT6_2), plus the beat counter; widths that do not divide each other go through both."""
    if in_bits == out_bits:
        return 0
    narrow, wide = min(in_bits, out_bits), max(in_bits, out_bits)
    lut = mux_luts(2, wide) + counter_luts(wide // gcd(wide, narrow))
    if wide % narrow:
        lut += mux_luts(2, narrow * wide // gcd(wide, narrow)) - mux_luts(2, wide)
    return lut


def reshape_resources(op, model, fpgapart) -> dict:
    """Reshape_rtl: finn-rtllib's dwc with IBITS = OBITS: wires (see `width_converter_luts`)."""
    lut = width_converter_luts(op.get_instream_width(), op.get_outstream_width(), op.get_input_datatype().bitwidth())
    return {"lut": lut, "dsp": 0, "bram18": 0, "uram": 0}


def data_width_converter_resources(op, model, fpgapart) -> dict:
    """StreamingDataWidthConverter (rtl: dwc `vpc`, hls: finn-hlslib's shift-based converter): see
    `width_converter_luts`."""
    lut = width_converter_luts(op.get_instream_width(), op.get_outstream_width(), op.get_input_datatype().bitwidth())
    return {"lut": lut, "dsp": 0, "bram18": 0, "uram": 0}


def label_select_resources(op, model, fpgapart) -> dict:
    """LabelSelect_hls (finn-hlslib TopK): K insertion stages, each comparing the incoming value with its slot
    (input bits) and muxing value + label (input bits + clog2(Labels)) into it, per PE; loop control."""
    pe, k = op.get_nodeattr("PE"), op.get_nodeattr("K")
    labels = op.get_nodeattr("Labels")
    in_bits = op.get_input_datatype().bitwidth()
    lut = pe * k * (comparator_luts(in_bits) + mux_luts(2, in_bits + clog2(labels)))
    lut += hls_loop_luts(labels // pe, 2)
    return {"lut": lut, "dsp": 0, "bram18": 0, "uram": 0}


def outer_shuffle_buffer_words(op) -> int:
    """Reorder-buffer depth of OuterShuffle_hls (finn-hlslib input_gen): the power of two >= the read pointer's
    largest retraction + 6 (write-pointer delay 4 + 2), as finn-plus's `OuterShuffle.get_exp_cycles` derives it."""
    from finn.custom_op.fpgadataflow.outer_shuffle import _NestSim

    simd = op.get_nodeattr("SIMD")
    in_shape = list(op.get_nodeattr("transpose_in_shape"))
    perm = list(op.get_nodeattr("perm"))
    out_shape = [in_shape[p] for p in perm]
    strides = [prod((in_shape + [1])[i + 1:]) for i in range(len(in_shape))]
    coeffs = [1 if strides[p] == 1 else strides[p] // simd for p in perm]
    out_shape[-1] //= simd
    nest = _NestSim(True, prod(out_shape), *[v for pair in zip(out_shape, coeffs) for v in pair])
    return 2 ** max(1, clog2(nest.max_rp_retract + 6))


def outer_shuffle_resources(op, model, fpgapart) -> dict:
    """OuterShuffle_hls (finn-hlslib input_gen.hpp): a reorder buffer of `outer_shuffle_buffer_words` words of
    SIMD x bits (writable, style left to synthesis), the nested loop counters of the output shape (clog2 of each
    dimension), the read / write / free pointer adders (address bits + 1 each) and the full / empty comparisons."""
    words = outer_shuffle_buffer_words(op)
    width = op.get_nodeattr("SIMD") * op.get_input_datatype().bitwidth()
    buffer = memory_resources(words, width, "auto", writable=True)
    address = clog2(words) + 1
    shape = list(op.get_nodeattr("transpose_in_shape"))
    lut = buffer["lut"] + sum(counter_luts(n) for n in shape) + 3 * adder_luts(address) + 2 * comparator_luts(address)
    lut += hls_loop_luts(prod(shape) // op.get_nodeattr("SIMD"), 2)
    return {"lut": lut, "dsp": 0, "bram18": buffer["bram18"], "uram": buffer["uram"]}
