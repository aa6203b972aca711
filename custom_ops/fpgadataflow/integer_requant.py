"""IntegerRequant hardware layer: a shift-and-clip requantizer in place of a uniform MultiThreshold.

Channel c of an integer input x gives y = clip(round((M[c] * x + B[c]) / 2^S), OutMin, OutMax) in exact integer
arithmetic, rounding ties half-to-even (as psa-finn's thresholds and QONNX's Quant) or half-up
(custom_ops.integer_requant holds the arithmetic). transforms.convert_to_hw_integer_requant puts it where a
MultiThreshold is such a requantizer on every input its type can take (proven by transforms.uniform_thresholds).

Why not finn-plus's Requant: it rounds half-up only (psa-finn's ties are half-to-even, steps alternate 127 / 129), its
RTL keeps only the top 27 bits of a wider input (a 32-bit accumulator loses its low bits), and its embedded RTL
prints the float scale with 6 decimals (2^-10 is not 0.000977). This layer takes integer multipliers and biases and
one shift, so its RTL is exact by construction.

The NumChannels channels fold over PE lanes as in the other channel-wise layers: lane p serves channels t * PE + p,
one PE-wide word per cycle (channelwise_layer.py: shapes, folding, widths, cycles). This module holds the rest that
every backend shares: attributes, op counts, the Python execution and the resource model; the RTL backend generates
Verilog.
"""

from math import ceil, log2

import numpy as np

from psa_finn.custom_ops.fpgadataflow.channelwise_layer import ChannelwiseLayer
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import lutrom_luts
from psa_finn.custom_ops.integer_requant import ROUNDINGS, requantize
from psa_finn.custom_ops.lut_tables import lut_codes

# DSP48E2 multiplier ports (signed): a * b with a <= 27 and b <= 18 bits
DSP_A_BITS, DSP_B_BITS = 27, 18


def signed_bits(low: int, high: int) -> int:
    """Two's-complement bits n that hold every integer of [low, high]: -2^(n-1) <= low, high < 2^(n-1)."""
    magnitude = max(int(high).bit_length() if high > 0 else 0, int(-low - 1).bit_length() if low < 0 else 0)
    return magnitude + 1


def is_power_of_two_or_zero(value: int) -> bool:
    """True for 0, 1, 2, 4, ...: a multiplication that is wiring."""
    return value >= 0 and value & (value - 1) == 0


class IntegerRequant(ChannelwiseLayer):
    """clip(round((M x + B) / 2^S)) per channel, folded over PE lanes (finn-plus hardware layer)."""

    def get_nodeattr_types(self):
        """FINN-style attributes; the per-channel multipliers and biases are integer lists."""
        my_attrs = {
            # per channel: y = clip(round((Multipliers[c] * x + Biases[c]) / 2^Shift), OutMin, OutMax)
            "Multipliers": ("ints", True, []),
            "Biases": ("ints", True, []),
            "Shift": ("i", True, 1),
            "Rounding": ("s", False, "half_even", set(ROUNDINGS)),
            "OutMin": ("i", True, 0),
            "OutMax": ("i", True, 0),
        }
        my_attrs.update(super().get_nodeattr_types())
        return my_attrs

    def get_op_and_param_counts(self):
        """One multiply-add-round per element; a multiplier and a bias per channel."""
        channels = self.get_nodeattr("NumChannels")
        elements = self.num_elements()
        return {f"op_requant_{self.get_input_datatype(0).bitwidth()}b": elements,
                f"param_requant_{self.multiplier_bits() + self.bias_bits()}b": channels}

    # ---- the arithmetic ----------------------------------------------------------------------------------------

    def multipliers(self):
        """Per-channel multipliers M (int64 [NumChannels])."""
        return np.asarray(self.get_nodeattr("Multipliers"), dtype=np.int64)

    def biases(self):
        """Per-channel biases B (int64 [NumChannels])."""
        return np.asarray(self.get_nodeattr("Biases"), dtype=np.int64)

    def multiplier_bits(self):
        """Unsigned bits of the largest multiplier."""
        return max(1, int(self.multipliers().max()).bit_length())

    def bias_bits(self):
        """Signed bits of the biases."""
        biases = self.biases()
        return signed_bits(int(biases.min()), int(biases.max()))

    def accumulator_range(self):
        """[low, high] of v = M x + B over every channel and input of inputDataType."""
        idt = self.get_input_datatype(0)
        m, b = self.multipliers(), self.biases()
        ends = np.stack([m * int(idt.min()) + b, m * int(idt.max()) + b])
        return int(ends.min()), int(ends.max())

    def accumulator_bits(self):
        """Signed width of the datapath before the rounding shift: holds v = M x + B, x, M, B and S + 1 bits."""
        input_bits = self.get_input_datatype(0).bitwidth() + (0 if self.get_input_datatype(0).signed() else 1)
        return max(signed_bits(*self.accumulator_range()), input_bits, self.multiplier_bits() + 1, self.bias_bits(),
                   self.get_nodeattr("Shift") + 2)

    def is_multiplier_free(self):
        """True when each lane multiplies by a constant power of two or 0 (wiring, no multiplier): every channel's
        own constant when a lane serves one channel (TMEM = 1), else one multiplier shared by all channels."""
        multipliers = [int(m) for m in self.multipliers()]
        if self.calc_tmem() > 1 and len(set(multipliers)) > 1:
            return False
        return all(is_power_of_two_or_zero(m) for m in multipliers)

    def stream_input(self, context):
        """The input as the layer streams it, [*numInputVectors, NumChannels]: finn's step_convert_to_hw removes a
        flattening Reshape in front of a HW layer ([1, 1, 1, C] from a GlobalAccPool), which leaves the order of
        the stream unchanged."""
        node = self.onnx_node
        x = np.asarray(context[node.input[0]])
        shape = self.get_normal_input_shape(0)
        if x.size != np.prod(shape) or x.shape[-1] != shape[-1]:
            raise ValueError(f"{node.name}: input shape {x.shape}, expected {shape}")
        return x.reshape(shape)

    def execute_node(self, context, graph):
        """Python execution: the exact integer arithmetic of custom_ops.integer_requant, channels on the last axis."""
        node = self.onnx_node
        x = self.stream_input(context)
        try:
            codes = lut_codes(x, self.get_input_datatype(0))
        except ValueError as err:
            raise ValueError(f"{node.name}: {err}") from err
        y = requantize(codes, self.multipliers(), self.biases(), self.get_nodeattr("Shift"),
                       self.get_nodeattr("Rounding"), self.get_nodeattr("OutMin"), self.get_nodeattr("OutMax"))
        context[node.output[0]] = y.astype(np.float32)

    # ---- graph integration ----------------------------------------------------------------------------------

    def infer_node_datatype(self, model):
        """Follow a narrower input annotation (the requantizer is exact on every sub-range, e.g. after finn's
        step_minimize_bit_width narrows the accumulator); refuse a wider one; annotate the output."""
        node = self.onnx_node
        idt = self.get_input_datatype(0)
        annotated = model.get_tensor_datatype(node.input[0])
        if annotated != idt:
            if not (annotated.is_integer() and annotated.min() >= idt.min() and annotated.max() <= idt.max()):
                raise ValueError(f"{node.name}: input {node.input[0]} is annotated {annotated.name}, wider than "
                                 f"inputDataType={idt.name} on which the requantizer was proven exact; re-run "
                                 "the conversion on the current graph")
            self.set_nodeattr("inputDataType", annotated.name)
        model.set_tensor_datatype(node.output[0], self.get_output_datatype())

    def verify_node(self):
        """Check attributes, datatypes and folding; return FINN-style info messages."""
        messages = []
        channels = self.get_nodeattr("NumChannels")
        for name in ("Multipliers", "Biases"):
            if len(self.get_nodeattr(name)) != channels:
                messages.append(f"{name} needs NumChannels={channels} entries, has {len(self.get_nodeattr(name))}")
        if self.get_nodeattr("Shift") < 1:
            messages.append(f"Shift must be >= 1, got {self.get_nodeattr('Shift')}")
        odt = self.get_output_datatype()
        if not odt.min() <= self.get_nodeattr("OutMin") <= self.get_nodeattr("OutMax") <= odt.max():
            messages.append(f"[OutMin, OutMax] must lie within outputDataType={odt.name}")
        try:
            self.calc_tmem()
        except ValueError as err:
            messages.append(str(err))
        return messages or ["IntegerRequant attributes are consistent"]

    # ---- resource model -------------------------------------------------------------------------------------

    def lut_estimation(self, fpgapart):
        """LUT6 count of the lane datapath (W = accumulator bits, S = shift, n = output bits), per lane:

        - M x + B: wiring and a W-bit adder, W (one LUT per bit of the carry chain), when multiplier-free; in the
          DSP otherwise (multiplier and post-adder, see dsp_estimation), 0;
        - rounding: remainder vs 2^(S-1) on S bits, ceil(S / 3) + 1, and the increment q + up, W - S;
        - clip: two constant compares on W - S + 1 bits, 2 ceil((W - S + 1) / 3), and the 3:1 output mux, n;
        - with TMEM > 1 channels per lane, the bias (and multiplier) ROMs of TMEM words in LUTs (lutrom_luts), and
          one fold counter (log2 TMEM) for the layer.
        Basis: the generated Verilog of rtl/integer_requant_verilog.py (an estimate, not a synthesis result).
        """
        pe = self.get_nodeattr("PE")
        tmem = self.calc_tmem()
        width = self.accumulator_bits()
        shift = self.get_nodeattr("Shift")
        out_bits = self.get_output_datatype().bitwidth()
        quotient = max(width - shift, 1)
        lane = ceil(shift / 3) + 1 + quotient + 2 * ceil((quotient + 1) / 3) + out_bits
        if self.is_multiplier_free():
            lane += width
        if tmem > 1:
            lane += lutrom_luts(tmem, self.bias_bits())
            if not self.is_multiplier_free():
                lane += lutrom_luts(tmem, self.multiplier_bits() + 1)
        return pe * lane + (ceil(log2(tmem)) if tmem > 1 else 0)

    def dsp_estimation(self, fpgapart):
        """DSP48E2 count: 0 when multiplier-free; else per lane the tiles of a signed (m + 1) x K' product on the
        27 x 18 ports (m multiplier bits, K' = input bits, + 1 for an unsigned input), in the better orientation;
        the post-adder takes + B."""
        if self.is_multiplier_free():
            return 0
        idt = self.get_input_datatype(0)
        x_bits = idt.bitwidth() + (0 if idt.signed() else 1)
        m_bits = self.multiplier_bits() + 1
        per_lane = min(ceil(m_bits / DSP_A_BITS) * ceil(x_bits / DSP_B_BITS),
                       ceil(m_bits / DSP_B_BITS) * ceil(x_bits / DSP_A_BITS))
        return self.get_nodeattr("PE") * per_lane

    def bram_estimation(self, fpgapart):
        """No block RAM: the per-channel constants are LUT ROMs."""
        return 0

    def uram_estimation(self, fpgapart):
        """No URAM."""
        return 0
