"""FIFO depths from a cycle simulation of the dataflow (no Vivado): `size_fifo_depths(model, frames)`.

Method (docs/fifo_sizing.md):
1. Simulate `frames` frames with unbounded FIFOs, every event as early as it can (dataflow_sim.event_engine):
   the graph output's times are the fastest the layers allow (the "early" schedule).
2. Schedule every event as LATE as it can without delaying those output times (the same constraints, time
   reversed: the "late" schedule). A word then waits in a FIFO only as long as it must: at a fork
   (DuplicateStreams) until the slower branch takes it, before a layer that needs a whole tile, and so on.
3. The peak number of words each FIFO holds in the late schedule is a depth that provably loses nothing: the late
   schedule keeps every FIFO constraint with those depths, so the real (self-timed) execution, which starts each
   event as early as it can, is at least as fast. The late schedule parks words upstream of fast layers, the early
   one downstream of them; the smaller of the two peaks (at least MIN_DEPTH) is tried first and kept when a
   simulation with those depths still reaches the early schedule's period, deadlock-free; where it does not, the
   FIFOs that ran full get their late peak and the simulation runs again (REPAIR_ROUNDS times at most), and
   failing that every FIFO gets its late peak.
4. The execution with those depths (every event as early as it can, back-pressure included) holds each FIFO at
   most at its depth; its peaks are depths again that lose nothing (that execution keeps them), often smaller:
   repeated until they stay (SHRINK_ROUNDS at most).
build_configs.steps.step_size_fifos_by_simulation inserts the FIFOs and simulates the result again to confirm.
"""

from dataclasses import dataclass

import numpy as np

from psa_finn.dataflow_sim.dataflow_graph import SimulationResult, build_system, output_period, simulate
from psa_finn.dataflow_sim.event_engine import reversed_chains, solve

FIFO_SIZING_REPORT = "fifo_sizing_by_simulation.json"  # the sizing record in a build's report/ folder
MIN_DEPTH = 2  # finn-plus's smallest StreamingFIFO (InsertFIFO create_shallow_fifos); streams a word per cycle
REPAIR_ROUNDS = 8  # simulations that raise the FIFOs found full to their late peak, before all take it
SHRINK_ROUNDS = 4  # simulations that lower each depth to its peak in the execution with the depths before


class DataflowDeadlock(RuntimeError):
    """The simulated dataflow stalls for good: the message names the layers left waiting."""


@dataclass
class FifoSizing:
    """Depth per stream (Stream.key -> words), the unbounded simulation's period (cycles per frame) and which
    peaks gave the depths ("min(early, late)" or "late")."""

    depths: dict
    period_cycles: float
    frames: int
    streams: list
    rule: str


def peak_occupancy(write_times, read_times) -> int:
    """Smallest depth D with every write of word k no earlier than one cycle after the read of word k - D."""
    write_times, read_times = np.asarray(write_times), np.asarray(read_times)
    read_before = np.searchsorted(read_times, write_times, side="left")  # reads strictly before each write
    return int(np.max(np.arange(len(write_times)) - read_before + 1)) if len(write_times) else 0


def _peaks(system, times) -> dict:
    """Peak occupancy (at least MIN_DEPTH) of every stream between two layers in one schedule's `times`."""
    peaks = {}
    for stream in system.streams:
        if stream.producer is not None and stream.consumer is not None:
            writes = system.port_times(times, stream.producer, "out", stream.output_index)
            reads = system.port_times(times, stream.consumer, "in", stream.input_index)
            peaks[stream.key] = max(MIN_DEPTH, peak_occupancy(writes, reads))
    return peaks


def size_fifo_depths(model, frames: int = 4) -> FifoSizing:
    """Depth of every stream between two layers of `model` (a dataflow partition); see the module docstring."""
    system = build_system(model, frames)
    earliest = solve(system.chains)
    unbounded = SimulationResult(system, earliest, None)
    if not earliest.deadlock_free:
        raise DataflowDeadlock(f"the layers' own buffers deadlock even with unbounded FIFOs: "
                               f"{', '.join(earliest.deadlocked[:5])} wait")
    period = output_period(system, earliest)
    deadlines = {}
    for stream in system.streams:
        if stream.consumer is None:
            key = (stream.producer, "out", stream.output_index)
            chain, events = system.port_chains[key], system.port_events[key]
            deadlines[chain] = (events, earliest.times[chain][events])
    horizon = max(float(np.max(t)) for t in earliest.times.values() if len(t))
    turned = solve(reversed_chains(system.chains, horizon, deadlines))
    late = _peaks(system, {name: -times[::-1] for name, times in turned.times.items()})
    early = _peaks(system, earliest.times)
    depths = {key: min(depth, early[key]) for key, depth in late.items()}
    rule = "late"
    for _ in range(REPAIR_ROUNDS):
        trial = simulate(model, frames, depths, unbounded)
        if trial.deadlock_free and trial.period_cycles <= period:
            rule = "min(early, late)"
            break
        raised = {key: late[key] for key in _full_streams(trial, depths) if depths[key] < late[key]}
        if not raised:
            break
        depths.update(raised)
    if rule == "late":
        depths, trial = dict(late), simulate(model, frames, late, unbounded)
    # the real execution with these depths keeps every FIFO at or below its own peaks: those depths lose nothing
    for _ in range(SHRINK_ROUNDS):
        peaks = _peaks(trial.system, trial.schedule.times)
        if peaks == depths:
            break
        depths, trial = peaks, simulate(model, frames, peaks, unbounded)
    return FifoSizing(depths, period, frames, system.streams, rule)


def _full_streams(trial, depths) -> list:
    """Streams that were full at some point of `trial` (a slow or deadlocked simulation): the ones that held it up."""
    full = []
    for stream in trial.system.streams:
        if stream.key not in depths:
            continue
        writes, reads = trial.stream_times(stream)
        done_writes, done_reads = writes[np.isfinite(writes)], reads[np.isfinite(reads)]
        if not trial.deadlock_free:
            if len(done_writes) - len(done_reads) >= depths[stream.key]:
                full.append(stream.key)
        elif peak_occupancy(done_writes, done_reads) >= depths[stream.key]:
            full.append(stream.key)
    return full
