"""The PerChannelLUT and KANLinear hardware layers for finn-plus, with their backends.

Importing this package registers the layer and its backends with qonnx and with finn-plus's own registries
(``finn.custom_op.fpgadataflow[.hls|.rtl].custom_op``), so that ``getCustomOp``, ``SpecializeLayers`` and finn's
resource, cycle and op-count analyses find them. Nodes carry finn-plus's domains (``finn.custom_op.fpgadataflow``,
``.hls``, ``.rtl``) because ``SpecializeLayers`` and those analyses match the domain strings exactly.
"""

import finn.custom_op.fpgadataflow as finn_hw
import finn.custom_op.fpgadataflow.hls as finn_hls
import finn.custom_op.fpgadataflow.rtl as finn_rtl
from qonnx.custom_op.registry import add_op_to_domain

from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT

HW_DOMAIN = "finn.custom_op.fpgadataflow"
FINN_REGISTRIES = {"": finn_hw, "hls": finn_hls, "rtl": finn_rtl}


def register_hw_layer(op_class, backend=""):
    """Register a finn-plus hardware layer class ("" for the backend-independent layer, "hls" or "rtl")."""
    registry = FINN_REGISTRIES[backend]
    registry.register_custom_op(op_class)
    add_op_to_domain(HW_DOMAIN + ("." + backend if backend else ""), op_class)


register_hw_layer(PerChannelLUT)
register_hw_layer(KANLinear)

# the backend packages register their classes with register_hw_layer when imported
import psa_finn.custom_ops.fpgadataflow.rtl  # noqa: E402,F401
from psa_finn.custom_ops.fpgadataflow.hls import KANLinear_hls, PerChannelLUT_hls  # noqa: E402

__all__ = ["PerChannelLUT", "PerChannelLUT_hls", "KANLinear", "KANLinear_hls", "register_hw_layer", "HW_DOMAIN"]
