"""Apply a transformation until it reports no change, at most a capped number of passes: never a hang.

`ModelWrapper.transform` repeats `transformation.apply` while it reports a change, with no limit. Two rewrites
that undo each other (e.g. finn's FactorOutMulSignMagnitude and CollapseRepeatedMul on a per-channel +-scale Mul
that nothing absorbs) then loop forever. `transform_to_fixed_point` is the same loop under a cap of
`pass_cap(model)` passes (a few per node: a transformation that makes one change per pass still reaches its fixed
point); past it, `FixedPointNotReached` names the transformation and the nodes its last pass changed.
"""

import copy

from qonnx.transformation.double_to_single_float import DoubleToSingleFloat


class FixedPointNotReached(RuntimeError):
    """A transformation still changed the graph after its pass cap: it loops (names it and the nodes it changed)."""


BASE_PASSES = 64
PASSES_PER_NODE = 4


def pass_cap(model):
    """How many passes a transformation gets on `model`: BASE_PASSES + PASSES_PER_NODE per node."""
    return BASE_PASSES + PASSES_PER_NODE * len(model.graph.node)


def transformation_name(transformation):
    """The class name of a transformation (what a user finds in finn's or qonnx's source); a list by its parts."""
    parts = getattr(transformation, "transformations", None)
    if parts is None:
        return type(transformation).__name__
    names = [transformation_name(part) for part in parts[:3]]
    return f"the list [{', '.join(names)}{', ...' if len(parts) > 3 else ''}]"


def node_signatures(model):
    """{(op_type, name, inputs, outputs)} of every node: two graphs differ where these sets differ."""
    return {(n.op_type, n.name, tuple(n.input), tuple(n.output)) for n in model.graph.node}


def describe_changes(before, after):
    """The nodes of `after` that are not in `before`, as "name (op_type)" (unnamed: by output tensor)."""
    changed = sorted(after - before, key=lambda s: (s[1] or s[3][0], s[0]))
    return [f"{name or 'output ' + outputs[0]} ({op_type})" for op_type, name, _, outputs in changed] or \
        ["no node differs after the pass: the pass undoes its own changes"]


def apply_until_fixed(model, transformation, max_passes=None):
    """Apply `transformation` (no deep copy, no clean-up) until it reports no change; (model, changed at all).

    The cap: `max_passes`, else the transformation's own `max_passes` attribute, else `pass_cap(model)`.
    Before the last allowed pass, a transformation with `trace_last_pass()` (a composed one) is told to record
    what each of its parts changes; past the cap, FixedPointNotReached names the transformation and those nodes.
    """
    if max_passes is None:
        max_passes = getattr(transformation, "max_passes", None) or pass_cap(model)
    changed_at_all = False
    for index in range(max_passes):
        last = index == max_passes - 1
        if last and hasattr(transformation, "trace_last_pass"):
            transformation.trace_last_pass()
        before = node_signatures(model) if last else None
        model, changed = transformation.apply(model)
        if not changed:
            return model, changed_at_all
        changed_at_all = True
    details = getattr(transformation, "last_pass_changes", None) or \
        [(transformation_name(transformation), describe_changes(before, node_signatures(model)))]
    raise FixedPointNotReached(
        f"{transformation_name(transformation)} did not reach a fixed point: it still changed the graph after "
        f"{max_passes} passes (rewrites that undo each other); its last pass changed "
        + "; ".join(f"{name}: {', '.join(nodes)}" for name, nodes in details))


def transform_to_fixed_point(model, transformation, max_passes=None, cleanup=True):
    """`model.transform(transformation)` under a pass cap: a deep copy transformed to its fixed point, cleaned up."""
    model = copy.deepcopy(model)
    if model.fix_float64:
        model, _ = DoubleToSingleFloat().apply(model)
    model, _ = apply_until_fixed(model, transformation, max_passes)
    if cleanup:
        model.cleanup()
    return model
