"""Where the channels of a tensor are, and how table-space arrays [K, C] (K inputs of each of C channels) map onto
a tensor of that rank: K along the first axis that is not the channel axis, C along the channel axis, every other
axis of size 1. So per-channel constants of the graph (shape [C] on the channel axis, broadcast like numpy) meet
their channel when the graph's nodes execute on such a tensor.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class ChannelGeometry:
    """A tensor's shape and channel axis (None: per tensor, one channel)."""

    shape: list
    axis: int

    @property
    def channels(self) -> int:
        """C: the size of the channel axis (1 per tensor)."""
        return 1 if self.axis is None else self.shape[self.axis]

    def to_tensor(self, values):
        """Table-space values [K, C] as a tensor of this rank: K on the first other axis, C on the channel axis."""
        rank = len(self.shape)
        if self.axis is None:
            return values[:, 0].reshape([-1] + [1] * (rank - 1))
        spread = values.reshape(list(values.shape) + [1] * (rank - 2))
        return np.moveaxis(spread, [0, 1], [self._row_axis(), self.axis])

    def from_tensor(self, tensor):
        """Inverse of `to_tensor`."""
        if self.axis is None:
            return tensor.reshape(-1, 1)
        moved = np.moveaxis(tensor, [self._row_axis(), self.axis], [0, 1])
        return moved.reshape(moved.shape[0], moved.shape[1])

    def _row_axis(self):
        return 1 if self.axis == 0 else 0

    def per_channel(self, value):
        """A constant that varies at most along the channel axis, as [] or [C] (right-aligned broadcasting)."""
        value = np.asarray(value)
        return value.reshape(()) if value.size == 1 else value.reshape(-1)

    def parameter(self, value):
        """A [] or [C] parameter as an initializer of full rank that broadcasts along the channel axis."""
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 0 or self.axis is None:
            return value.reshape(())
        shape = [1] * len(self.shape)
        shape[self.axis] = value.size
        return value.reshape(shape)

    def data_layout(self):
        """qonnx MultiThreshold data_layout with 'C' on the channel axis (e.g. NCHW, NHWC, NC, NCW, NWC)."""
        rank = len(self.shape)
        letters = list("N" + ("DHW"[5 - rank:] if rank <= 5 else "X" * (rank - 2)))
        letters.insert(self.axis, "C")
        return "".join(letters)
