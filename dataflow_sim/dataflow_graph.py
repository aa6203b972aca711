"""A finn-plus dataflow model as event chains: every HW layer's stream model, `frames` frames back to back, joined
by its streams; `simulate` runs it (dataflow_sim.event_engine) and reads throughput and stream timing off it.

Streams: each edge producer output -> consumer input is a FIFO. Its depth is the depth of the StreamingFIFO
node(s) on it (summed when several are chained), or the depth given in `depths` ({Stream.key: words}), or
`direct_depth` (a direct connection: 2 words, the output register and input skid of the layers), or unbounded
(no back-pressure) when none is given. A write of word k waits for the read of word k - depth (one cycle
later); a read of word k waits for its write (one cycle later), so depth 2 streams at one word per cycle.
The graph input is always ready (a host or DMA that keeps up), the graph output always accepts.
"""

from dataclasses import dataclass, field

import numpy as np
from qonnx.custom_op.registry import getCustomOp

from psa_finn.dataflow_sim.event_engine import NO_EVENT, Chain, Link, Schedule, relax, solve
from psa_finn.dataflow_sim.stream_models import dynamic_inputs, layer_kind, stream_model_of

FIFO_KIND = "StreamingFIFO"


@dataclass
class Stream:
    """One edge between two layers (or a layer and a graph input/output: producer/consumer None), through the
    StreamingFIFO nodes `fifos` (names) of total depth `fifo_depth` (None: no FIFO node)."""

    producer: str | None
    output_index: int
    consumer: str | None
    input_index: int
    tensor: str
    fifos: list = field(default_factory=list)
    fifo_depth: int | None = None

    @property
    def key(self) -> str:
        """The producer's output tensor: the name the stream has before any FIFO is inserted into it."""
        return self.tensor


@dataclass
class DataflowSystem:
    """The chains of a model over `frames` frames, its layers' timings and its streams."""

    chains: dict
    timings: dict
    streams: list
    frames: int
    port_events: dict  # (node, "in"|"out", index) -> global event indices of the port's words, all frames
    port_chains: dict  # (node, "in"|"out", index) -> the chain that moves them

    def port_times(self, times: dict, node, direction, index):
        """Times (from a schedule's `times`) of every word of one port over all frames."""
        key = (node, direction, index)
        return times[self.port_chains[key]][self.port_events[key]]


@dataclass
class SimulationResult:
    """Times of every event, throughput and the deadlock verdict of one simulation."""

    system: DataflowSystem
    schedule: object
    period_cycles: float | None  # cycles between the last two frames' outputs (None: deadlock)

    @property
    def deadlock_free(self) -> bool:
        return self.schedule.deadlock_free

    def stream_times(self, stream):
        """(write times, read times) of every word of `stream` over all frames (NaN: never; None: graph edge)."""
        times, system = self.schedule.times, self.system
        write = None if stream.producer is None else system.port_times(times, stream.producer, "out",
                                                                        stream.output_index)
        read = None if stream.consumer is None else system.port_times(times, stream.consumer, "in",
                                                                       stream.input_index)
        return write, read


def _streams(model):
    """Every stream of the model, StreamingFIFO nodes folded into the stream they sit on."""
    producers = {out: (node, i) for node in model.graph.node for i, out in enumerate(node.output)}
    outputs = {o.name for o in model.graph.output}
    streams = []
    for node in model.graph.node:
        if layer_kind(node.op_type) == FIFO_KIND:
            continue
        for index in dynamic_inputs(node, model):
            tensor, fifos, depth = node.input[index], [], 0
            while tensor in producers and layer_kind(producers[tensor][0].op_type) == FIFO_KIND:
                fifo = producers[tensor][0]
                fifos.insert(0, fifo.name)
                depth += int(getCustomOp(fifo).get_nodeattr("depth"))
                tensor = fifo.input[0]
            producer, out_index = producers.get(tensor, (None, 0))
            streams.append(Stream(producer.name if producer else None, out_index, node.name, index, tensor, fifos,
                                  depth if fifos else None))
        for out_index, tensor in enumerate(node.output):
            end, fifos = tensor, []
            consumers = model.find_consumers(end)
            while consumers and layer_kind(consumers[0].op_type) == FIFO_KIND:
                fifos.append(consumers[0].name)
                end = consumers[0].output[0]
                consumers = model.find_consumers(end)
            if end in outputs:
                streams.append(Stream(node.name, out_index, None, 0, tensor, fifos, None))
    return streams


def build_system(model, frames: int, depths: dict | None = None, timings: dict | None = None,
                 direct_depth: int | None = None) -> DataflowSystem:
    """The event chains of `model` (a dataflow partition: HW layers only) over `frames` frames (`timings`: the
    layers' LayerTimings of an earlier build_system of the same model, to skip the stream models; `direct_depth`:
    the depth of a stream without a StreamingFIFO node and without an entry in `depths`, None: unbounded)."""
    if frames < 2:
        raise ValueError(f"frames must be at least 2 to measure a period, got {frames}")
    depths = depths or {}
    layers = [n for n in model.graph.node if layer_kind(n.op_type) != FIFO_KIND]
    timings = timings or {node.name: stream_model_of(node, model) for node in layers}
    chains, port_events = {}, {}
    for node in layers:
        timing = timings[node.name]
        lengths = {c: len(g) for c, g in timing.chains.items()}
        for chain, gaps in timing.chains.items():
            chains[f"{node.name}/{chain}"] = Chain(f"{node.name}/{chain}", np.tile(np.asarray(gaps, np.int64), frames))
        for link in timing.links:
            n_src = lengths[link.source]
            offsets = np.repeat(np.arange(frames) * n_src, lengths[link.chain])
            events = np.tile(np.asarray(link.source_events, np.int64), frames) + offsets
            chains[f"{node.name}/{link.chain}"].links.append(
                Link(f"{node.name}/{link.source}", np.where(events >= 0, events, NO_EVENT), link.delay))
        for direction, ports in (("in", timing.inputs), ("out", timing.outputs)):
            for index, port in enumerate(ports):
                offsets = np.repeat(np.arange(frames) * lengths[port.chain], len(port.events))
                port_events[(node.name, direction, index)] = np.tile(np.asarray(port.events, np.int64), frames) \
                    + offsets
    streams = _streams(model)
    system = DataflowSystem(chains, timings, streams, frames, {}, {})
    # a node's in ports are numbered by the node's input index (its stream model numbers only the streamed ones)
    for node in layers:
        streamed = dynamic_inputs(node, model)
        if len(timings[node.name].inputs) != len(streamed) or len(timings[node.name].outputs) != len(node.output):
            raise ValueError(f"{node.name} ({node.op_type}): its stream model has {len(timings[node.name].inputs)} "
                             f"inputs and {len(timings[node.name].outputs)} outputs, the node {len(streamed)} "
                             f"streamed inputs and {len(node.output)} outputs")
        for position, index in enumerate(streamed):
            system.port_events[(node.name, "in", index)] = port_events[(node.name, "in", position)]
            system.port_chains[(node.name, "in", index)] = f"{node.name}/{timings[node.name].inputs[position].chain}"
        for index in range(len(node.output)):
            system.port_events[(node.name, "out", index)] = port_events[(node.name, "out", index)]
            system.port_chains[(node.name, "out", index)] = f"{node.name}/{timings[node.name].outputs[index].chain}"
    for stream in streams:
        if stream.producer is None or stream.consumer is None:
            continue
        writes = system.port_events[(stream.producer, "out", stream.output_index)]
        reads = system.port_events[(stream.consumer, "in", stream.input_index)]
        if len(writes) != len(reads):
            raise ValueError(f"stream {stream.tensor}: {stream.producer} writes {len(writes) // frames} words per "
                             f"frame, {stream.consumer} reads {len(reads) // frames}")
        producer_chain = system.port_chains[(stream.producer, "out", stream.output_index)]
        consumer_chain = system.port_chains[(stream.consumer, "in", stream.input_index)]
        waits = np.full(len(chains[consumer_chain].gaps), NO_EVENT, dtype=np.int64)
        waits[reads] = writes
        chains[consumer_chain].links.append(Link(producer_chain, waits, 1))
        depth = stream.fifo_depth if stream.fifo_depth is not None else depths.get(stream.key, direct_depth)
        if depth is not None:
            depth = int(depth)
            if depth < 1:
                raise ValueError(f"stream {stream.tensor}: FIFO depth {depth} holds no word")
            space = np.full(len(chains[producer_chain].gaps), NO_EVENT, dtype=np.int64)
            space[writes[depth:]] = reads[:-depth]
            chains[producer_chain].links.append(Link(consumer_chain, space, 1))
    return system


def output_period(system: DataflowSystem, schedule) -> float | None:
    """Cycles between the completion of the last two frames at the graph output(s) (the steady-state period)."""
    if not schedule.deadlock_free:
        return None
    periods = []
    for stream in system.streams:
        if stream.consumer is None:
            times = system.port_times(schedule.times, stream.producer, "out", stream.output_index)
            per_frame = len(times) // system.frames
            ends = times[per_frame - 1::per_frame]
            periods.append(float(ends[-1] - ends[-2]))
    return max(periods)


RELAX_SWEEPS = 200


def simulate(model, frames: int = 4, depths: dict | None = None, unbounded=None,
             direct_depth: int | None = None) -> SimulationResult:
    """Self-timed execution of `frames` frames of `model` with its FIFO depths (or `depths`, or `direct_depth`
    where a stream has neither, or unbounded).

    The schedule without back-pressure (`solve`, fast: chains advance in long chunks; or `unbounded`, an earlier
    SimulationResult of the same model and frames without depths) is raised by whole-chain sweeps (`relax`) to the
    one with it; where that does not settle in RELAX_SWEEPS sweeps, `solve` of the bounded system decides (exact,
    deadlocks included, slower where small FIFOs couple layers word by word).
    """
    if unbounded is None:
        free = build_system(model, frames)
        unbounded = SimulationResult(free, solve(free.chains), None)
    system = build_system(model, frames, depths, unbounded.system.timings, direct_depth)
    schedule = Schedule({name: times.copy() for name, times in unbounded.schedule.times.items()},
                        unbounded.schedule.deadlocked)
    if schedule.deadlock_free and relax(system.chains, schedule.times, RELAX_SWEEPS) is not None:
        return SimulationResult(system, schedule, output_period(system, schedule))
    schedule = solve(system.chains)
    return SimulationResult(system, schedule, output_period(system, schedule))
