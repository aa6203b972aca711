"""QuantBSpline: a linear B-spline activation (Deep Splines, `models.BSpline`) as a Brevitas activation layer, exported
as `Quant -> psa_finn.custom_ops::LerpPSA -> Quant` with its coefficients as the table.

    act = QuantBSpline(64)                          # [N, 64, ...] (channel_dim=1) or QuantBSpline(64, channel_dim=-1)
    act = QuantBSpline.from_float(trained_bspline)

Quantizers, layouts and export as `nn.quant_table_function`; `tv2()` is the float module's regulariser.
"""

from psa_finn.common.grid import BSPLINE_GRID_RANGE, BSPLINE_GRID_SIZE
from psa_finn.models.bspline import BSpline
from psa_finn.nn.quant_table_function import QuantTableFunction
from psa_finn.nn.quantizers import SignedActQuant


class QuantBSpline(QuantTableFunction):
    """Quantized B-spline over `num_channels` channels on axis `channel_dim` (arguments as `QuantLerpPSA`)."""

    def __init__(self, num_channels: int, channel_dim: int = 1, bit_width: int = 8, input_quant=SignedActQuant,
                 act_quant=SignedActQuant, return_quant_tensor: bool = False, grid_size: int = BSPLINE_GRID_SIZE,
                 grid_range: float = BSPLINE_GRID_RANGE, input_affine: bool = False, **kwargs):
        function = BSpline(num_channels, grid_size=grid_size, grid_range=grid_range)
        super().__init__(function, channel_dim, bit_width, input_quant, act_quant, return_quant_tensor,
                         residual=False, input_affine=input_affine, **kwargs)

    @classmethod
    def from_float(cls, module: BSpline, channel_dim: int = 1, bit_width: int = 8, input_quant=SignedActQuant,
                   act_quant=SignedActQuant, return_quant_tensor: bool = False, input_affine=None, **kwargs):
        """The QAT layer of a trained float `BSpline` (coefficients copied by name); `input_affine=(scale, shift)`
        sets a per-channel affine before it."""
        if not isinstance(module, BSpline):
            raise TypeError(f"QuantBSpline.from_float takes a BSpline, got {type(module).__name__}")
        layer = cls(module.num_channels, channel_dim, bit_width, input_quant, act_quant, return_quant_tensor,
                    grid_size=module.grid_size, grid_range=module.grid_range,
                    input_affine=input_affine is not None, **kwargs)
        layer.function.load_state_dict(module.state_dict())
        if input_affine is not None:
            layer.set_input_affine(*input_affine)
        return layer.to(module.coefficients().device)

    def tv2(self):
        """The TV(2) regulariser of the coefficients (models.BSpline.tv2)."""
        return self.function.tv2()
