"""Resource model of a stream FIFO (StreamingFIFO_rtl, finn-rtllib fifo/hdl/fifo.sv).

`fifo_resources(depth, width_bits, impl_style, ram_style, fpgapart)` is the one function every psa-finn figure of
a FIFO comes from (the build summary, FIFO sizing). finn-plus carries a cost model of fifo.sv fitted against
out-of-context Vivado runs (`finn.util.resource_models`: the storage style fifo.sv elaborates, `_resolve`, and its
LUT / BRAM18 / URAM cost, `_fifo_cost`; tile counts exact, LUTs within a few percent by its own account); this
function applies it to a depth and width, so its basis is "finn-plus".
"""

from finn.util.basic import is_versal
from finn.util.resource_models import _fifo_cost, _resolve

FIFO_IMPL_STYLES = ("rtl", "virtual")
FIFO_RAM_STYLES = ("auto", "srl", "block", "distributed", "ultra")
FIFO_BASIS = "finn-plus"
DEFAULT_FPGA_PART = "xcu50-fsvh2104-2-e"


def fifo_ram_style(depth: int, width_bits: int, ram_style: str = "auto") -> str:
    """The storage fifo.sv builds for this depth, width and request: srl, distributed, block or ultra."""
    if ram_style not in FIFO_RAM_STYLES:
        raise ValueError(f"FIFO ram_style {ram_style!r}: expected one of {FIFO_RAM_STYLES}")
    return _resolve(int(depth), int(width_bits), ram_style)


def fifo_resources(depth: int, width_bits: int, impl_style: str = "rtl", ram_style: str = "auto",
                   fpgapart: str = DEFAULT_FPGA_PART) -> dict:
    """{lut, dsp, bram18, uram, ram_style} of one FIFO of `depth` words of `width_bits` (the padded stream width).

    impl_style "rtl": fifo.sv in the style `fifo_ram_style` resolves (depth <= 33 is always a shift register),
    costed by finn-plus's fitted `_fifo_cost` (Versal aspect ratios where `fpgapart` is Versal); depth < 2 holds
    nothing. impl_style "virtual": the FIFO gauge of live FIFO sizing keeps no data on chip, so 0 memory (its ring
    bus logic is a measurement fixture, not part of the design).
    """
    if impl_style not in FIFO_IMPL_STYLES:
        raise ValueError(f"FIFO impl_style {impl_style!r}: expected one of {FIFO_IMPL_STYLES}")
    depth, width_bits = int(depth), int(width_bits)
    if depth < 0 or width_bits < 0:
        raise ValueError(f"FIFO depth {depth} and width {width_bits} must not be negative")
    style = fifo_ram_style(depth, width_bits, ram_style)
    if impl_style == "virtual" or width_bits == 0:
        return {"lut": 0, "dsp": 0, "bram18": 0, "uram": 0, "ram_style": style}
    cost = _fifo_cost(depth, width_bits, style, is_versal(fpgapart))
    return {"lut": int(cost.lut), "dsp": 0, "bram18": int(cost.bram), "uram": int(cost.uram), "ram_style": style}


def streaming_fifo_resources(op, model, fpgapart) -> dict:
    """StreamingFIFO_rtl node: `fifo_resources` of its depth, padded stream width, impl_style and ram_style."""
    impl_style = op.get_nodeattr("impl_style") if "impl_style" in op.get_nodeattr_types() else "rtl"
    figures = fifo_resources(op.get_nodeattr("depth"), op.get_instream_width_padded(), impl_style,
                             op.get_nodeattr("ram_style"), fpgapart)
    return {key: figures[key] for key in ("lut", "dsp", "bram18", "uram")}
