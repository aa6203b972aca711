"""HLS backends of psa-finn's hardware layers, registered with finn-plus and qonnx on import."""

from psa_finn.custom_ops.fpgadataflow import register_hw_layer
from psa_finn.custom_ops.fpgadataflow.hls.kan_linear_hls import KANLinear_hls
from psa_finn.custom_ops.fpgadataflow.hls.per_channel_lut_hls import PerChannelLUT_hls

register_hw_layer(PerChannelLUT_hls, "hls")
register_hw_layer(KANLinear_hls, "hls")

__all__ = ["PerChannelLUT_hls", "KANLinear_hls"]
