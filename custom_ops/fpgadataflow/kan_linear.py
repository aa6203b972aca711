"""KANLinear hardware layer: the semantics shared by its HLS and RTL backends.

A streaming Kolmogorov-Arnold layer on integer codes, `y_j = sum_i T[j, i, x_i - min(inputDataType)]` (the lowered
op `KANLUT`), folded like finn's MVAU: SIMD inputs and PE outputs per cycle. An input vector of MW codes arrives as
SF = MW / SIMD words of SIMD codes; for each of the NF = MH / PE output groups the layer walks the SF words (kept in
an input buffer when NF > 1), looks up PE x SIMD edge tables per cycle, adds the SIMD values of each output in an
adder tree and accumulates over the SF words; after the last word of a group it emits PE sums (one word of
outputDataType, the accumulator). NF * SF cycles per vector.

Table layout (`get_lane_tables`): input lane s owns one ROM of depth NF * SF * 2^b whose words hold PE entries: word
(nf * SF + sf) * 2^b + k is [T[nf * PE + p, sf * SIMD + s, k] for p < PE]. The PE outputs of a cycle read the same
input code, so they share the address: one ROM PE entries wide per input lane, the address {fold, code}.

The node's ONNX domain is finn-plus's `finn.custom_op.fpgadataflow` (`.hls` / `.rtl` once specialised), as
PerChannelLUT's. Code generation lives in the backends.
"""

from math import ceil, log2

import numpy as np
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from finn.transformation.fpgadataflow.set_folding import divisors
from qonnx.core.datatype import DataType

from psa_finn.custom_ops.fpgadataflow.per_channel_lut import AUTO_LUTRAM_MAX_DEPTH, BRAM18_BITS, RAM_STYLES, \
    URAM_DEPTH, URAM_WIDTH, bram18_count, bram18_read_mux_luts, lutrom_luts, uram_count
from psa_finn.custom_ops.kan_lut import check_codes

# LUT6 per bit of a dual-port LUTRAM (RAM64X1D: one LUT6 for the write/read port, one for the second read port)
LUTRAM_DUAL_PORT_LUTS_PER_64 = 2

# LUT6 per addend bit of a flat sum of n sign-extended addends plus an accumulator, as yosys 0.23 synth_xilinx
# maps it (alumacc makes the expression one $macc, maccmap a carry-save tree of full adders in LUT logic, abc maps
# it and duplicates logic as the tree deepens): (largest n, LUT6 per addend bit), measured on the sum alone
# (docs/kan.md); the carry-save tree is why the figure grows with n where a tree of carry-chain adders would not.
FLAT_SUM_LUTS_PER_ADDEND_BIT = ((1, 0.0), (2, 0.4), (6, 1.7), (7, 2.9), (None, 4.5))


def flat_sum_luts(addends: int, width: int, acc_bits: int) -> int:
    """LUT6 of `acc' = (first ? 0 : acc) + e_1 + ... + e_n` (n `width`-bit addends sign-extended to `acc_bits`):
    the accumulator's clear and the final carry-chain adder, 2 LUT6 per accumulator bit, plus
    `FLAT_SUM_LUTS_PER_ADDEND_BIT` x n x width for the carry-save tree (yosys synth_xilinx's mapping)."""
    per_bit = next(cost for largest, cost in FLAT_SUM_LUTS_PER_ADDEND_BIT if largest is None or addends <= largest)
    return 2 * acc_bits + ceil(per_bit * addends * width)


class KANLinear(HWCustomOp):
    """Folded KAN layer (finn-plus hardware layer, backend-independent); see the module docstring."""

    def get_nodeattr_types(self):
        """Attributes in FINN's MVAU style; the edge tables [MH, MW, 2^b] are the second input (an initializer)."""
        my_attrs = {
            "MW": ("i", True, 0),          # inputs per vector (KAN in_features)
            "MH": ("i", True, 0),          # outputs per vector (KAN out_features)
            "SIMD": ("i", True, 0),        # inputs per cycle
            "PE": ("i", True, 0),          # outputs per cycle
            "inputDataType": ("s", True, ""),
            "tableDataType": ("s", True, ""),   # the entries' integer type
            "outputDataType": ("s", True, ""),  # the accumulator: holds every sum
            "numInputVectors": ("ints", False, [1]),
            "ram_style": ("s", False, "auto", set(RAM_STYLES)),
            # 1 per edge (row-major [MH, MW]) whose table has a non-zero entry; empty: every edge (InferKANLinearLayer
            # sets it from the tables: a pruned edge's zero table costs no ROM bits and no addend)
            "liveEdges": ("ints", False, []),
        }
        my_attrs.update(super().get_nodeattr_types())
        return my_attrs

    # ---- datatypes, shapes, folding -------------------------------------------------------------------------

    def get_input_datatype(self, ind=0):
        """Input codes (ind 0) or table entries (ind 1)."""
        return DataType[self.get_nodeattr("inputDataType" if ind == 0 else "tableDataType")]

    def get_output_datatype(self, ind=0):
        """The accumulator DataType."""
        return DataType[self.get_nodeattr("outputDataType")]

    def get_entries(self):
        """Entries per edge table: 2^b for b-bit input codes."""
        return 2 ** self.get_input_datatype(0).bitwidth()

    def _folds(self):
        node = self.onnx_node
        mw, mh, simd, pe = (self.get_nodeattr(a) for a in ("MW", "MH", "SIMD", "PE"))
        if simd < 1 or mw % simd != 0:
            raise ValueError(f"{node.name}: SIMD={simd} does not divide MW={mw}; choose SIMD from {list(divisors(mw))}")
        if pe < 1 or mh % pe != 0:
            raise ValueError(f"{node.name}: PE={pe} does not divide MH={mh}; choose PE from {list(divisors(mh))}")
        return mw // simd, mh // pe

    def calc_sf(self):
        """Input words per vector, MW / SIMD."""
        return self._folds()[0]

    def calc_nf(self):
        """Output groups per vector, MH / PE."""
        return self._folds()[1]

    def _vectors(self):
        return list(self.get_nodeattr("numInputVectors"))

    def get_normal_input_shape(self, ind=0):
        """numInputVectors + [MW] (data) or [MH, MW, 2^b] (tables)."""
        if ind == 1:
            return (self.get_nodeattr("MH"), self.get_nodeattr("MW"), self.get_entries())
        return tuple(self._vectors() + [self.get_nodeattr("MW")])

    def get_normal_output_shape(self, ind=0):
        """numInputVectors + [MH]."""
        return tuple(self._vectors() + [self.get_nodeattr("MH")])

    def get_folded_input_shape(self, ind=0):
        """numInputVectors + [SF, SIMD]."""
        return tuple(self._vectors() + [self.calc_sf(), self.get_nodeattr("SIMD")])

    def get_folded_output_shape(self, ind=0):
        """numInputVectors + [NF, PE]."""
        return tuple(self._vectors() + [self.calc_nf(), self.get_nodeattr("PE")])

    def get_instream_width(self, ind=0):
        """SIMD input codes per word (the tables have no stream)."""
        return 0 if ind == 1 else self.get_input_datatype(0).bitwidth() * self.get_nodeattr("SIMD")

    def get_outstream_width(self, ind=0):
        """PE accumulator values per word."""
        return self.get_output_datatype().bitwidth() * self.get_nodeattr("PE")

    def get_number_output_values(self):
        """Output words per inference: vectors x NF."""
        return int(np.prod(self._vectors())) * self.calc_nf()

    def get_exp_cycles(self):
        """vectors x NF x SF: one SIMD x PE block of lookups per cycle (the input words are buffered for NF > 1)."""
        sf, nf = self._folds()
        return int(np.prod(self._vectors())) * sf * nf

    def get_op_and_param_counts(self):
        """Edge lookups and additions per inference; table entries by bit width."""
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        vectors = int(np.prod(self._vectors()))
        return {
            f"op_table_lookup_{self.get_input_datatype(0).bitwidth()}b": vectors * mw * mh,
            f"op_add_{self.get_output_datatype().bitwidth()}b": vectors * (mw - 1) * mh,
            f"param_table_{self.get_input_datatype(1).bitwidth()}b": mw * mh * self.get_entries(),
        }

    # ---- graph integration ----------------------------------------------------------------------------------

    def infer_node_datatype(self, model):
        """Check the input annotation against inputDataType; annotate tables and output."""
        node = self.onnx_node
        idt = self.get_input_datatype(0)
        annotated = model.get_tensor_datatype(node.input[0])
        if annotated.is_integer() and annotated != idt:
            raise ValueError(f"{node.name}: input {node.input[0]} is annotated {annotated.name} but the tables were "
                             f"built for inputDataType={idt.name}; re-run the lowering on the current graph")
        model.set_tensor_datatype(node.input[1], self.get_input_datatype(1))
        model.set_tensor_datatype(node.output[0], self.get_output_datatype())

    def verify_node(self):
        """Attributes, datatypes and folding; FINN-style messages."""
        messages = []
        for name in ("inputDataType", "tableDataType", "outputDataType"):
            if not DataType[self.get_nodeattr(name)].is_integer():
                messages.append(f"{name} must be an integer DataType")
        try:
            self._folds()
        except ValueError as err:
            messages.append(str(err))
        if len(self.onnx_node.input) != 2:
            messages.append("KANLinear needs two inputs: data and tables")
        return messages or ["KANLinear attributes are consistent"]

    # ---- the tables as the lanes hold them ------------------------------------------------------------------

    def get_lane_tables(self, tables):
        """Check the [MH, MW, 2^b] tables and return the lane ROMs [SIMD, NF * SF, 2^b, PE] (int64): lane s, fold
        nf * SF + sf, code k, entry p = T[nf * PE + p, sf * SIMD + s, k]."""
        node = self.onnx_node
        tables = np.asarray(tables)
        if tables.shape != self.get_normal_input_shape(1):
            raise ValueError(f"{node.name}: tables have shape {tables.shape}, expected "
                             f"{self.get_normal_input_shape(1)}")
        tdt = self.get_input_datatype(1)
        if not (np.all(tables == np.round(tables)) and tables.min() >= tdt.min() and tables.max() <= tdt.max()):
            raise ValueError(f"{node.name}: table entries must be integers within tableDataType={tdt.name}; got "
                             f"range [{tables.min()}, {tables.max()}]")
        sf, nf = self._folds()
        simd, pe, entries = self.get_nodeattr("SIMD"), self.get_nodeattr("PE"), self.get_entries()
        lanes = tables.astype(np.int64).reshape(nf, pe, sf, simd, entries)  # [nf, p, sf, s, k]
        return np.ascontiguousarray(lanes.transpose(3, 0, 2, 4, 1).reshape(simd, nf * sf, entries, pe))

    def execute_node(self, context, graph):
        """Python execution: walk the lane ROMs fold by fold as the hardware does (bit-exact to KANLUT)."""
        node = self.onnx_node
        x = context[node.input[0]]
        if tuple(x.shape) != self.get_normal_input_shape(0):
            raise ValueError(f"{node.name}: input shape {x.shape}, expected {self.get_normal_input_shape(0)}")
        idt = self.get_input_datatype(0)
        codes = check_codes(x, idt, node.name) - int(idt.min())
        lanes = self.get_lane_tables(context[node.input[1]])
        sf, nf = self._folds()
        simd = self.get_nodeattr("SIMD")
        words = codes.reshape(-1, sf, simd)
        lane = np.arange(simd)[None, :]
        y = np.zeros((words.shape[0], nf, self.get_nodeattr("PE")), dtype=np.int64)
        for fold_out in range(nf):
            for fold_in in range(sf):
                y[:, fold_out] += lanes[lane, fold_out * sf + fold_in, words[:, fold_in]].sum(axis=1)
        odt = self.get_output_datatype()
        if y.size and (y.min() < odt.min() or y.max() > odt.max()):
            raise ValueError(f"{node.name}: a sum leaves outputDataType={odt.name}; re-run the lowering")
        context[node.output[0]] = y.reshape(self.get_normal_output_shape()).astype(np.float32)

    # ---- resource model -------------------------------------------------------------------------------------

    def get_lane_rom(self):
        """(depth, width) of one input lane's ROM: NF * SF * 2^b words of PE table entries."""
        sf, nf = self._folds()
        return nf * sf * self.get_entries(), self.get_nodeattr("PE") * self.get_input_datatype(1).bitwidth()

    def get_live_edges(self):
        """[MH, MW] bool: the edges whose table is not all zero (`liveEdges`; every edge when it is empty)."""
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        live = self.get_nodeattr("liveEdges")
        if not live:
            return np.ones((mh, mw), dtype=bool)
        if len(live) != mw * mh:
            raise ValueError(f"{self.onnx_node.name}: liveEdges has {len(live)} entries, expected MH x MW = {mh * mw}")
        return np.asarray(live, dtype=bool).reshape(mh, mw)

    def get_live_lane_entries(self):
        """[SIMD, PE] bool: entry p of lane s is live when one of the edges it holds over the folds
        (T[nf * PE + p, sf * SIMD + s]) is; a dead entry is a constant zero, which synthesis removes."""
        sf, nf = self._folds()
        simd, pe = self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        return self.get_live_edges().reshape(nf, pe, sf, simd).any(axis=(0, 2)).T

    def get_resolved_ram_style(self):
        """ram_style with "auto" resolved as PerChannelLUT's: LUTs while a lane ROM is at most 256 deep (a LUT6
        ROM, KANELE's choice, when fully unrolled: 2^b deep), block RAM beyond."""
        style = self.get_nodeattr("ram_style")
        if style != "auto":
            return style
        return "distributed" if self.get_lane_rom()[0] <= AUTO_LUTRAM_MAX_DEPTH else "block"

    def get_lane_rom_widths(self):
        """Bits of each lane ROM's word: its live entries (`get_live_lane_entries`) x table bits; 0: no ROM."""
        return [int(n) * self.get_input_datatype(1).bitwidth() for n in self.get_live_lane_entries().sum(axis=1)]

    def _stored_bits(self):
        """Table bits held by all lane ROMs."""
        return self.get_lane_rom()[0] * sum(self.get_lane_rom_widths())

    def bram_estimation(self, fpgapart):
        """RAMB18 count: per lane ROM the cheapest aspect ratios of depth x its word (block only)."""
        if self.get_resolved_ram_style() != "block":
            return 0
        depth = self.get_lane_rom()[0]
        return sum(bram18_count(depth, width) for width in self.get_lane_rom_widths() if width)

    def uram_estimation(self, fpgapart):
        """URAM288 count: per lane ROM 4K x 72 blocks (ultra only)."""
        if self.get_resolved_ram_style() != "ultra":
            return 0
        depth = self.get_lane_rom()[0]
        return sum(uram_count(depth, width) for width in self.get_lane_rom_widths() if width)

    def bram_efficiency_estimation(self, fpgapart):
        """Table bits / capacity of the estimated RAMB18s."""
        brams = self.bram_estimation(fpgapart)
        return 1 if brams == 0 else self._stored_bits() / (brams * BRAM18_BITS)

    def uram_efficiency_estimation(self, fpgapart):
        """Table bits / capacity of the estimated URAMs."""
        urams = self.uram_estimation(fpgapart)
        return 1 if urams == 0 else self._stored_bits() / (urams * URAM_DEPTH * URAM_WIDTH)

    def lut_estimation(self, fpgapart):
        """LUT6 count (LUT logic and LUT as memory) of the RTL backend's datapath, W = table bits, A = accumulator
        bits, b = input bits:
        - tables: per lane lutrom_luts(depth, P_s x W) (distributed; P_s of its PE entries live, see
          `get_live_lane_entries`: the RTL leaves a pruned edge's zero entry out), or the read mux of its stacked
          RAMB18s (block);
        - sums: per output p `flat_sum_luts(S_p, W, A)` (each output adds its S_p live lane entries and its
          accumulator in one expression);
        - input buffer (NF > 1): SF words of SIMD x b bits in dual-port LUTRAM, 2 LUT6 per bit per 64 words, and
          the stream / buffer select of the issued word, SIMD x b;
        - counters sf, nf and fold (the address is {fold, code}, 2^b a power of two): one LUT6 per bit of each,
          ceil(log2 SF) + ceil(log2 NF) + ceil(log2(NF x SF)), and their comparisons with constants (sf = 0,
          sf = SF - 1, nf = 0, nf = NF - 1, fold = NF x SF - 1), two bits per LUT6 on the carry chain.
        tests/test_yosys_resources.py checks the total against yosys synth_xilinx over a sweep (docs/kan.md).
        """
        sf, nf = self._folds()
        simd = self.get_nodeattr("SIMD")
        depth = self.get_lane_rom()[0]
        style = self.get_resolved_ram_style()
        width, acc_bits = self.get_input_datatype(1).bitwidth(), self.get_output_datatype().bitwidth()
        rom_widths = [w for w in self.get_lane_rom_widths() if w]
        luts = 0
        if style == "distributed":
            luts += sum(lutrom_luts(depth, w) for w in rom_widths)
        elif style == "block":
            luts += sum(bram18_read_mux_luts(depth, w) for w in rom_widths)
        luts += sum(flat_sum_luts(int(lanes), width, acc_bits) for lanes in self.get_live_lane_entries().sum(axis=0))
        in_bits = self.get_input_datatype(0).bitwidth()
        if nf > 1:
            luts += (LUTRAM_DUAL_PORT_LUTS_PER_64 * ceil(sf / 64) + 1) * simd * in_bits
        counter_bits = [ceil(log2(n)) for n in (sf, nf, nf * sf) if n > 1]
        comparisons = [ceil(log2(n)) for n in (sf, sf, nf, nf, nf * sf) if n > 1]
        return luts + sum(counter_bits) + sum(ceil(bits / 2) for bits in comparisons)

    def dsp_estimation(self, fpgapart):
        """No DSPs: lookups and additions only."""
        return 0
