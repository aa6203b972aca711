"""Resource models of the Thresholding layers: Thresholding_rtl (finn-rtllib thresholding.sv) and Thresholding_hls.

finn-plus's `Thresholding_rtl.lut_estimation` counts only the LUTRAM that stores the thresholds; its HLS twin counts
one comparator of A bits per PE. These models count the comparators, the search pipeline and the output queue too.
"""

from psa_finn.analysis.resources.primitives import (
    adder_luts,
    adder_tree_luts,
    clog2,
    comparator_luts,
    constant_comparator_luts,
    counter_luts,
    memory_resources,
    shift_register_luts,
)


def threshold_rows(op, model) -> int:
    """Rows of the threshold tensor: NumChannels, or 1 for one row shared by every channel (the RTL then holds
    PE copies of it: thresholding_rtl.py sets C = PE)."""
    shape = model.get_tensor_shape(op.onnx_node.input[1]) if model is not None else None
    return op.get_nodeattr("NumChannels") if not shape else int(shape[0])


def _stage_style(depth, trigger_bram, trigger_uram):
    """RAM_STYLE of one stage memory as thresholding.sv picks it from the depth triggers ("auto" is synthesis'
    choice: `primitives.auto_memory_style`)."""
    if trigger_uram and depth >= trigger_uram:
        return "ultra"
    if trigger_bram and depth >= trigger_bram:
        return "block"
    return "distributed" if trigger_bram else "auto"


def thresholding_rtl_resources(op, model, fpgapart) -> dict:
    """Thresholding_rtl: a binary search over N sorted thresholds in M = clog2(N + 1) pipeline stages per PE.

    Per PE and stage s (0 <= s < M): a threshold memory of CF x 2^s words of K = threshold bits (CF = C / PE; a
    shared row gives C = PE, so CF = 1), placed by the depth triggers (`_stage_style`; a one-word stage is a constant);
    a K-bit comparison of the input with the read threshold (a constant comparison in a one-word stage); one LUT
    setting the result bit (`Scope && cmp`) and, where N + 1 is not a power of two, the scope comparison of the s
    pointer bits with a constant. Per PE: the output queue (MAX_PENDING - 1 = (DEEP_PIPELINE + 1) M + 2 words of M
    bits in SRLs, one LUT per bit) and the output bias adder (O bits, when ActVal != 0). Per layer: the channel-fold
    counter and the in-flight guard counter (clog2(MAX_PENDING) + 1 bits).
    """
    pe = op.get_nodeattr("PE")
    steps = op.get_nodeattr("numSteps")
    k_bits = op.get_input_datatype(1).bitwidth()
    rows = threshold_rows(op, model)
    channels = pe if rows == 1 else op.get_nodeattr("NumChannels")
    cf = channels // pe
    stages = clog2(steps + 1)
    trigger_bram, trigger_uram = op.get_nodeattr("depth_trigger_bram"), op.get_nodeattr("depth_trigger_uram")
    lut = bram = uram = 0
    for stage in range(stages):
        depth = cf * 2 ** stage
        if depth == 1:
            lut += pe * constant_comparator_luts(k_bits)
        else:
            memory = memory_resources(depth, k_bits, _stage_style(depth, trigger_bram, trigger_uram))
            lut, bram, uram = lut + pe * memory["lut"], bram + pe * memory["bram18"], uram + pe * memory["uram"]
            lut += pe * comparator_luts(k_bits)
        lut += pe
        if (2 ** (stages - stage - 1) + 2 ** stages - 1 - steps) >> (stages - stage) and stage > 0:
            lut += pe * constant_comparator_luts(stage)
    pending = (op.get_nodeattr("deep_pipeline") + 1) * stages + 3
    lut += pe * shift_register_luts(max(pending - 1, 2), stages)
    bias = op.get_nodeattr("ActVal")
    if bias:
        out_bits = clog2(steps + bias + 1) if bias >= 0 else 1 + clog2(max(-bias, steps + bias + 1))
        lut += pe * adder_luts(out_bits)
    lut += counter_luts(cf) + clog2(pending) + 1
    return {"lut": lut, "dsp": 0, "bram18": bram, "uram": uram}


def thresholding_hls_resources(op, model, fpgapart) -> dict:
    """Thresholding_hls (finn-hlslib thresholds.hpp): every PE compares its input with all N thresholds of its
    channel at once and counts the hits.

    Per PE: N comparisons of A bits (a constant comparison when the thresholds are embedded and one channel per PE)
    and the adder tree summing N one-bit results. Threshold memory: TMEM = C / PE words of PE x N x T bits, in LUTs
    or block RAM by ram_style (finn-plus's `bram_estimation` / `uram_estimation` rules; "distributed" or TMEM = 1:
    LUTs).
    """
    pe = op.get_nodeattr("PE")
    steps = op.get_nodeattr("numSteps")
    a_bits = op.get_input_datatype(0).bitwidth()
    t_bits = op.get_input_datatype(1).bitwidth()
    tmem = op.calc_tmem()
    width = pe * steps * t_bits
    compare = constant_comparator_luts(a_bits) if tmem == 1 else comparator_luts(a_bits)
    lut = pe * (steps * compare + adder_tree_luts(steps, 1)) + counter_luts(tmem)
    bram, uram = int(op.bram_estimation(fpgapart)), int(op.uram_estimation(fpgapart))
    if bram == 0 and uram == 0:
        lut += memory_resources(tmem, width, "distributed")["lut"]
    return {"lut": lut, "dsp": 0, "bram18": bram, "uram": uram}

