"""Pareto optimality over any number of objectives, each maximised or minimised."""

import math


def _comparable(value):
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def pareto_mask(points, senses) -> list:
    """For each point (a tuple of objective values), whether no other point dominates it.

    `senses` holds "max" or "min" per objective. A point dominates another when it is at least as good in every
    objective and better in one; equal points do not dominate each other (both stay on the front). A point with a
    missing (None or NaN) objective is never on the front and dominates nothing.
    """
    senses = tuple(senses)
    if any(sense not in ("max", "min") for sense in senses):
        raise ValueError(f"senses must be 'max' or 'min', got {senses}")
    signed = []
    for point in points:
        if len(point) != len(senses):
            raise ValueError(f"point {point} has {len(point)} objectives, senses {len(senses)}")
        signed.append(tuple(v if s == "max" else -v for v, s in zip(point, senses))
                      if all(_comparable(v) for v in point) else None)

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [p is not None and not any(q is not None and dominates(q, p) for q in signed) for p in signed]
