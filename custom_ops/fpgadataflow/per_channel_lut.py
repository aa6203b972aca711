"""PerChannelLUT hardware layer: the semantics shared by its HLS and RTL backends.

A streaming per-channel table lookup. Channel ``c`` maps an integer input code ``x`` to ``table[c, k]`` with
``k = x - min(inputDataType)`` ("full" mode, ``2^b`` entries per channel) or interpolates between every 4th entry
("lerp64" mode, ``2^(b-2) + 1`` entries, the 2 LSBs of ``k`` interpolated with round half up, as the paper's
hardware). The ``NumChannels`` channels are folded over ``PE`` lanes: lane ``p`` serves channels ``t * PE + p`` for
``t < NumChannels / PE`` and holds their tables in its own ROM, so the layer consumes and produces ``PE`` elements
per cycle.

This module holds what both backends share (as finn-plus splits ``thresholding.py`` from its ``hls``/``rtl``
files): attributes, op/parameter counts, the per-lane table layout (``get_lane_tables``), a Python execution that
walks that layout exactly as the hardware does, and the resource model of the lane architecture; shapes, folding,
stream widths and cycles come from ``channelwise_layer.py``. Code generation lives in the backends.

The node's ONNX domain is finn-plus's ``finn.custom_op.fpgadataflow`` (``.hls`` / ``.rtl`` once specialised):
``SpecializeLayers`` and finn's analyses match those domain strings exactly. Importing ``custom_ops.fpgadataflow``
registers the classes there.
"""

import numpy as np
from math import ceil, log2

from psa_finn.custom_ops.fpgadataflow.channelwise_layer import ChannelwiseLayer
from psa_finn.custom_ops.lut_tables import LUT_MODES, check_lut_table, lut_codes, table_entries

RAM_STYLES = ("auto", "block", "distributed", "ultra")

# BRAM18 aspect ratios (depth, width); 512 x 36 exists in simple-dual-port mode only, fine for one read port
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))
BRAM18_BITS = 18 * 1024
URAM_DEPTH, URAM_WIDTH = 4096, 72
# "auto" keeps a ROM bank in LUTs while it is at most this deep (4 LUT6 per bit joined by the free MUXF7/MUXF8);
# deeper banks go to block RAM, which is plentiful in these designs while LUTs are what the comparison counts
AUTO_LUTRAM_MAX_DEPTH = 256


def lutrom_luts(depth: int, width: int) -> int:
    """LUT6 count of a depth x width distributed ROM with one read port.

    A LUT6 holds 64 x 1 (or 32 x 2 as LUT6_2); up to 256 entries per bit are joined by MUXF7/MUXF8 at no LUT
    cost; beyond that every further 4:1 mux level of the 256-entry groups costs one LUT6 per three inputs saved.
    """
    if depth <= 32:
        return ceil(width / 2)
    groups = ceil(depth / 256)
    mux_luts = ceil((groups - 1) / 3)
    return width * (ceil(depth / 64) + mux_luts)


def _single_shape(depth: int, width: int) -> tuple:
    """The one RAMB18 aspect ratio that holds depth x width in the fewest blocks (ties: the deepest, fewer blocks
    stacked in depth means a narrower read mux)."""
    return min(BRAM18_SHAPES, key=lambda sh: (ceil(depth / sh[0]) * ceil(width / sh[1]), ceil(depth / sh[0])))


def bram18_layout(depth: int, width: int) -> tuple:
    """The RAMB18s of a depth x width ROM with one read port: ((shape, data bits), ...), one entry per column of
    blocks of one aspect ratio. As yosys' memory mapping does, the width may be split in two aspect ratios: whole
    columns of one ratio and the remaining bits in another (4096 x 40: four columns of 2K x 9, stacked two deep,
    and one 4K x 4: 9 blocks, where one ratio alone needs 10). Fewest blocks first, then the shallowest stack."""
    if depth <= 0 or width <= 0:
        return ()
    single_shape = _single_shape(depth, width)
    candidates = [((single_shape, single_shape[1]),) * (width // single_shape[1]) +
                  (((single_shape, width % single_shape[1]),) if width % single_shape[1] else ())]
    for shape in BRAM18_SHAPES:
        columns, rest = divmod(width, shape[1])
        if columns and rest:
            candidates.append(((shape, shape[1]),) * columns + ((_single_shape(depth, rest), rest),))

    def cost(layout):
        return (sum(ceil(depth / sh[0]) * ceil(bits / sh[1]) for sh, bits in layout),
                max(ceil(depth / sh[0]) for sh, _ in layout))

    return min(candidates, key=cost)


def bram18_count(depth: int, width: int) -> int:
    """RAMB18 count of a depth x width ROM with one read port (`bram18_layout`)."""
    return sum(ceil(depth / shape[0]) * ceil(bits / shape[1]) for shape, bits in bram18_layout(depth, width))


def bram18_read_mux_luts(depth: int, width: int) -> int:
    """LUT6 count of the read-data mux over RAMB18s stacked in depth (a LUT6 is a 4:1 mux, saving 3 inputs), per
    data bit of each column of `bram18_layout`.

    Checked against yosys synth_xilinx: a 6144 x 8 lane ROM is 3 stacked 2K x 9 blocks and a 3:1 mux per bit.
    """
    return sum(bits * ceil((ceil(depth / shape[0]) - 1) / 3) for shape, bits in bram18_layout(depth, width))


def uram_count(depth: int, width: int) -> int:
    """URAM288 (4K x 72) count of a depth x width memory."""
    return ceil(depth / URAM_DEPTH) * ceil(width / URAM_WIDTH)


class PerChannelLUT(ChannelwiseLayer):
    """Per-channel integer table lookup folded over PE lanes (finn-plus hardware layer, backend-independent)."""

    def get_nodeattr_types(self):
        """Node attributes in FINN style; the table itself is the second input (an initializer [C, E])."""
        my_attrs = {
            # each channel has its own table; outputDataType is also the type of the table entries
            # full table (2^b entries) or every 4th entry + interpolation of the 2 LSBs
            "mode": ("s", False, "full", set(LUT_MODES)),
            # memory of the lane ROMs; "auto" picks LUTs for small banks, block RAM otherwise
            "ram_style": ("s", False, "auto", set(RAM_STYLES)),
        }
        my_attrs.update(super().get_nodeattr_types())
        return my_attrs

    # ---- datatypes, shapes, folding -------------------------------------------------------------------------

    def get_input_datatype(self, ind=0):
        """FINN DataType of the input codes (ind 0) or of the table entries (ind 1, = outputDataType)."""
        if ind == 0:
            return super().get_input_datatype(0)
        if ind == 1:
            return self.get_output_datatype()
        raise IndexError(f"{self.onnx_node.name}: PerChannelLUT has inputs 0 (data) and 1 (table), not {ind}")

    def get_entries(self):
        """Table entries per channel for the input width and mode (the rules of custom_ops.lut_tables)."""
        try:
            return table_entries(self.get_nodeattr("mode"), self.get_input_datatype(0).bitwidth())
        except ValueError as err:
            raise ValueError(f"{self.onnx_node.name}: {err}") from err

    def get_normal_input_shape(self, ind=0):
        """Unfolded shape: numInputVectors + [NumChannels] for the data, [NumChannels, entries] for the table."""
        if ind == 1:
            return (self.get_nodeattr("NumChannels"), self.get_entries())
        return super().get_normal_input_shape(0)

    def get_instream_width(self, ind=0):
        """PE input codes per word; the table (input 1) is embedded in the layer and has no stream."""
        if ind == 1:
            return 0
        return super().get_instream_width(0)

    def get_op_and_param_counts(self):
        """Table lookups (and interpolations in lerp64 mode) per inference, and table entries by bit width."""
        channels = self.get_nodeattr("NumChannels")
        elements = self.num_elements()
        out_bits = self.get_output_datatype().bitwidth()
        counts = {
            f"op_table_lookup_{self.get_input_datatype(0).bitwidth()}b": elements,
            f"param_table_{out_bits}b": channels * self.get_entries(),
        }
        if self.get_nodeattr("mode") == "lerp64":
            counts[f"op_lerp_{out_bits}b"] = elements
        return counts

    # ---- graph integration ----------------------------------------------------------------------------------

    def infer_node_datatype(self, model):
        """Check the input annotation against inputDataType (the table is indexed by it); annotate table and output."""
        node = self.onnx_node
        idt = self.get_input_datatype(0)
        annotated = model.get_tensor_datatype(node.input[0])
        if annotated.is_integer() and annotated != idt:
            raise ValueError(
                f"{node.name}: input {node.input[0]} is annotated {annotated.name} but the table was built for "
                f"inputDataType={idt.name}; re-run the lowering on the current graph or fix the annotation"
            )
        model.set_tensor_datatype(node.input[1], self.get_output_datatype())
        model.set_tensor_datatype(node.output[0], self.get_output_datatype())

    def verify_node(self):
        """Check attributes, datatypes and folding; return FINN-style info messages."""
        messages = []
        idt = self.get_input_datatype(0)
        odt = self.get_output_datatype()
        for name, dt in (("inputDataType", idt), ("outputDataType", odt)):
            if not (dt.is_integer() and dt.max() - dt.min() + 1 == 2 ** dt.bitwidth()):
                messages.append(f"{name}={dt.name} must be a full-range integer type (INTn / UINTn)")
        try:
            self.calc_tmem()
        except ValueError as err:
            messages.append(str(err))
        if len(self.onnx_node.input) != 2:
            messages.append("PerChannelLUT needs two inputs: data and table")
        if not messages:
            messages.append("PerChannelLUT attributes are consistent")
        return messages

    # ---- the table as the lanes hold it ---------------------------------------------------------------------

    def get_lane_tables(self, table):
        """Check the [NumChannels, entries] table and return it as the lanes' ROM banks.

        full: one bank [PE, TMEM, 2^b]; lerp64: two banks, even entries [PE, TMEM, ceil(E/2)] and odd entries
        [PE, TMEM, floor(E/2)], so that the two neighbours y0 = T[s], y1 = T[s+1] of a segment s always sit in
        different banks and every bank is read once per cycle. Lane p, fold t holds channel t * PE + p.
        Returns a list of int64 arrays.
        """
        try:
            table = check_lut_table(table, self.get_nodeattr("mode"), self.get_input_datatype(0),
                                    self.get_output_datatype(), (self.get_nodeattr("NumChannels"),),
                                    "one row per channel (NumChannels)")
        except ValueError as err:
            raise ValueError(f"{self.onnx_node.name}: {err}") from err
        entries = table.shape[1]
        pe = self.get_nodeattr("PE")
        lanes = table.reshape(self.calc_tmem(), pe, entries).transpose(1, 0, 2)
        if self.get_nodeattr("mode") == "full":
            return [np.ascontiguousarray(lanes)]
        return [np.ascontiguousarray(lanes[:, :, 0::2]), np.ascontiguousarray(lanes[:, :, 1::2])]

    def execute_node(self, context, graph):
        """Python execution: walk the lane tables exactly as the hardware does (bit-exact to the lowered op)."""
        node = self.onnx_node
        x = context[node.input[0]]
        idt = self.get_input_datatype(0)
        if x.shape != self.get_normal_input_shape(0):
            raise ValueError(f"{node.name}: input shape {x.shape}, expected {self.get_normal_input_shape(0)}")
        try:
            codes = lut_codes(x, idt)
        except ValueError as err:
            raise ValueError(f"{node.name}: {err}") from err
        banks = self.get_lane_tables(context[node.input[1]])
        tmem, pe = self.get_folded_input_shape(0)[-2:]
        k = (codes - int(idt.min())).reshape(-1, tmem, pe)
        lane = np.arange(pe)[None, None, :]
        fold = np.arange(tmem)[None, :, None]
        if self.get_nodeattr("mode") == "full":
            y = banks[0][lane, fold, k]
        else:
            even, odd = banks
            segment, frac = k >> 2, k & 3
            from_even = even[lane, fold, (segment + 1) >> 1]
            from_odd = odd[lane, fold, segment >> 1]
            odd_segment = (segment & 1) == 1
            y0 = np.where(odd_segment, from_odd, from_even)
            y1 = np.where(odd_segment, from_even, from_odd)
            y = y0 + (((y1 - y0) * frac + 2) >> 2)
        context[node.output[0]] = y.reshape(x.shape).astype(np.float32)

    # ---- resource model of the lane architecture ------------------------------------------------------------

    def get_lane_banks(self):
        """(depth, width) of each ROM bank of one lane: TMEM x entries (full) or the even/odd halves (lerp64)."""
        tmem = self.calc_tmem()
        entries = self.get_entries()
        width = self.get_output_datatype().bitwidth()
        if self.get_nodeattr("mode") == "full":
            return [(tmem * entries, width)]
        return [(tmem * ceil(entries / 2), width), (tmem * (entries // 2), width)]

    def get_resolved_ram_style(self):
        """ram_style with "auto" resolved: LUTs while every bank is at most 256 deep, block RAM otherwise."""
        style = self.get_nodeattr("ram_style")
        if style != "auto":
            return style
        deepest = max(depth for depth, _ in self.get_lane_banks())
        return "distributed" if deepest <= AUTO_LUTRAM_MAX_DEPTH else "block"

    def bram_estimation(self, fpgapart):
        """RAMB18 count: PE lanes x sum over banks of the cheapest aspect ratio (block style only)."""
        if self.get_resolved_ram_style() != "block":
            return 0
        return self.get_nodeattr("PE") * sum(bram18_count(d, w) for d, w in self.get_lane_banks())

    def uram_estimation(self, fpgapart):
        """URAM288 count: PE lanes x sum over banks of 4K x 72 blocks (ultra style only)."""
        if self.get_resolved_ram_style() != "ultra":
            return 0
        return self.get_nodeattr("PE") * sum(uram_count(d, w) for d, w in self.get_lane_banks())

    def _stored_bits(self):
        """Table bits held by all lanes."""
        return self.get_nodeattr("PE") * sum(d * w for d, w in self.get_lane_banks())

    def bram_efficiency_estimation(self, fpgapart):
        """Table bits / capacity of the estimated RAMB18s."""
        brams = self.bram_estimation(fpgapart)
        return 1 if brams == 0 else self._stored_bits() / (brams * BRAM18_BITS)

    def uram_efficiency_estimation(self, fpgapart):
        """Table bits / capacity of the estimated URAMs."""
        urams = self.uram_estimation(fpgapart)
        return 1 if urams == 0 else self._stored_bits() / (urams * URAM_DEPTH * URAM_WIDTH)

    def lut_estimation(self, fpgapart):
        """LUT6 count: distributed ROMs or the read mux of stacked block RAMs + lerp64 datapath + address logic.

        Per lane in lerp64 mode (W = output bits, B = input bits): even/odd swap of y0/y1 (2W mux2 = W LUT6_2),
        subtract y1 - y0 (W + 1), 2-bit multiply as one gated add (W + 2), round half up +2 >> 2 (W + 1),
        add y0 (W), even-bank address (s + 1) >> 1 (B - 3); per bank whose per-channel depth is not a power of
        two and TMEM > 1, an address adder t * depth + index. One fold counter (log2 TMEM) for the layer.
        """
        pe = self.get_nodeattr("PE")
        tmem = self.calc_tmem()
        luts = ceil(log2(tmem)) if tmem > 1 else 0
        ram_style = self.get_resolved_ram_style()
        if ram_style == "distributed":
            luts += pe * sum(lutrom_luts(d, w) for d, w in self.get_lane_banks())
        elif ram_style == "block":
            luts += pe * sum(bram18_read_mux_luts(d, w) for d, w in self.get_lane_banks())
        if self.get_nodeattr("mode") == "lerp64":
            width = self.get_output_datatype().bitwidth()
            in_bits = self.get_input_datatype(0).bitwidth()
            luts += pe * (5 * width + 4 + max(in_bits - 3, 1))
        if tmem > 1:
            for depth, _ in self.get_lane_banks():
                per_channel = depth // tmem
                if per_channel & (per_channel - 1):
                    luts += pe * ceil(log2(depth))
        return luts

    def dsp_estimation(self, fpgapart):
        """No DSPs: the 2-bit interpolation multiply is a gated add in LUTs."""
        return 0
