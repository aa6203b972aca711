"""Stream behaviour models: for each hardware layer kind, a `LayerTiming` of one frame given the layer's folding.

`STREAM_MODELS` maps a layer kind (the op type without its `_hls` / `_rtl` backend suffix) to a function
`(op, model) -> LayerTiming` (op: the node's finn-plus HWCustomOp; model: the ModelWrapper). A new HW layer adds
one entry, e.g. an MVAU-like layer that reads SIMD inputs and writes PE outputs per cycle:

    STREAM_MODELS["KANLinear"] = matrix_vector_unit

`stream_model_of(node)` raises `NoStreamModel` naming the node and its op type for a layer without one (FIFO sizing
never guesses a depth). Each model's basis is in its docstring and in docs/fifo_sizing.md; a model's cycles per
frame equal the layer's finn-plus `get_exp_cycles()` unless the docstring says why not (tests check it).
"""

import math

import numpy as np

from psa_finn.dataflow_sim.layer_timing import NO_WAIT, InternalLink, LayerTiming, StreamPort, earlier_frame, \
    streaming


class NoStreamModel(KeyError):
    """A hardware layer without a stream behaviour model: FIFO sizing cannot simulate it."""

    def __str__(self):
        return str(self.args[0])


def layer_kind(op_type: str) -> str:
    """The op type without its backend suffix (Thresholding_rtl -> Thresholding)."""
    for suffix in ("_hls", "_rtl"):
        if op_type.endswith(suffix):
            return op_type[: -len(suffix)]
    return op_type


def words(shape) -> int:
    """Stream words of a folded shape: all but the last (parallel) dimension."""
    return int(np.prod(shape[:-1]))


def dynamic_inputs(node, model) -> list:
    """Indices of the node's inputs that are streams (not initializers, not empty)."""
    return [i for i, name in enumerate(node.input) if name and model.get_initializer(name) is None]


def elementwise_stream(op, model) -> LayerTiming:
    """One word in, one word out per cycle on every stream (thresholding, LUTs, elementwise, duplication,
    requantisation): II = 1, pipeline latency not modelled. Cycles per frame = output words = get_exp_cycles."""
    node = op.onnx_node
    ins = dynamic_inputs(node, model)
    out_words = words(op.get_folded_output_shape())
    for i in ins:
        if words(op.get_folded_input_shape(i)) != out_words:
            raise ValueError(f"{node.name} ({node.op_type}): input {i} has {words(op.get_folded_input_shape(i))} "
                             f"words per frame, its output {out_words}; not a one-to-one stream")
    return streaming(out_words, len(ins), len(node.output), basis="one word per cycle (II=1)")


def width_converter(op, model) -> LayerTiming:
    """Words of one width repacked into words of another (StreamingDataWidthConverter, Reshape): one chain whose
    events are the words of the narrow side, one per cycle; a wide input word is read at the event of the first
    narrow word it feeds, a wide output word written at the event of the last one. Cycles per frame: the larger
    word count."""
    in_bits, out_bits = op.get_instream_width(), op.get_outstream_width()
    n_in, n_out = words(op.get_folded_input_shape()), words(op.get_folded_output_shape())
    if n_in * in_bits != n_out * out_bits:
        raise ValueError(f"{op.onnx_node.name}: {n_in} x {in_bits} bits in, {n_out} x {out_bits} bits out")
    if n_in >= n_out:
        # event i reads input word i; output word j leaves with the input word that completes it
        last_in = (np.arange(1, n_out + 1) * out_bits + in_bits - 1) // in_bits - 1
        return LayerTiming({"main": np.ones(n_in, np.int64)}, [], [StreamPort("main", np.arange(n_in))],
                           [StreamPort("main", last_in.astype(np.int64))], basis="one narrow word per cycle")
    first_out = (np.arange(n_in) * in_bits) // out_bits  # the output word in which input word i starts
    return LayerTiming({"main": np.ones(n_out, np.int64)}, [], [StreamPort("main", first_out.astype(np.int64))],
                       [StreamPort("main", np.arange(n_out))], basis="one narrow word per cycle")


def matrix_vector_unit(op, model) -> LayerTiming:
    """MVAU (finn-rtllib mvu/mvu_vvu_axi.sv with replay_buffer.sv; the HLS Matrix_Vector_Activate_Batch loop has
    the same order): per input vector, SF = MW/SIMD input words and NF = MH/PE output words in SF*NF cycles. The
    compute chain runs (nf, sf) for each vector, using input word sf, and writes output word nf at sf = SF-1. The
    read chain fills the replay buffer (2^ceil(log2 SF) words, free once a word's last replay is done; with NF = 1
    the buffer is a pass-through). Cycles per frame = vectors * SF * NF = get_exp_cycles (TH = 1)."""
    simd, pe = op.get_nodeattr("SIMD"), op.get_nodeattr("PE")
    mw, mh = op.get_nodeattr("MW"), op.get_nodeattr("MH")
    if "TH" in op.get_nodeattr_types() and op.get_nodeattr("TH") not in (1, None):
        raise NotImplementedError(f"{op.onnx_node.name}: tiled MVAU (TH > 1) has no stream model")
    return _replayed_dot_products(int(np.prod(op.get_nodeattr("numInputVectors"))), mw // simd, mh // pe,
                                  basis="mvu_vvu_axi.sv + replay_buffer.sv order; SF*NF cycles per vector")


def _replayed_dot_products(vectors, sf, nf, basis) -> LayerTiming:
    """Read SF words per vector into a replay buffer; compute NF x SF steps per vector; write at each sf = SF-1."""
    steps = vectors * nf * sf
    step = np.arange(steps)
    vector, word = step // (nf * sf), step % sf
    reads = np.arange(vectors * sf)
    compute_waits = vector * sf + word  # step (v, nf, sf) uses input word v*SF + sf
    capacity = 1 if nf == 1 else 2 ** math.ceil(math.log2(sf))
    # input word i needs the slot of word i - capacity, free after that word's last replay (nf = NF-1)
    freed = reads - capacity
    last_use = (freed % (vectors * sf)) // sf * nf * sf + (nf - 1) * sf + (freed % sf)
    read_waits = np.where(freed >= 0, last_use, earlier_frame(last_use, steps))
    outputs = step[word == sf - 1]
    links = [InternalLink("compute", "read", compute_waits, delay=0 if nf == 1 else 1),
             InternalLink("read", "compute", read_waits, delay=0 if nf == 1 else 1)]
    return LayerTiming({"read": np.ones(vectors * sf, np.int64), "compute": np.ones(steps, np.int64)}, links,
                       [StreamPort("read", reads)], [StreamPort("compute", outputs)], basis=basis)


def inner_shuffle(op, model) -> LayerTiming:
    """InnerShuffle (finn-rtllib inner_shuffle/inner_shuffle.sv): a transpose of the two innermost dimensions
    through two pages of I*J/SIMD words. A page is read out (in any order) from the cycle after its last word was
    written (WrJobsDone); each read request returns its word ELASTICMEM_LATENCY cycles later; the input is ready
    while a page is free, i.e. from the cycle after the last read request of the page written two pages before
    (irdy = !(WrJobsDone[0] && WrJobsDone[1])). Steady state: one word per cycle each side, so a frame takes its
    word count; finn-plus's get_exp_cycles (2 x words + one page) counts one frame's fill and drain."""
    in_shape = op.get_nodeattr("transpose_in_shape")
    simd = op.get_nodeattr("SIMD")
    page = int(in_shape[-2] * in_shape[-1] // simd)
    total = int(np.prod(in_shape) // simd)
    return paged_buffer(total, page, pages=2, latency=ELASTICMEM_LATENCY, basis="inner_shuffle.sv, two pages")


ELASTICMEM_LATENCY = 2  # cycles from a read request to its word at the InnerShuffle's output (elasticmem.sv)


def paged_buffer(total, page, pages, latency, basis) -> LayerTiming:
    """A buffer of `pages` pages: page t is read out from the cycle after it is complete (words `latency` cycles
    after their request), and written once the last request of page t - pages is made."""
    word = np.arange(total)
    last_of_page = (word // page) * page + page - 1
    # last word of page t - pages; negative for the first pages: an earlier frame's (InternalLink)
    prior = (word // page - pages) * page + page - 1
    links = [InternalLink("write", "read", last_of_page, delay=1 + latency),
             InternalLink("read", "write", prior, delay=1 - latency)]
    return LayerTiming({"read": np.ones(total, np.int64), "write": np.ones(total, np.int64)}, links,
                       [StreamPort("read", word)], [StreamPort("write", word)], basis=basis)


def global_acc_pool(op, model) -> LayerTiming:
    """GlobalAccPool (finn-hlslib AccPool_Batch; the HLS source is not in the venv: finn-plus's get_exp_cycles):
    reads every input word, accumulating per channel fold, then writes the NF folds. Cycles = words + NF."""
    n_in, n_out = words(op.get_folded_input_shape()), words(op.get_folded_output_shape())
    events = n_in + n_out
    return LayerTiming({"main": np.ones(events, np.int64)}, [], [StreamPort("main", np.arange(n_in))],
                       [StreamPort("main", n_in + np.arange(n_out))], basis="finn-plus get_exp_cycles")


def reduction(op, model) -> LayerTiming:
    """A layer that reduces each run of r consecutive input words to one output word, one input word per cycle
    (VVAU after a depthwise sliding window: K*K/SIMD words per output; Pool after its window generator: K*K): the
    output word leaves with the last word of its run. Cycles per frame = input words = get_exp_cycles."""
    n_in, n_out = words(op.get_folded_input_shape()), words(op.get_folded_output_shape())
    if n_out == 0 or n_in % n_out:
        raise ValueError(f"{op.onnx_node.name}: {n_in} input words do not reduce evenly to {n_out} output words")
    ratio = n_in // n_out
    return LayerTiming({"main": np.ones(n_in, np.int64)}, [], [StreamPort("main", np.arange(n_in))],
                       [StreamPort("main", np.arange(1, n_out + 1) * ratio - 1)],
                       basis="one input word per cycle, output at the end of each run")


def read_all_then_write(basis):
    """A layer that reads every input word of a frame, then writes its outputs one per cycle."""

    def model_of(op, model) -> LayerTiming:
        n_in, n_out = words(op.get_folded_input_shape()), words(op.get_folded_output_shape())
        return LayerTiming({"main": np.ones(n_in + n_out, np.int64)}, [], [StreamPort("main", np.arange(n_in))],
                           [StreamPort("main", n_in + np.arange(n_out))], basis=basis)

    model_of.__doc__ = f"Reads every input word, then writes the outputs ({basis})."
    return model_of


def feature_map_padding(op, model) -> LayerTiming:
    """FMPadding (finn-rtllib fmpadding/hdl/fmpadding.sv): one output word per cycle over the padded image, channel
    folds innermost; a word inside the original image is the input word read in the same cycle, a padding word is
    made without reading. Cycles per frame = padded words = get_exp_cycles."""
    height, width = op.get_nodeattr("ImgDim")
    top, left, bottom, right = op.get_nodeattr("Padding")
    folds = op.get_nodeattr("NumChannels") // op.get_nodeattr("SIMD")
    batch = int(op.get_nodeattr("numInputVectors"))
    out_h, out_w = height + top + bottom, width + left + right
    y, x, _ = np.meshgrid(np.arange(out_h), np.arange(out_w), np.arange(folds), indexing="ij")
    inside = ((y >= top) & (y < top + height) & (x >= left) & (x < left + width)).ravel()
    per_image = out_h * out_w * folds
    events = np.tile(np.flatnonzero(inside), batch) + np.repeat(np.arange(batch) * per_image, int(inside.sum()))
    return LayerTiming({"main": np.ones(per_image * batch, np.int64)}, [], [StreamPort("main", events)],
                       [StreamPort("main", np.arange(per_image * batch))], basis="fmpadding.sv, one word per cycle")


def sliding_window(op, model) -> LayerTiming:
    """ConvolutionInputGenerator (finn-rtllib swg, the RTL backend's "default" and "parallel" styles): a read side
    that writes input words into a circular buffer of get_buffer_depth() words and a write side that emits the
    windows (per output pixel: kernel position major, channel folds inner; depthwise: channel folds major; parallel
    window: one word per pixel and fold), one word per cycle. A window word waits for the last input word it
    needs; an input word waits until the word it overwrites (buffer depth earlier) has been emitted for the last
    time; a frame's first input word waits for the previous frame's last window word (the RTL does not overlap
    feature maps). Checked against the RTL's handshakes (tests/test_fifo_sizing_rtl.py)."""
    k_h, k_w = op.get_nodeattr("ConvKernelDim")
    in_h, in_w = op.get_nodeattr("IFMDim")
    out_h, out_w = op.get_nodeattr("OFMDim")
    s_h, s_w = op.get_nodeattr("Stride")
    d_h, d_w = op.get_nodeattr("Dilation")
    folds = op.get_nodeattr("IFMChannels") // op.get_nodeattr("SIMD")
    depthwise = bool(op.get_nodeattr("depthwise"))
    parallel = bool(op.get_nodeattr("parallel_window")) if "parallel_window" in op.get_nodeattr_types() else False
    oy, ox, ky, kx, fold = np.meshgrid(np.arange(out_h), np.arange(out_w), np.arange(k_h), np.arange(k_w),
                                       np.arange(folds), indexing="ij")
    source = ((oy * s_h + ky * d_h) * in_w + (ox * s_w + kx * d_w)) * folds + fold  # [oy, ox, ky, kx, fold]
    if parallel:
        needs = source.transpose(0, 1, 4, 2, 3).reshape(out_h * out_w * folds, k_h * k_w)
    elif depthwise:
        needs = source.transpose(0, 1, 4, 2, 3).reshape(-1, 1)
    else:
        needs = source.reshape(-1, 1)
    if needs.shape[0] != words(op.get_folded_output_shape()):
        raise ValueError(f"{op.onnx_node.name}: window order gives {needs.shape[0]} words, the node "
                         f"{words(op.get_folded_output_shape())}")
    n_in, n_out = in_h * in_w * folds, needs.shape[0]
    last_needed = np.maximum.accumulate(needs.max(axis=1))
    last_use = np.full(n_in, -1, dtype=np.int64)
    np.maximum.at(last_use, needs.ravel(), np.repeat(np.arange(n_out), needs.shape[1]))
    last_use = np.maximum.accumulate(last_use)  # a slot is free once every earlier word is done with too
    if not hasattr(op, "get_buffer_depth"):
        raise NotImplementedError(f"{op.onnx_node.name} ({op.onnx_node.op_type}): no buffer depth to model")
    depth = int(op.get_buffer_depth())
    overwritten = np.arange(n_in) - depth
    back = np.maximum(0, -overwritten + n_in - 1) // n_in  # frames back (0: this frame)
    used = last_use[overwritten + back * n_in]
    freed = np.where(used >= 0, used - back * n_out, NO_WAIT)
    # frames do not overlap (swg_template_default.sv): the next feature map's first read comes the cycle after the
    # previous one's last window word leaves its output register
    next_frame = np.full(n_in, NO_WAIT, dtype=np.int64)
    next_frame[0] = earlier_frame(n_out - 1, n_out)
    links = [InternalLink("write", "read", last_needed, delay=1), InternalLink("read", "write", freed, delay=1),
             InternalLink("read", "write", next_frame, delay=2)]
    return LayerTiming({"read": np.ones(n_in, np.int64), "write": np.ones(n_out, np.int64)}, links,
                       [StreamPort("read", np.arange(n_in))], [StreamPort("write", np.arange(n_out))],
                       basis="swg_template_default.sv: buffer of get_buffer_depth() words, frames in turn")


def outer_shuffle(op, model) -> LayerTiming:
    """OuterShuffle (finn-plus outer_shuffle_hls.py, the input_gen HLS pipeline its get_exp_cycles simulates): a
    transpose that keeps the innermost dimension, through a circular buffer of the power of two >= the read
    pattern's largest retraction + WP_DELAY + 2 words (the buffer size of get_exp_cycles). An output word waits for
    the input word it reads (4 cycles: the write-pointer delay); an input word for the slot of the word buffer-size
    earlier to be read out."""
    from finn.custom_op.fpgadataflow.outer_shuffle import _NestSim

    simd = op.get_nodeattr("SIMD")
    in_shape = list(op.get_nodeattr("transpose_in_shape"))
    perm = list(op.get_nodeattr("perm"))
    out_shape = [in_shape[p] for p in perm]
    strides = [int(np.prod((in_shape + [1])[i + 1:])) for i in range(len(in_shape))]
    coeffs = [1 if strides[p] == 1 else strides[p] // simd for p in perm]
    out_shape[-1] //= simd
    nest = _NestSim(True, int(np.prod(out_shape)), *[int(v) for pair in zip(out_shape, coeffs) for v in pair])
    buffer_words = 1 << max(1, math.ceil(math.log2(max(1, nest.max_rp_retract + 4 + 2))))
    source = np.arange(int(np.prod(in_shape))).reshape(in_shape).transpose(perm).ravel() // simd
    return permuting_buffer(source.reshape(-1, simd).max(axis=1), int(np.prod(in_shape)) // simd, buffer_words,
                            read_delay=4, basis="outer_shuffle input_gen: circular buffer, one word per cycle")


def permuting_buffer(source, n_in, buffer_words, read_delay, basis) -> LayerTiming:
    """Input words into a circular buffer of `buffer_words`, output word j read from input word source[j]."""
    n_out = len(source)
    last_needed = np.maximum.accumulate(source)
    last_use = np.full(n_in, -1, dtype=np.int64)
    np.maximum.at(last_use, source, np.arange(n_out))
    last_use = np.maximum.accumulate(last_use)
    overwritten = np.arange(n_in) - buffer_words
    back = np.maximum(0, -overwritten + n_in - 1) // n_in  # frames back (0: this frame)
    used = last_use[overwritten + back * n_in]
    freed = np.where(used >= 0, used - back * n_out, NO_WAIT)
    links = [InternalLink("write", "read", last_needed, delay=read_delay),
             InternalLink("read", "write", freed, delay=1)]
    return LayerTiming({"read": np.ones(n_in, np.int64), "write": np.ones(n_out, np.int64)}, links,
                       [StreamPort("read", np.arange(n_in))], [StreamPort("write", np.arange(n_out))], basis=basis)


STREAM_MODELS = {
    "MVAU": matrix_vector_unit,
    # psa-finn's KAN layer: MVAU-like folding (SF x NF steps per vector, input buffered for NF > 1)
    "KANLinear": matrix_vector_unit,
    "Thresholding": elementwise_stream,
    "PerChannelLUT": elementwise_stream,
    "DuplicateStreams": elementwise_stream,
    "Requant": elementwise_stream,
    "IntegerRequant": elementwise_stream,
    "ElementwiseAdd": elementwise_stream,
    "ElementwiseSub": elementwise_stream,
    "ElementwiseMul": elementwise_stream,
    "ElementwiseMax": elementwise_stream,
    "ElementwiseMin": elementwise_stream,
    "InnerShuffle": inner_shuffle,
    "OuterShuffle": outer_shuffle,
    "GlobalAccPool": global_acc_pool,
    "StreamingDataWidthConverter": width_converter,
    "Reshape": width_converter,
    "FMPadding": feature_map_padding,
    "ConvolutionInputGenerator": sliding_window,
    "VVAU": reduction,
    "Pool": reduction,
    "LabelSelect": read_all_then_write("finn-hlslib LabelSelect_Batch: the top-K after the last label; "
                                       "get_exp_cycles counts the reads only"),
}


def stream_model_of(node, model) -> LayerTiming:
    """The LayerTiming of one HW node; NoStreamModel naming it when its kind has no model."""
    from qonnx.custom_op.registry import getCustomOp

    kind = layer_kind(node.op_type)
    if kind not in STREAM_MODELS:
        raise NoStreamModel(f"{node.name} ({node.op_type}): no stream behaviour model for {kind} "
                            f"(dataflow_sim.stream_models.STREAM_MODELS); FIFO sizing by simulation cannot size the "
                            f"FIFOs around it: add a model, or use finn-plus's step_set_fifo_depths (Vivado)")
    return STREAM_MODELS[kind](getCustomOp(node), model)
