"""QuantLerpPSA: a LERP-PSA bank as a drop-in Brevitas activation layer (like `QuantReLU`), exported as
`Quant -> psa_finn.custom_ops::LerpPSA -> Quant`.

    act = QuantLerpPSA(64)                          # after QuantConv2d on [N, 64, H, W] or QuantLinear on [N, 64]
    act = QuantLerpPSA(96, channel_dim=-1)          # tokens [N, T, 96]
    act = QuantLerpPSA.from_float(trained_lerp_psa) # QAT from a trained float LerpPSA / ResPSA / PSA

It learns in the PSA form: the parameters, initialisation regimes and grid table of `models.LerpPSA` (held as
`function`), the table interpolated by the shared LERP kernel; see `nn.quant_table_function` for the quantizers and
the export.
"""


from psa_finn.common.grid import LERP_GRID_RANGE, LERP_GRID_SIZE
from psa_finn.models.lerp_psa import LerpPSA
from psa_finn.models.psa import PSA, PSA_EPSILON, PSA_EXPANSION
from psa_finn.models.res_psa import ResPSA
from psa_finn.nn.quant_table_function import QuantTableFunction
from psa_finn.nn.quantizers import SignedActQuant


class QuantLerpPSA(QuantTableFunction):
    """Quantized LERP-PSA over `num_channels` channels on axis `channel_dim` of its input.

    `bit_width` sets the input and output quantizers (`input_quant`, `act_quant`: Brevitas quantizer classes,
    power-of-two scales by default; None turns one off). `grid_size`/`grid_range`: the LERP grid. `expansion`,
    `epsilon`, `distill_init`: the PSA's basis size and initialisation (models.PSA). `residual=True` adds the
    identity (`y = psa(x) + x`, a ResPSA; the PSA then starts from the in-residual init). `input_affine=True`
    learns a per-channel `in_scale * x + in_bias` before the function (e.g. a folded BatchNorm).
    """

    def __init__(self, num_channels: int, channel_dim: int = 1, bit_width: int = 8, input_quant=SignedActQuant,
                 act_quant=SignedActQuant, return_quant_tensor: bool = False, grid_size: int = LERP_GRID_SIZE,
                 grid_range: float = LERP_GRID_RANGE, expansion: int = PSA_EXPANSION, epsilon: float = PSA_EPSILON,
                 residual: bool = False, distill_init: bool = True, input_affine: bool = False, **kwargs):
        function = LerpPSA(num_channels, expansion, grid_size=grid_size, grid_range=grid_range, epsilon=epsilon,
                           is_in_residual=residual, distill_init=distill_init)
        super().__init__(function, channel_dim, bit_width, input_quant, act_quant, return_quant_tensor, residual,
                         input_affine, **kwargs)

    @classmethod
    def from_float(cls, module, channel_dim: int = 1, bit_width: int = 8, input_quant=SignedActQuant,
                   act_quant=SignedActQuant, return_quant_tensor: bool = False, input_affine=None, **kwargs):
        """The QAT layer of a trained float `LerpPSA`, `PSA` (then tabulated) or `ResPSA` (residual kept), with
        its parameters copied by name; `input_affine=(scale, shift)` sets a per-channel affine before it. Equal to
        the float module up to the quantizers (and, for an exact PSA, the LERP of its grid table)."""
        residual = isinstance(module, ResPSA)
        psa = module.psa if residual else module
        if not isinstance(psa, PSA):
            raise TypeError(f"QuantLerpPSA.from_float takes a LerpPSA, PSA or ResPSA, got {type(module).__name__}")
        layer = cls(psa.num_channels, channel_dim, bit_width, input_quant, act_quant, return_quant_tensor,
                    grid_size=psa.grid_size, grid_range=psa.grid_range, expansion=psa.expansion,
                    epsilon=float(psa.epsilon), residual=residual, input_affine=input_affine is not None, **kwargs)
        state = layer.function.state_dict()
        state.update(psa.state_dict())
        layer.function.load_state_dict(state)
        if input_affine is not None:
            layer.set_input_affine(*input_affine)
        return layer.to(psa.v_weight.device)
