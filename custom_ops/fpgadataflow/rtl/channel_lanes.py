"""Geometry of a channel-wise streaming layer's generated hardware: NumChannels channels over PE lanes.

Lane p of fold step t carries channel t * PE + p (lane 0 in the least significant bits of TDATA); each word holds PE
codes in and PE codes out. The generators of PerChannelLUT and IntegerRequant extend it with their own fields.
"""

from dataclasses import dataclass

from psa_finn.custom_ops.fpgadataflow.rtl.verilog_text import stream_bits


@dataclass(frozen=True)
class ChannelLanes:
    """Channels, lanes, and the bit widths and signedness of the input and output codes."""

    num_channels: int
    pe: int
    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool

    layer = "channel-wise layer"  # the backend named in errors (a class attribute, not a field)

    def __post_init__(self):
        if self.pe < 1 or self.num_channels % self.pe != 0:
            raise ValueError(f"{self.layer}: PE={self.pe} must divide NumChannels={self.num_channels}")

    @classmethod
    def from_layer(cls, layer, **fields):
        """The geometry of a ChannelwiseLayer node (NumChannels, PE, input and output types) and `fields`."""
        idt, odt = layer.get_input_datatype(0), layer.get_output_datatype()
        return cls(num_channels=layer.get_nodeattr("NumChannels"), pe=layer.get_nodeattr("PE"),
                   in_bits=idt.bitwidth(), in_signed=idt.signed(), out_bits=odt.bitwidth(), out_signed=odt.signed(),
                   **fields)

    @property
    def tmem(self) -> int:
        """Channels per lane: cycles per input vector."""
        return self.num_channels // self.pe

    @property
    def in_stream_bits(self) -> int:
        """TDATA width of the input stream (byte aligned, as FINN pads it)."""
        return stream_bits(self.pe * self.in_bits)

    @property
    def out_stream_bits(self) -> int:
        """TDATA width of the output stream (byte aligned)."""
        return stream_bits(self.pe * self.out_bits)

    def lane_channels(self, lane: int) -> list:
        """Channel of each fold step t of a lane."""
        return [t * self.pe + lane for t in range(self.tmem)]
