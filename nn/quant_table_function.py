"""QuantTableFunction: a learnable per-channel 1-D function as a Brevitas activation layer (base of QuantLerpPSA and
QuantBSpline).

    y = act_quant(f_c(in_scale[c] * x_q + in_bias[c]))     x_q = input_quant(x), c the index along `channel_dim`

`f_c` is the float module's table (`function.table()` [C, G] on `grid_points(G, grid_range)`, plus the grid when
`residual`), linearly interpolated and extrapolated; the input affine (optional, e.g. a folded BatchNorm) is learned
with it. The layer has the shape of Brevitas' `QuantReLU`: quantizers are injected as classes (`input_quant`,
`act_quant`, with `bit_width` for both and `input_`-prefixed keyword arguments for the input quantizer alone), a
QuantTensor input is taken as already quantized, `return_quant_tensor` gives a QuantTensor out. The function is
evaluated by `nn.lerp_psa_function.lerp_psa`, bit-identical to the qonnx op, so the layer exports as
`Quant -> LerpPSA -> Quant` (the `Quant`s are its quantizers; with `input_quant=None` the input must come from a
quantizer already) and its forward equals the exported graph bit for bit.

During export the table is a constant: the eager eval forward that Brevitas' exporter runs before tracing leaves it
in `_export_table`, and the traced forward reads it from there.
"""

from inspect import isclass

import torch
from brevitas.nn.mixin import QuantInputMixin, QuantNonLinearActMixin
from brevitas.nn.mixin.base import QuantLayerMixin
from brevitas.quant_tensor import QuantTensor, _unpack_quant_tensor
from torch import nn

from psa_finn.common.grid import grid_points
from psa_finn.nn.lerp_psa_function import lerp_psa
from psa_finn.nn.quantizers import check_layer_bit_width

INPUT_PREFIX = "input_"
LAYOUT_HINT = "channel_dim=1 for [N, C], [N, C, W], [N, C, H, W]; channel_dim=-1 for [N, T, C] or [N, H, W, C]"


class QuantTableFunction(QuantNonLinearActMixin, QuantInputMixin, QuantLayerMixin, nn.Module):
    """`act_quant(lerp(table, input_quant(x)))` per channel along `channel_dim`; `function` is the float module whose
    `table()` [C, G] is learned (see the module docstring)."""

    def __init__(self, function: nn.Module, channel_dim: int, bit_width: int, input_quant, act_quant,
                 return_quant_tensor: bool, residual: bool, input_affine: bool, **kwargs):
        nn.Module.__init__(self)
        QuantLayerMixin.__init__(self, return_quant_tensor)
        input_kwargs = {key: value for key, value in kwargs.items() if key.startswith(INPUT_PREFIX)}
        act_kwargs = {key: value for key, value in kwargs.items() if not key.startswith(INPUT_PREFIX)}
        if isclass(input_quant) or isclass(act_quant):
            check_layer_bit_width(type(self).__name__, bit_width)
        if isclass(input_quant):
            input_kwargs.setdefault(INPUT_PREFIX + "bit_width", bit_width)
        if isclass(act_quant):
            act_kwargs.setdefault("bit_width", bit_width)
        QuantInputMixin.__init__(self, input_quant, **input_kwargs)
        QuantNonLinearActMixin.__init__(self, act_impl=None, passthrough_act=False, act_quant=act_quant, **act_kwargs)
        self.function = function
        self.channel_dim = int(channel_dim)
        self.residual = bool(residual)
        channels = function.num_channels
        self.in_scale = nn.Parameter(torch.ones(channels)) if input_affine else None
        self.in_bias = nn.Parameter(torch.zeros(channels)) if input_affine else None
        self._export_table = None

    @property
    def channelwise_separable(self) -> bool:
        return True

    @property
    def num_channels(self) -> int:
        return self.function.num_channels

    @property
    def grid_size(self) -> int:
        return self.function.grid_size

    @property
    def grid_range(self) -> float:
        return self.function.grid_range

    def table(self):
        """The function on its grid, [C, G] (the residual included): what the exported LerpPSA node holds."""
        table = self.function.table()
        if self.residual:
            grid = torch.as_tensor(grid_points(self.grid_size, self.grid_range), dtype=table.dtype,
                                   device=table.device)
            table = table + grid
        return table

    def set_input_affine(self, scale, shift):
        """Set `in_scale`, `in_bias` (the layer must have been built with `input_affine=True`)."""
        if self.in_scale is None:
            raise ValueError(f"{type(self).__name__} was built without an input affine (input_affine=False)")
        with torch.no_grad():
            self.in_scale.copy_(torch.as_tensor(scale, dtype=self.in_scale.dtype))
            self.in_bias.copy_(torch.as_tensor(shift, dtype=self.in_bias.dtype))

    def _check_layout(self, x):
        name = f"{type(self).__name__}(num_channels={self.num_channels}, channel_dim={self.channel_dim})"
        if x.dim() < 2 or not -x.dim() <= self.channel_dim < x.dim():
            raise ValueError(f"{name}: an input of shape {tuple(x.shape)} has no axis {self.channel_dim}; "
                             f"{LAYOUT_HINT}")
        if x.shape[self.channel_dim] != self.num_channels:
            raise ValueError(f"{name}: an input of shape {tuple(x.shape)} has {x.shape[self.channel_dim]} entries "
                             f"on axis {self.channel_dim}, not {self.num_channels} channels; {LAYOUT_HINT}")

    def _current_table(self):
        if torch.onnx.is_in_onnx_export():
            if self._export_table is None:
                raise RuntimeError(f"{type(self).__name__}: export needs one eager forward in eval mode first "
                                   f"(psa_finn.export.export_qonnx and brevitas' export_qonnx run it)")
            return self._export_table
        table = self.table()
        self._export_table = None if self.training else table.detach()
        return table

    def forward(self, x):
        x = self.unpack_input(x)
        quant_input = x if isinstance(x, QuantTensor) else self.input_quant(x)
        value = _unpack_quant_tensor(quant_input)
        self._check_layout(value)
        y = lerp_psa(value, self._current_table(), self.grid_range, self.in_scale, self.in_bias, self.channel_dim)
        return self.pack_output(self.act_quant(y))

    def extra_repr(self):
        return f"num_channels={self.num_channels}, channel_dim={self.channel_dim}, residual={self.residual}, " \
               f"input_affine={self.in_scale is not None}"
