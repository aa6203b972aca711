"""The earliest schedule of a set of event chains joined by links: the self-timed execution of a dataflow design.

A *chain* is one sequential process of a layer (its read side, its compute loop, its write side): events
0..N-1 in order, event e at least `gaps[e]` cycles after event e-1 (event 0 at least gaps[0] cycles after time 0).
A *link* says that event e of its chain happens at least `delay` cycles after event `source_events[e]` of another
chain (-1: no constraint); a stream FIFO is two links (a read waits for its word's write; with a finite depth D a
write waits for the read of the word D places earlier), a layer's internal buffer a few more.

`solve(system)` computes the least times satisfying every constraint, which is what hardware that starts every
event as soon as it can does, cycle for cycle. It is Kahn's algorithm over events, run in vectorised chunks: a chain
advances over the prefix of its events whose sources are done (times by a running maximum), and waits for the
chain that blocks it. Every constraint points to an earlier time, so a chain can stall only on a cycle of waits: that
is a deadlock, reported with the chains that wait (`Schedule.deadlocked`). Cost: O(events) plus a few numpy calls
per chunk; each chunk advances a chain by at least one event, so the loop ends.
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np

NO_EVENT = -1


@dataclass
class Link:
    """Event e of the chain owning this link waits `delay` cycles after event `source_events[e]` of `source`."""

    source: str
    source_events: np.ndarray  # int64 [N of the owning chain], NO_EVENT where event e does not wait
    delay: int = 1


@dataclass
class Chain:
    """One sequential process: `gaps[e]` >= 0 cycles between event e-1 and e (event 0: after `start`);
    `release[e]`: earliest time of event e (or None)."""

    name: str
    gaps: np.ndarray
    links: list = field(default_factory=list)
    release: np.ndarray | None = None
    start: float = 0.0


@dataclass
class Schedule:
    """Event times per chain (float, NaN where never reached) and the chains left waiting (empty: no deadlock)."""

    times: dict
    deadlocked: list

    @property
    def deadlock_free(self) -> bool:
        return not self.deadlocked


def _monotone(source_events):
    """The same constraints with every entry at least the one before (chain order implies the earlier ones)."""
    return np.maximum.accumulate(np.asarray(source_events, dtype=np.int64))


SCALAR_CHUNK = 16  # chunks up to this many events run as a plain loop (numpy's call overhead dominates there)


def _advance_vector(times, name, start, stop, cum_gaps, release, links, carry):
    """Times of events start..stop-1 of chain `name` (all their sources done): a running maximum."""
    cg = cum_gaps[start:stop]
    ready = np.full(stop - start, -np.inf) if release is None else release[start:stop].astype(np.float64)
    for source, events, delay in links:
        sources = events[start:stop]
        waits = sources >= 0
        if waits.any():
            ready[waits] = np.maximum(ready[waits], times[source][sources[waits]] + delay)
    running = np.maximum.accumulate(np.maximum(ready - cg, carry[name]))
    times[name][start:stop] = running + cg
    carry[name] = float(running[-1])


def _advance_scalar(times, name, start, stop, cum_gaps, release, links, carry):
    """`_advance_vector` event by event."""
    own, running = times[name], carry[name]
    for e in range(start, stop):
        cg = cum_gaps[e]
        ready = -np.inf if release is None else release[e]
        for source, events, delay in links:
            f = events[e]
            if f >= 0:
                t = times[source][f] + delay
                if t > ready:
                    ready = t
        if ready - cg > running:
            running = ready - cg
        own[e] = running + cg
    carry[name] = float(running)


def solve(chains: dict) -> Schedule:
    """Earliest times of every event of `chains` ({name: Chain}); see the module docstring."""
    names = list(chains)
    cum_gaps = {n: np.cumsum(np.asarray(chains[n].gaps, dtype=np.float64)) for n in names}
    links = {n: [(link.source, _monotone(link.source_events), float(link.delay)) for link in chains[n].links]
             for n in names}
    for n in names:
        for source, events, _ in links[n]:
            if source not in chains:
                raise KeyError(f"chain {n} links to unknown chain {source}")
            if len(events) != len(cum_gaps[n]):
                raise ValueError(f"chain {n}: a link from {source} has {len(events)} entries for "
                                 f"{len(cum_gaps[n])} events")
            if len(events) and events[-1] >= len(cum_gaps[source]):
                raise ValueError(f"chain {n} waits for event {events[-1]} of {source}, which has "
                                 f"{len(cum_gaps[source])}")
    times = {n: np.full(len(cum_gaps[n]), np.nan) for n in names}
    done = dict.fromkeys(names, 0)
    # U = T - cumulative gaps is a running maximum along a chain; `carry` is its value after the done prefix
    carry = {n: float(chains[n].start) for n in names}
    waiters = {n: set() for n in names}
    queue, queued = deque(names), set(names)
    while queue:
        name = queue.popleft()
        queued.discard(name)
        start, total = done[name], len(cum_gaps[name])
        if start == total:
            continue
        stop, blocker = total, None
        for source, events, _ in links[name]:
            limit = int(np.searchsorted(events, done[source], side="left"))
            if limit < stop:
                stop, blocker = limit, source
        if stop > start:
            if stop - start <= SCALAR_CHUNK:
                _advance_scalar(times, name, start, stop, cum_gaps[name], chains[name].release, links[name], carry)
            else:
                _advance_vector(times, name, start, stop, cum_gaps[name], chains[name].release, links[name], carry)
            done[name] = stop
            for waiter in waiters[name]:
                if waiter not in queued:
                    queue.append(waiter)
                    queued.add(waiter)
            waiters[name].clear()
        if done[name] < total:
            waiters[blocker].add(name)
    deadlocked = [n for n in names if done[n] < len(cum_gaps[n])]
    return Schedule(times, deadlocked)


def reversed_chains(chains: dict, horizon: float, deadlines: dict) -> dict:
    """The time-reversed system (t -> -t, every chain and link turned round), for as-late-as-possible schedules.

    `solve` of the result gives -T_latest: the latest times that keep every constraint, no event after
    `horizon`, and the events named in `deadlines` ({chain: (event indices, latest times)}) no later than those.
    """
    turned = {}
    for name, chain in chains.items():
        n = len(chain.gaps)
        gaps = np.concatenate([[0], np.asarray(chain.gaps, dtype=np.int64)[:0:-1]]) if n else np.zeros(0, np.int64)
        release = np.full(n, -float(horizon))
        if name in deadlines:
            events, latest = deadlines[name]
            release[n - 1 - np.asarray(events)] = np.maximum(release[n - 1 - np.asarray(events)], -latest)
        turned[name] = Chain(name, gaps, [], release, start=-np.inf)
    for name, chain in chains.items():
        n = len(chain.gaps)
        for link in chain.links:
            events = _monotone(link.source_events)
            m = len(chains[link.source].gaps)
            hit = events >= 0
            # each source event f waits (in reverse) for the first event e of `name` that waited for it
            first = np.full(m, NO_EVENT, dtype=np.int64)
            targets = np.flatnonzero(hit)
            sources = events[targets]
            unique_sources, first_index = np.unique(sources, return_index=True)
            first[unique_sources] = targets[first_index]
            turned_sources = np.where(first >= 0, n - 1 - first, NO_EVENT)[::-1].copy()
            turned[link.source].links.append(Link(name, turned_sources, link.delay))
    return turned


def relax(chains: dict, times: dict, max_sweeps: int) -> int | None:
    """Raise `times` (a lower bound, e.g. the schedule without back-pressure) in place to the least times that keep
    every constraint, by whole-chain sweeps in the dict's order; the number of sweeps, or None when `max_sweeps`
    did not reach it (then `solve` decides: a deadlock, or slow convergence)."""
    prepared = []
    for name, chain in chains.items():
        cg = np.cumsum(np.asarray(chain.gaps, dtype=np.float64))
        links = []
        for link in chain.links:
            events = _monotone(link.source_events)
            waits = np.flatnonzero(events >= 0)
            links.append((link.source, waits, events[waits], float(link.delay)))
        base = np.full(len(cg), -np.inf) if chain.release is None else chain.release.astype(np.float64)
        prepared.append((name, cg, links, base, float(chain.start)))
    for sweep in range(1, max_sweeps + 1):
        changed = False
        for name, cg, links, base, start in prepared:
            ready = base.copy()
            for source, waits, sources, delay in links:
                ready[waits] = np.maximum(ready[waits], times[source][sources] + delay)
            new = np.maximum.accumulate(np.maximum(ready - cg, start)) + cg
            if not np.array_equal(new, times[name]):
                changed = True
                times[name] = new
        if not changed:
            return sweep
    return None
