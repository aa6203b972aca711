"""What psa-finn's channel-wise HW layers (PerChannelLUT, IntegerRequant) share: channels folded over PE lanes.

Lane p serves channels t * PE + p for t < TMEM = NumChannels / PE, so the layer takes and gives one PE-wide word per
cycle: the input is numInputVectors + [NumChannels] (folded: + [TMEM, PE]), the output has the same shape, and a
run takes prod(numInputVectors) * TMEM cycles. Each layer adds its own attributes, arithmetic and resource model.
"""

import numpy as np
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from finn.transformation.fpgadataflow.set_folding import divisors
from qonnx.core.datatype import DataType


class ChannelwiseLayer(HWCustomOp):
    """A finn-plus HW layer mapping each of NumChannels channels on its own, PE channels per cycle."""

    def get_nodeattr_types(self):
        """The attributes of the folding and the stream types (a layer adds its own)."""
        my_attrs = {
            # number of channels and lanes processed per cycle
            "NumChannels": ("i", True, 0),
            "PE": ("i", True, 0),
            # FINN DataTypes of the input and output codes
            "inputDataType": ("s", True, ""),
            "outputDataType": ("s", True, ""),
            # number of input vectors, e.g. [1, 64] for one image of 64 tokens
            "numInputVectors": ("ints", False, [1]),
        }
        my_attrs.update(super().get_nodeattr_types())
        return my_attrs

    def get_input_datatype(self, ind=0):
        """FINN DataType of the input codes."""
        return DataType[self.get_nodeattr("inputDataType")]

    def get_output_datatype(self, ind=0):
        """FINN DataType of the output codes."""
        return DataType[self.get_nodeattr("outputDataType")]

    def calc_tmem(self):
        """Channels per lane (NumChannels / PE); a clear error when PE does not divide NumChannels."""
        channels = self.get_nodeattr("NumChannels")
        pe = self.get_nodeattr("PE")
        if channels < 1 or pe < 1 or channels % pe != 0:
            raise ValueError(
                f"{self.onnx_node.name}: PE={pe} does not divide NumChannels={channels}; "
                f"choose PE from {list(divisors(channels)) if channels > 0 else '[]'}"
            )
        return channels // pe

    def num_elements(self):
        """Elements of one run: prod(numInputVectors) x NumChannels."""
        return int(np.prod(self.get_nodeattr("numInputVectors"))) * self.get_nodeattr("NumChannels")

    def get_normal_input_shape(self, ind=0):
        """numInputVectors + [NumChannels]."""
        return tuple(list(self.get_nodeattr("numInputVectors")) + [self.get_nodeattr("NumChannels")])

    def get_normal_output_shape(self, ind=0):
        """Same as the input shape."""
        return self.get_normal_input_shape(0)

    def get_folded_input_shape(self, ind=0):
        """numInputVectors + [NumChannels / PE, PE]: one PE-wide word per cycle."""
        return tuple(list(self.get_nodeattr("numInputVectors")) + [self.calc_tmem(), self.get_nodeattr("PE")])

    def get_folded_output_shape(self, ind=0):
        """Same as the folded input shape."""
        return self.get_folded_input_shape(0)

    def get_instream_width(self, ind=0):
        """PE input codes per word."""
        return self.get_input_datatype(0).bitwidth() * self.get_nodeattr("PE")

    def get_outstream_width(self, ind=0):
        """PE output codes per word."""
        return self.get_output_datatype().bitwidth() * self.get_nodeattr("PE")

    def get_exp_cycles(self):
        """One word per cycle: vectors x NumChannels / PE."""
        return int(np.prod(self.get_nodeattr("numInputVectors"))) * self.calc_tmem()
