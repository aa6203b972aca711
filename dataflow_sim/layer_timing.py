"""`LayerTiming`: when one hardware layer reads and writes each folded word of one frame (its stream behaviour).

A layer is one or more chains of events (dataflow_sim.event_engine): a plain streaming layer is one chain, one
event per word, that reads word e of each input and writes word e of each output; a buffering layer (a transpose,
a matrix-vector unit with its replay buffer) has a read chain and a write/compute chain joined by internal links.
Everything is given for ONE frame; `frames` copies of it run back to back (dataflow_sim.dataflow_graph), so an
internal link may point into an earlier frame with a negative source event (`earlier_frame`).
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StreamPort:
    """The events of `chain` that move the words of one stream: word k of a frame at event `events[k]`."""

    chain: str
    events: np.ndarray


@dataclass
class InternalLink:
    """Event e of `chain` waits `delay` cycles after event `source_events[e]` of `source` (same frame; negative:
    an earlier frame, see `earlier_frame`; an event before the first frame: no wait)."""

    chain: str
    source: str
    source_events: np.ndarray
    delay: int = 1


NO_WAIT = -(2 ** 40)  # an InternalLink source event before any frame: the event does not wait


@dataclass
class LayerTiming:
    """Chains (name -> per-frame gaps), internal links, and the ports of each input and output stream, in the
    order of the node's dynamic inputs and its outputs. `basis` says what the model rests on (for the docs/reports).
    """

    chains: dict = field(default_factory=dict)
    links: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    basis: str = ""

    def cycles_per_frame(self) -> int:
        """Cycles one frame takes when nothing stalls: the longest chain's gaps summed."""
        return int(max(int(np.sum(g)) for g in self.chains.values()))


def earlier_frame(events, events_per_frame):
    """Events of an earlier frame (given as indices into that frame) as the negative offsets InternalLink takes."""
    return np.asarray(events, dtype=np.int64) - int(events_per_frame)


def streaming(words: int, num_inputs: int = 1, num_outputs: int = 1, basis: str = "") -> LayerTiming:
    """One chain, one event per cycle: event k reads word k of every input and writes word k of every output."""
    events = np.arange(words, dtype=np.int64)
    return LayerTiming({"main": np.ones(words, dtype=np.int64)}, [],
                       [StreamPort("main", events) for _ in range(num_inputs)],
                       [StreamPort("main", events) for _ in range(num_outputs)], basis)
