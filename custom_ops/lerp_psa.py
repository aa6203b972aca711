"""The qonnx op `LerpPSA`: a per-channel piecewise-linear function on the uniform grid of `common/grid.py`.

`y[..., c, ...] = lerp(table[c], in_scale[c] * x[..., c, ...] + in_bias[c])` with c the index along the node's
`channel_axis` (default -1, channels last; see `custom_ops.domain`), with linear extrapolation (edge slopes) beyond
[-grid_range, grid_range]. LERP-PSA banks and B-spline activations both export
to this op; a ResPSA residual is folded into the table and a preceding per-channel affine into in_scale/in_bias.
"""

import numpy as np
from onnx import helper

from psa_finn.common.grid import segment_and_fraction
from psa_finn.custom_ops.domain import CHANNEL_AXIS_ATTR, DEFAULT_CHANNEL_AXIS, channel_axis_of, normalize_channel_axis
from psa_finn.custom_ops.grid_table_op import (
    GRID_RANGE_ATTR,
    GridTableOp,
    apply_input_affine,
    check_finite,
    check_grid_range,
)

def check_lerp_psa_inputs(input_shape, table_shape, channel_axis=DEFAULT_CHANNEL_AXIS, in_scale=None,
                          in_bias=None, grid_range=None):
    """The one check of a LerpPSA's table against its input: ValueError unless the table is [C, G >= 2] with C the
    input's size on `channel_axis`, in_scale / in_bias are both absent or both hold C values, and `grid_range` (when
    given) is finite and > 0. `input_shape` None checks the table alone. Returns the normalized channel axis (None
    without `input_shape`)."""
    if len(table_shape) != 2 or table_shape[1] < 2:
        raise ValueError(f"table must have shape [C, G] with G >= 2, got {list(table_shape)}")
    if grid_range is not None:
        check_grid_range(grid_range)
    if (in_scale is None) != (in_bias is None):
        raise ValueError("in_scale and in_bias must be given together (or neither)")
    channels = table_shape[0]
    for name, value in (("in_scale", in_scale), ("in_bias", in_bias)):
        if value is not None and np.size(value) != channels:
            raise ValueError(f"{name} must have shape [{channels}], got {list(np.shape(value))}")
    if input_shape is None:
        return None
    axis = normalize_channel_axis(channel_axis, len(input_shape))
    if input_shape[axis] != channels:
        raise ValueError(f"input has shape {list(input_shape)} but the table has {channels} channels (rows) for its "
                         f"{input_shape[axis]} entries on {CHANNEL_AXIS_ATTR} {channel_axis}")
    return axis


def lerp_psa_numpy(x, table, grid_range, in_scale=None, in_bias=None, channel_axis=DEFAULT_CHANNEL_AXIS):
    """Evaluate the LerpPSA function: x with C channels on `channel_axis`, table [C, G] -> float32 of x's shape.

    Computed in float64 and rounded once to float32, so that every stage evaluating the op gets identical bits.
    Raises ValueError on shape mismatches, an axis out of range, a half-given affine, or non-finite
    table/scale/bias values.
    """
    table = np.asarray(table, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    axis = check_lerp_psa_inputs(x.shape, table.shape, channel_axis, in_scale, in_bias, grid_range)
    channels, grid_size = table.shape
    x = np.moveaxis(x, axis, -1)
    check_finite("table", table)
    x = apply_input_affine(x, in_scale, in_bias, channels)
    segment, fraction = segment_and_fraction(x, grid_size, float(grid_range))
    channel = np.arange(channels)
    y0 = table[channel, segment]
    y1 = table[channel, segment + 1]
    return np.moveaxis((y0 + fraction * (y1 - y0)).astype(np.float32), -1, axis)


class LerpPSA(GridTableOp):
    """Per-channel piecewise-linear function: inputs x (C channels on `channel_axis`), table [C, G], optional
    in_scale [C], in_bias [C]."""

    reference = staticmethod(lerp_psa_numpy)

    def get_nodeattr_types(self):
        """grid_range (required) and channel_axis (default -1)."""
        return {GRID_RANGE_ATTR: ("f", True, 0.0), CHANNEL_AXIS_ATTR: ("i", False, DEFAULT_CHANNEL_AXIS)}

    def reference_attributes(self):
        """grid_range and the channel axis (a bad channel_axis raises naming the node)."""
        return {GRID_RANGE_ATTR: self.get_nodeattr(GRID_RANGE_ATTR), "channel_axis": channel_axis_of(self.onnx_node)}

    def make_shape_compatible_op(self, model):
        """The output has the input's shape."""
        return helper.make_node("Identity", [self.onnx_node.input[0]], [self.onnx_node.output[0]])

    def verify_node(self):
        """Input count, grid_range and channel_axis."""
        messages = self.verify_inputs_and_grid()
        try:
            channel_axis_of(self.onnx_node)
        except ValueError as err:
            messages.append(str(err))
        return messages
