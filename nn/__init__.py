"""psa-finn stage package: nn (public layers, as brevitas.nn beside torch.nn).

Quantized layers that drop into any Brevitas network and export to QONNX as `Quant -> LerpPSA -> Quant`:
    QuantLerpPSA   learnable LERP-PSA activation (PSA form, per-channel table)
    QuantBSpline   learnable linear B-spline activation (its coefficients are the table)
    QuantKANLinear Kolmogorov-Arnold layer (one learnable function per edge), exported as Quant -> KANLinear -> Quant
Float modules, re-exported from psa_finn.models: LerpPSA, PSA, ResPSA, BSpline.
Quantizers (power-of-two scales): psa_finn.nn.quantizers.

quantizers            the default quantizers and the 2..8 bit check
lerp_psa_function     the LerpPSA function in torch, bit-identical to the qonnx op, exported as one custom node
quant_table_function  the shared layer: quantizers, layouts, table, export
quant_lerp_psa        QuantLerpPSA
quant_bspline         QuantBSpline
kan_linear_function   the KANLinear function in torch, bit-identical to the qonnx op, exported as one custom node
quant_kan_linear      QuantKANLinear (from_pykan imports a trained pykan KANLayer)
"""

from psa_finn.models.bspline import BSpline
from psa_finn.models.lerp_psa import LerpPSA
from psa_finn.models.psa import PSA
from psa_finn.models.res_psa import ResPSA
from psa_finn.nn.quant_bspline import QuantBSpline
from psa_finn.nn.quant_kan_linear import QuantKANLinear
from psa_finn.nn.quant_lerp_psa import QuantLerpPSA

__all__ = ["QuantLerpPSA", "QuantBSpline", "QuantKANLinear", "LerpPSA", "PSA", "ResPSA", "BSpline"]
