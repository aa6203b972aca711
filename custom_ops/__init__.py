"""psa-finn qonnx custom ops in ONNX domain "custom_ops" (qonnx resolves the domain as this module after import)."""

from custom_ops.lerp_psa import LerpPSA
from custom_ops.per_channel_lut import PerChannelLUT

__all__ = ["LerpPSA", "PerChannelLUT"]
