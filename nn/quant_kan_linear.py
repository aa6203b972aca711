"""QuantKANLinear: a Kolmogorov-Arnold layer as a drop-in Brevitas layer (like `QuantLinear`), exported as
`Quant -> psa_finn.custom_ops::KANLinear -> Quant`.

    layer = QuantKANLinear(64, 16, bit_width=4)               # on [..., 64] -> [..., 16]
    layer = QuantKANLinear.from_pykan(trained_kan.act_fun[0])  # a trained pykan KANLayer, sampled on our grid

Every edge (input i, output j) has its own function phi_ji, a table on `grid_points(grid_size, grid_range)`
linearly interpolated (and extrapolated beyond the range); the layer computes

    y_j = output_quant( sum_i q(phi_ji(in_scale[i] * x_i + in_bias[i])) )      x = input_quant(x)

where q rounds each edge value onto the power-of-two edge grid (`edge_bit_width` signed bits for the largest table
entry; straight-through gradient), so the sum is exact and the lowering gives integer per-edge tables that the
KANLinear HW layer adds up. The edge tables are parameterised by `function`:
- "bspline": the table entries themselves (a linear B-spline per edge, as models.BSpline);
- "lerp_psa": a LERP-PSA per edge (models.LerpPSA over in*out channels) times a learnable edge weight;
and `base="silu"` adds `base_weight[j, i] * silu` sampled on the same grid (pykan's residual base function).
The sum is evaluated by `models.lerp.lerp_edge_sum` (segment/fraction once per input, two gathers per input, no
[N, in, out] temporary), bit-identical to the qonnx op in float64. A QuantTensor input is taken as quantized.
"""

import math
from inspect import isclass

import torch
from brevitas.nn.mixin import QuantInputMixin, QuantOutputMixin
from brevitas.nn.mixin.base import QuantLayerMixin
from brevitas.quant_tensor import QuantTensor, _unpack_quant_tensor
from torch import nn

from psa_finn.common.grid import grid_points
from psa_finn.models.lerp import lerp_table
from psa_finn.models.lerp_psa import LerpPSA
from psa_finn.nn.kan_linear_function import kan_linear
from psa_finn.nn.lerp_psa_function import onnx_grid_range
from psa_finn.nn.quantizers import SignedActQuant, check_layer_bit_width

KAN_FUNCTIONS = ("bspline", "lerp_psa")
KAN_BASES = ("silu", None)
KAN_GRID_SIZE = 17
KAN_GRID_RANGE = 4.0
INPUT_PREFIX = "input_"
OUTPUT_PREFIX = "output_"


def edge_scale_for(tables, edge_bit_width: int) -> float:
    """The power-of-two edge grid step: the smallest 2^k with max|tables| <= (2^(edge_bit_width-1) - 1) * 2^k."""
    peak = float(tables.detach().abs().max())
    if not peak > 0:
        return 1.0
    return float(2.0 ** math.ceil(math.log2(peak / (2 ** (edge_bit_width - 1) - 1))))


class QuantKANLinear(QuantInputMixin, QuantOutputMixin, QuantLayerMixin, nn.Module):
    """Quantized KAN layer [..., in_features] -> [..., out_features] (see the module docstring).

    `bit_width` sets the input and output quantizers (`input_quant`, `output_quant`: Brevitas quantizer classes,
    power-of-two scales by default; None turns one off; `input_`/`output_`-prefixed keyword arguments reach one of
    them). `grid_size`/`grid_range`: each edge's grid. `edge_bit_width`: signed bits of the largest edge value on
    the edge grid (default bit_width + 4). `input_affine=True` learns a per-input `in_scale * x + in_bias`.
    """

    def __init__(self, in_features: int, out_features: int, bit_width: int = 8, grid_size: int = KAN_GRID_SIZE,
                 grid_range: float = KAN_GRID_RANGE, function: str = "bspline", base="silu",
                 input_quant=SignedActQuant, output_quant=SignedActQuant, return_quant_tensor: bool = False,
                 edge_bit_width: int = None, input_affine: bool = False, **kwargs):
        nn.Module.__init__(self)
        QuantLayerMixin.__init__(self, return_quant_tensor)
        if function not in KAN_FUNCTIONS:
            raise ValueError(f"QuantKANLinear: function must be one of {KAN_FUNCTIONS}, got {function!r}")
        if base not in KAN_BASES:
            raise ValueError(f"QuantKANLinear: base must be 'silu' or None, got {base!r}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"QuantKANLinear needs in_features, out_features >= 1, got {in_features}, {out_features}")
        input_kwargs = {key: value for key, value in kwargs.items() if key.startswith(INPUT_PREFIX)}
        output_kwargs = {key: value for key, value in kwargs.items() if key.startswith(OUTPUT_PREFIX)}
        unknown = set(kwargs) - set(input_kwargs) - set(output_kwargs)
        if unknown:
            raise TypeError(f"QuantKANLinear got unexpected keyword arguments {sorted(unknown)} (quantizer options "
                            f"take the prefix {INPUT_PREFIX!r} or {OUTPUT_PREFIX!r})")
        if isclass(input_quant) or isclass(output_quant):
            check_layer_bit_width("QuantKANLinear", bit_width)
        if isclass(input_quant):
            input_kwargs.setdefault(INPUT_PREFIX + "bit_width", bit_width)
        if isclass(output_quant):
            output_kwargs.setdefault(OUTPUT_PREFIX + "bit_width", bit_width)
        QuantInputMixin.__init__(self, input_quant, **input_kwargs)
        QuantOutputMixin.__init__(self, output_quant, **output_kwargs)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.grid_size, self.grid_range = int(grid_size), float(grid_range)
        self.function_kind, self.base = function, base
        self.edge_bit_width = int(edge_bit_width if edge_bit_width is not None else bit_width + 4)
        edges = self.out_features * self.in_features
        bound = 1.0 / math.sqrt(self.in_features)
        grid = torch.as_tensor(grid_points(self.grid_size, self.grid_range), dtype=torch.float32)
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("base_samples", grid * torch.sigmoid(grid), persistent=False)
        slopes = torch.empty(self.out_features, self.in_features, 1).uniform_(-bound, bound)
        if function == "bspline":
            init = torch.randn(self.out_features, self.in_features, self.grid_size) * 0.1 * bound
            self.coefficients = nn.Parameter(init if base == "silu" else init + slopes * grid)
            self.psa, self.edge_weight = None, None
        else:
            self.coefficients = None
            self.psa = LerpPSA(edges, grid_size=self.grid_size, grid_range=self.grid_range)
            self.edge_weight = nn.Parameter(slopes.view(self.out_features, self.in_features))
        self.base_weight = nn.Parameter(torch.empty(self.out_features, self.in_features).uniform_(-bound, bound)) \
            if base == "silu" else None
        # 1 = edge kept, 0 = pruned (`prune_edges`): a pruned edge's table is zero, so its hardware vanishes
        self.register_buffer("edge_mask", torch.ones(self.out_features, self.in_features))
        self.in_scale = nn.Parameter(torch.ones(self.in_features)) if input_affine else None
        self.in_bias = nn.Parameter(torch.zeros(self.in_features)) if input_affine else None
        self._export_tables = None

    @property
    def num_edges(self) -> int:
        return self.in_features * self.out_features

    def tables(self):
        """Every edge function on its grid, [out, in, G] (base included): what the exported KANLinear node holds."""
        if self.coefficients is not None:
            tables = self.coefficients
        else:
            tables = self.psa.table().view(self.out_features, self.in_features, self.grid_size) * \
                self.edge_weight[..., None]
        if self.base_weight is not None:
            tables = tables + self.base_weight[..., None] * self.base_samples
        return tables * self.edge_mask[..., None]

    @property
    def edges_kept(self) -> int:
        """Edges not pruned."""
        return int(self.edge_mask.sum())

    def edge_scores(self, x):
        """Each edge's mean |phi_ji(x_i)| over the inputs x [..., in_features] (as `forward` takes them, quantized by
        the input quantizer): the L1 importance by which Liu et al.'s KAN prunes edges, [out, in]."""
        with torch.no_grad():
            value = self._quant_input_value(x).reshape(-1, self.in_features).to(torch.float32)
            if self.in_scale is not None:
                value = value * self.in_scale + self.in_bias
            scores = torch.zeros(self.out_features, self.in_features)
            tables = self.tables()
            for i in range(self.in_features):
                edges = lerp_table(value[:, i:i + 1].expand(-1, self.out_features).contiguous(), tables[:, i],
                                   self.grid_range)
                scores[:, i] = edges.abs().mean(dim=0)
        return scores

    def prune_edges(self, x, threshold: float) -> int:
        """Prune every edge whose `edge_scores` on x is below `threshold` x the layer's largest score (0 <= threshold
        < 1; pruned edges stay pruned); returns the edges kept. Train on afterwards to recover."""
        if not 0 <= threshold < 1:
            raise ValueError(f"QuantKANLinear.prune_edges: threshold must be in [0, 1), got {threshold}")
        scores = self.edge_scores(x)
        with torch.no_grad():
            self.edge_mask.mul_((scores >= threshold * scores.max()).to(self.edge_mask.dtype))
        self._export_tables = None
        return self.edges_kept

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """State dicts from before edge pruning load with every edge kept."""
        state_dict.setdefault(prefix + "edge_mask", torch.ones_like(self.edge_mask))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def edge_scale(self, tables=None) -> float:
        """The power-of-two step of the edge grid for the current tables (`edge_scale_for`)."""
        return edge_scale_for(self.tables() if tables is None else tables, self.edge_bit_width)

    def set_input_affine(self, scale, shift):
        """Set `in_scale`, `in_bias` [in_features] (the layer must have been built with `input_affine=True`)."""
        if self.in_scale is None:
            raise ValueError("QuantKANLinear was built without an input affine (input_affine=False)")
        with torch.no_grad():
            self.in_scale.copy_(torch.as_tensor(scale, dtype=self.in_scale.dtype))
            self.in_bias.copy_(torch.as_tensor(shift, dtype=self.in_bias.dtype))

    def set_tables(self, tables):
        """Set every edge to `tables` [out, in, G] (function "bspline" only; the base weight, if any, is zeroed)."""
        if self.coefficients is None:
            raise ValueError("QuantKANLinear.set_tables needs function='bspline' (its coefficients are the tables)")
        tables = torch.as_tensor(tables, dtype=self.coefficients.dtype)
        if tuple(tables.shape) != tuple(self.coefficients.shape):
            raise ValueError(f"tables must have shape {tuple(self.coefficients.shape)}, got {tuple(tables.shape)}")
        with torch.no_grad():
            self.coefficients.copy_(tables)
            if self.base_weight is not None:
                self.base_weight.zero_()

    def extend_grid(self, grid_size: int):
        """Grid extension (Liu et al.'s KAN training schedule): resample every edge onto `grid_size` points over the
        same range, keeping each function: the finer grid holds the old piecewise-linear function exactly when
        (grid_size - 1) is a multiple of (old size - 1), its linear interpolation otherwise. Function "bspline"
        only; a SiLU base keeps its weight (the coefficients take up the difference of its sampling)."""
        if self.coefficients is None:
            raise ValueError("QuantKANLinear.extend_grid needs function='bspline' (its coefficients are the tables)")
        points = torch.as_tensor(grid_points(int(grid_size), self.grid_range), dtype=self.coefficients.dtype)
        with torch.no_grad():
            old = self.tables().reshape(self.num_edges, self.grid_size)
            tables = lerp_table(points[:, None].expand(len(points), self.num_edges).contiguous(), old,
                                self.grid_range).T.reshape(self.out_features, self.in_features, len(points))
            self.grid_size = int(grid_size)
            self.grid = points.to(self.grid.device)
            self.base_samples = self.grid * torch.sigmoid(self.grid)
            if self.base_weight is not None:
                tables = tables - self.base_weight[..., None] * self.base_samples
            self.coefficients = nn.Parameter(tables.contiguous())
        self._export_tables = None
        return self

    def _current_tables(self):
        if torch.onnx.is_in_onnx_export():
            if self._export_tables is None:
                raise RuntimeError("QuantKANLinear: export needs one eager forward in eval mode first "
                                   "(psa_finn.export.export_qonnx and brevitas' export_qonnx run it)")
            return self._export_tables
        tables = self.tables()
        scale = self.edge_scale(tables)
        self._export_tables = None if self.training else (tables.detach(), scale)
        return tables, scale

    def _quant_input_value(self, x):
        """The input as a float tensor on the input quantizer's grid (a QuantTensor is taken as quantized)."""
        x = self.unpack_input(x)
        return _unpack_quant_tensor(x if isinstance(x, QuantTensor) else self.input_quant(x))

    def forward(self, x):
        value = self._quant_input_value(x)
        if value.dim() < 1 or value.shape[-1] != self.in_features:
            raise ValueError(f"QuantKANLinear({self.in_features}, {self.out_features}): an input of shape "
                             f"{tuple(value.shape)} does not have {self.in_features} features on its last axis")
        tables, scale = self._current_tables()
        y = kan_linear(value, tables, self.grid_range, scale, self.in_scale, self.in_bias)
        return self.pack_output(self.output_quant(y))

    @classmethod
    def from_pykan(cls, layer, bit_width: int = 8, grid_size: int = None, grid_range: float = None, **kwargs):
        """The layer of a trained pykan (0.2.x) `KANLayer`: each edge `mask * (scale_base * base_fun(x) + scale_sp *
        spline(x))` sampled on our grid (`grid_size` points, default 4 per pykan grid interval plus one, over the
        symmetric `grid_range` that covers pykan's grid, default). Function "bspline", no separate base."""
        knots = layer.grid.detach()
        low, high = float(knots[:, layer.k].min()), float(knots[:, -layer.k - 1].max())
        grid_range = float(grid_range if grid_range is not None else max(abs(low), abs(high)))
        grid_size = int(grid_size if grid_size is not None else 4 * layer.num + 1)
        kan = cls(layer.in_dim, layer.out_dim, bit_width=bit_width, grid_size=grid_size, grid_range=grid_range,
                  function="bspline", base=None, **kwargs)
        samples = torch.as_tensor(grid_points(grid_size, onnx_grid_range(grid_range)), dtype=torch.float32)
        with torch.no_grad():
            inputs = samples[:, None].expand(grid_size, layer.in_dim).contiguous()
            _, _, postacts, _ = layer(inputs)  # [G, out, in]: every edge at every grid point
        kan.set_tables(postacts.permute(1, 2, 0).to(torch.float32))
        return kan

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}, " \
               f"grid_range={self.grid_range}, function={self.function_kind!r}, base={self.base!r}, " \
               f"edge_bit_width={self.edge_bit_width}"

