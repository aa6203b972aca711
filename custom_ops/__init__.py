"""psa-finn's qonnx custom ops, ONNX domain "psa_finn.custom_ops": qonnx resolves the domain by importing this module.

Files exported before the package existed name the bare domain "custom_ops"; it is registered as an alias of this
module, so such files execute too (`domain.upgrade_legacy_domain` rewrites them on load).
"""

from qonnx.custom_op.registry import add_domain_alias

from psa_finn.custom_ops.domain import LEGACY_OPS_DOMAIN, OPS_DOMAIN
from psa_finn.custom_ops.kan_linear import KANLinear
from psa_finn.custom_ops.kan_lut import KANLUT
from psa_finn.custom_ops.lerp_psa import LerpPSA
from psa_finn.custom_ops.per_channel_lut import PerChannelLUT

add_domain_alias(LEGACY_OPS_DOMAIN, OPS_DOMAIN)

__all__ = ["LerpPSA", "PerChannelLUT", "KANLinear", "KANLUT"]
