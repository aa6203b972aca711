"""Resource models of the matrix-vector unit: MVAU_rtl (finn-rtllib mvu/) and MVAU_hls.

MVAU_rtl follows finn-rtllib's `mvu_vvu_axi.sv` -> `mvu.sv` datapath for DSP48E1/E2 (and DSP58 where the 8sx9 core
is not used); finn-plus's own `lut_estimation` returns 0 for it and its `dsp_estimation` assumes 4 PEs per DSP.
MVAU_hls keeps finn-plus's FINN-R model (`MVAU_hls.lut_estimation`: multipliers, adder tree, accumulator,
thresholds and LUTRAM weights per PE, fitted to Vivado HLS), which already follows its datapath.
"""

from math import ceil

from finn.util.basic import get_dsp_block

from psa_finn.analysis.resources.primitives import (
    adder_luts,
    adder_tree_luts,
    clog2,
    counter_luts,
    memory_resources,
    sum_width,
)

DSP_VERSION = {"DSP48E1": 1, "DSP48E2": 2, "DSP58": 3}


def mvu_geometry(weight_bits: int, act_bits: int, accu_bits: int, simd: int, version: int,
                 narrow_weights: bool) -> dict:
    """The lane packing of mvu.sv: several PEs share one DSP's A:D path, each lane at least W + A - 1 bits wide.

    Returns {lanes, lo_widths, hi_widths}: NUM_LANES = 1 + (A_WIDTH - !NARROW - W) / (W + A - 1) (A_WIDTH 25 on
    DSP48E1, 27 after), the lane offsets of `sliceLanes`, per lane the low part width (summed by the SIMD adder tree
    outside the DSPs) and the width of the high side band (`hi_width`) that carries the cross-lane overflows.
    """
    a_width = 25 + 2 * (version > 1)
    p_width = 58 if version == 3 else 48
    min_lane = weight_bits + act_bits - 1
    lanes = 1 if a_width == weight_bits else 1 + (a_width - (not narrow_weights) - weight_bits) // min_lane
    slack = a_width - ((not narrow_weights) + weight_bits + (lanes - 1) * min_lane)
    if slack < 0:
        raise ValueError(f"mvu.sv cannot hold {weight_bits}-bit weights on DSP version {version}")
    offsets = [0]
    for i in range(1, lanes):
        extra = (slack + (lanes - 1 - i)) // (lanes - i)
        offsets.append(offsets[-1] + min_lane + extra)
        slack -= extra
    offsets.append(min(offsets[-1] + accu_bits, p_width))
    lo = [offsets[i + 1] - offsets[i] for i in range(lanes)]

    def hi_width(i):
        if accu_bits <= lo[i]:
            return 0 if i == lanes - 1 else 1 + clog2(simd)
        if clog2(simd) < accu_bits - lo[i] - 1:
            return 1 + accu_bits - lo[i]
        overflow, depth = 0, 0
        for k in range(i, -1, -1):
            depth += lo[k]
            overflow += 2 ** (accu_bits - depth - 1) if accu_bits - depth - 1 >= 0 else 0
        return 1 + clog2(overflow + simd)

    return {"lanes": lanes, "lo_widths": lo, "hi_widths": [hi_width(i) for i in range(lanes)]}


def narrow_weights(op, model) -> bool:
    """NARROW_WEIGHTS as MVAU_rtl.generate_hdl sets it: no weight equals the weight type's minimum."""
    weights = model.get_initializer(op.onnx_node.input[1]) if model is not None else None
    if weights is None or op.get_nodeattr("mem_mode") in ("dynamic", "external_mem"):
        return False
    return bool(weights.min() != op.get_input_datatype(1).min())


def weight_memory(op, fpgapart) -> dict:
    """{lut, bram18, uram} of the weight memory by finn-plus's own ram_style rules (MatrixVectorActivation's
    `bram_estimation` / `uram_estimation`: SDP RAMB18 aspect ratios of a WMEM x (PE SIMD W) memory), plus, where those
    place it in LUTs (ram_style distributed, or an embedded memory <= 128 deep), a LUT ROM of that geometry and the
    memstream address counter."""
    mem_mode = op.get_nodeattr("mem_mode")
    if mem_mode in ("external", "external_mem", "dynamic"):
        return {"lut": 0, "bram18": 0, "uram": 0}
    depth = op.calc_wmem()
    width = op.get_nodeattr("PE") * op.get_nodeattr("SIMD") * op.get_input_datatype(1).bitwidth()
    bram, uram = int(op.bram_estimation(fpgapart)), int(op.uram_estimation(fpgapart))
    luts = counter_luts(depth)
    if bram == 0 and uram == 0:
        luts += memory_resources(depth, width, "distributed")["lut"]
    return {"lut": luts, "bram18": bram, "uram": uram}


def mvau_rtl_resources(op, model, fpgapart) -> dict:
    """MVAU_rtl (finn-rtllib mvu_vvu_axi.sv + mvu.sv), DSP48E1/E2.

    DSP = ceil(PE / NUM_LANES) x SIMD: each DSP multiplies one activation with NUM_LANES packed weights
    (`mvu_geometry`) and accumulates in its P register. LUT per DSP column (pipe) and lane: the cross-SIMD adder tree
    of the low parts (add_multi over SIMD addends of lo_width bits), the side-band tree (SIMD addends in [-1, 1]) and
    its accumulator (hi_width bits), the lane resolve adder (ACCU bits; lanes > 0 subtract the neighbour's side band:
    two adders), and one LUT6_2 per extra lane and SIMD for the cross-lane canary. The wrapper adds the activation
    replay buffer (MW/SIMD words of SIMD x A bits, LUTRAM, when MH/PE > 1) with its counters and the output buffer
    (PE x ACCU bits, SRL, one LUT per bit). Weights: `weight_memory`. DSP58 with the 8sx9 core: finn-plus's
    PE x ceil(SIMD / 3) DSPs, chained, and the same wrapper.
    """
    pe, simd = op.get_nodeattr("PE"), op.get_nodeattr("SIMD")
    mw, mh = op.get_nodeattr("MW"), op.get_nodeattr("MH")
    w_bits = op.get_input_datatype(1).bitwidth()
    a_bits = op.get_input_datatype(0).bitwidth()
    accu = op.get_output_datatype().bitwidth()
    version = DSP_VERSION.get(get_dsp_block(fpgapart), 1)
    luts = 0
    if version == 3 and w_bits <= 8 and a_bits <= 9:
        dsp = pe * ceil(simd / 3)
        luts += pe * adder_luts(accu)
    else:
        geometry = mvu_geometry(w_bits, a_bits, accu, simd, version, narrow_weights(op, model))
        lanes = geometry["lanes"]
        pipes = ceil(pe / lanes)
        dsp = pipes * simd
        for pipe in range(pipes):
            used = min(pe, lanes * (pipe + 1)) - lanes * pipe
            first = lanes - used  # PE_REM: the low lanes of a part-filled pipe are unused
            luts += simd * (used - 1)
            for lane in range(first, lanes):
                lo = geometry["lo_widths"][lane]
                luts += adder_tree_luts(simd, lo)
                hi = geometry["hi_widths"][lane]
                if hi > 0:
                    luts += adder_tree_luts(simd, 2, -1, 1) + adder_luts(max(hi, sum_width(simd, 2, -1, 1)))
                luts += adder_luts(accu) * (2 if lane > 0 else 1)
    sf, nf = mw // simd, mh // pe
    if nf > 1 and sf > 1:
        luts += memory_resources(sf, simd * a_bits, "distributed", writable=True)["lut"]
    luts += counter_luts(sf) + counter_luts(nf) + pe * accu
    memory = weight_memory(op, fpgapart)
    return {"lut": luts + memory["lut"], "dsp": dsp, "bram18": memory["bram18"], "uram": memory["uram"]}


def mvau_hls_resources(op, model, fpgapart) -> dict:
    """MVAU_hls: finn-plus's FINN-R model (c0 + c1 x PE x (multipliers + adder tree + accumulator + thresholds) +
    LUTRAM weights; DSPs by resType), which follows the HLS datapath; weights by `bram_estimation`."""
    return {"lut": int(op.lut_estimation(fpgapart)), "dsp": int(op.dsp_estimation(fpgapart)),
            "bram18": int(op.bram_estimation(fpgapart)), "uram": int(op.uram_estimation(fpgapart))}
