"""RTL backends of psa-finn's HW layers (plain Verilog); importing registers them with qonnx and finn-plus."""

from psa_finn.custom_ops.fpgadataflow import register_hw_layer
from psa_finn.custom_ops.fpgadataflow.rtl.kan_linear_rtl import KANLinear_rtl
from psa_finn.custom_ops.fpgadataflow.rtl.per_channel_lut_rtl import PerChannelLUT_rtl

register_hw_layer(PerChannelLUT_rtl, "rtl")
register_hw_layer(KANLinear_rtl, "rtl")

__all__ = ["PerChannelLUT_rtl", "KANLinear_rtl"]
