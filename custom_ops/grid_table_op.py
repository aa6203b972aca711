"""What the qonnx ops that evaluate tables on the uniform grid of `common/grid.py` share (LerpPSA, KANLinear).

Inputs (x, table) or (x, table, in_scale, in_bias), attribute `grid_range` (the grid spans [-grid_range,
grid_range]), a float32 output. `GridTableOp.execute_node` calls the op's numpy reference (`reference`) with the
node's attributes (`reference_attributes`) and names the node in any error; `check_grid_range`, `check_finite` and
`apply_input_affine` are the references' own input checks.
"""

from abc import abstractmethod

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

GRID_RANGE_ATTR = "grid_range"


def check_grid_range(grid_range) -> None:
    """ValueError unless the attribute grid_range is a finite number > 0."""
    if not (np.isfinite(grid_range) and grid_range > 0):
        raise ValueError(f"grid_range is {grid_range}; it must be a finite number > 0 (the grid spans "
                         f"[-grid_range, grid_range])")


def check_finite(name, value):
    """ValueError naming `name` and how many of its values are NaN or inf."""
    if not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf); re-export from a finite checkpoint")


def apply_input_affine(x, in_scale, in_bias, size):
    """x * in_scale + in_bias along x's last axis (x itself without an affine); ValueError unless both or neither
    are given, each with `size` finite values."""
    if (in_scale is None) != (in_bias is None):
        raise ValueError("in_scale and in_bias must be given together (or neither)")
    if in_scale is None:
        return x
    in_scale = np.asarray(in_scale, dtype=np.float64).reshape(-1)
    in_bias = np.asarray(in_bias, dtype=np.float64).reshape(-1)
    for name, value in (("in_scale", in_scale), ("in_bias", in_bias)):
        if value.shape != (size,):
            raise ValueError(f"{name} must have shape [{size}], got {list(value.shape)}")
        check_finite(name, value)
    return x * in_scale + in_bias


class GridTableOp(CustomOp):
    """A qonnx op evaluating its table(s) on the grid: inputs x, table[, in_scale, in_bias] -> float32."""

    TABLE_INPUT = "table"  # the table input's name in messages

    @staticmethod
    @abstractmethod
    def reference(x, table, in_scale=None, in_bias=None, **attributes):
        """The op's numpy reference (ValueError on bad input)."""

    @abstractmethod
    def reference_attributes(self) -> dict:
        """The node's attributes as the reference's keyword arguments."""

    def infer_node_datatype(self, model):
        """The output is float32."""
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        """The numpy reference on the node's inputs; a ValueError names the node."""
        node = self.onnx_node
        attributes = self.reference_attributes()
        in_scale, in_bias = [context[name] for name in node.input[2:4]] if len(node.input) == 4 else [None, None]
        try:
            context[node.output[0]] = self.reference(context[node.input[0]], context[node.input[1]],
                                                     in_scale=in_scale, in_bias=in_bias, **attributes)
        except ValueError as err:
            raise ValueError(f"{node.op_type} node '{node.name}': {err}") from err

    def verify_inputs_and_grid(self) -> list:
        """verify_node's messages on the input count and grid_range."""
        node = self.onnx_node
        where = f"{node.op_type} node '{node.name}'"
        if len(node.input) in (2, 4):
            messages = ["The number of inputs is correct"]
        else:
            messages = [f"{where} needs inputs (x, {self.TABLE_INPUT}) or (x, {self.TABLE_INPUT}, in_scale, in_bias), "
                        f"got {len(node.input)}"]
        try:
            grid_range = self.get_nodeattr(GRID_RANGE_ATTR)
        except Exception:
            messages.append(f"{where} lacks the required attribute {GRID_RANGE_ATTR}")
        else:
            try:
                check_grid_range(grid_range)
                messages.append("All necessary attributes exist")
            except ValueError as err:
                messages.append(f"{where}: {err}")
        return messages
