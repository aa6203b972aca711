"""Sized StreamingFIFOs into a dataflow partition: `insert_sized_fifos(model, fpgapart, clock_ns, frames)`.

finn's InsertDWC and SpecializeLayers first (the width converters are layers the simulation must see), then
`fifo_sizing.size_fifo_depths`, each layer's `outFIFODepths` / `inFIFODepths` entry of a sized stream, finn's
InsertFIFO and SpecializeLayers (StreamingFIFO_rtl; a stream of depth MIN_DEPTH = 2 stays a direct connection, as
InsertFIFO leaves it: the layers' own stream registers hold that much), the large FIFOs' memory style as
finn-plus's step_set_fifo_depths applies `large_fifo_mem_style`, and a simulation of the result with its FIFO
nodes (direct connections at depth 2). Returns the model and the record (summary.json `fifo_sizing`).
"""

import time

from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import GiveUniqueNodeNames

from psa_finn.custom_ops.domain import is_hw_node
from psa_finn.dataflow_sim.dataflow_graph import simulate
from psa_finn.dataflow_sim.fifo_sizing import MIN_DEPTH, size_fifo_depths

AUTO_MEM_STYLE = "auto"


def set_stream_depths(model, depths: dict):
    """Each HW layer's outFIFODepths / inFIFODepths entry of a sized stream (keyed by the stream's tensor; InsertFIFO
    takes the larger of the two ends); other streams MIN_DEPTH."""
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        op = getCustomOp(node)
        if "outFIFODepths" not in op.get_nodeattr_types():
            continue
        op.set_nodeattr("outFIFODepths", [int(depths.get(t, MIN_DEPTH)) for t in node.output])
        op.set_nodeattr("inFIFODepths", [int(depths.get(t, MIN_DEPTH)) for t in node.input] or [MIN_DEPTH])
    return model


def insert_sized_fifos(model, fpgapart: str, clock_ns: float, frames: int, large_fifo_mem_style=AUTO_MEM_STYLE):
    """(model with sized StreamingFIFO_rtl nodes, record); see the module docstring."""
    seconds = {}
    started = time.time()
    model = model.transform(InsertDWC())
    model = model.transform(SpecializeLayers(fpgapart))
    model = model.transform(GiveUniqueNodeNames())
    seconds["width_converters"] = time.time() - started
    mark = time.time()
    sizing = size_fifo_depths(model, frames)
    seconds["sizing"] = time.time() - mark
    mark = time.time()
    model = set_stream_depths(model, sizing.depths)
    model = model.transform(InsertFIFO(create_shallow_fifos=False))
    model = model.transform(SpecializeLayers(fpgapart))
    model = model.transform(GiveUniqueNodeNames())
    if large_fifo_mem_style != AUTO_MEM_STYLE:
        for node in model.get_nodes_by_op_type("StreamingFIFO_rtl"):
            op = getCustomOp(node)
            if op.get_nodeattr("ram_style") == "auto" and op.resolve_ram_style() in ("block", "ultra"):
                op.set_nodeattr("ram_style", large_fifo_mem_style)
    seconds["insertion"] = time.time() - mark
    mark = time.time()
    check = simulate(model, frames, direct_depth=MIN_DEPTH)
    seconds["confirmation"] = time.time() - mark
    record = {
        "method": "cycle simulation",
        "frames": frames,
        "simulated_fps": None if check.period_cycles is None else 1e9 / (clock_ns * check.period_cycles),
        "deadlock_free": check.deadlock_free,
        "seconds": round(time.time() - started, 2),
        "depth_rule": sizing.rule,
        "period_cycles": check.period_cycles,
        "unbounded_period_cycles": sizing.period_cycles,
        "phase_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "waiting": check.schedule.deadlocked[:5],
    }
    return model, record
