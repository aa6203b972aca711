"""The StreamingFIFO nodes of a model as records, with their resource estimates (basis finn-plus).

`fifo_table(model, fpgapart)` -> [{name, depth, width_bits (padded stream width), lut, bram18, uram, ram_style,
impl_style, producer, consumer}] in graph order. lut / bram18 / uram / ram_style come from
`analysis.resources.fifo.fifo_resources`, the one FIFO resource model (finn-plus's fitted cost model of finn-rtllib
fifo.sv for the storage style the RTL picks at that depth and width), as in the summary's `layers`. producer /
consumer: the layers on either side ("global_in" / "global_out" at the graph's edges).
"""

from qonnx.custom_op.registry import getCustomOp

from psa_finn.analysis.resources.fifo import fifo_resources
from psa_finn.dataflow_sim.stream_models import layer_kind

FIFO_KIND = "StreamingFIFO"


def _neighbour(model, tensor, upstream):
    """The first non-FIFO layer up or down the stream from `tensor`, or the graph edge."""
    while True:
        node = model.find_producer(tensor) if upstream else model.find_consumer(tensor)
        if node is None:
            return "global_in" if upstream else "global_out"
        if layer_kind(node.op_type) != FIFO_KIND:
            return node.name
        tensor = node.input[0] if upstream else node.output[0]


def fifo_table(model, fpgapart: str) -> list:
    """One record per StreamingFIFO node of `model` (see the module docstring)."""
    records = []
    for node in model.graph.node:
        if layer_kind(node.op_type) != FIFO_KIND:
            continue
        op = getCustomOp(node)
        impl_style = op.get_nodeattr("impl_style") if "impl_style" in op.get_nodeattr_types() else "rtl"
        depth, width = int(op.get_nodeattr("depth")), int(op.get_instream_width_padded())
        figures = fifo_resources(depth, width, impl_style, op.get_nodeattr("ram_style"), fpgapart)
        records.append({
            "name": node.name,
            "depth": depth,
            "width_bits": width,
            **{key: figures[key] for key in ("lut", "bram18", "uram", "ram_style")},
            "impl_style": impl_style,
            "producer": _neighbour(model, node.input[0], upstream=True),
            "consumer": _neighbour(model, node.output[0], upstream=False),
        })
    return records
