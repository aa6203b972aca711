"""A ComposedTransformation that tidies the graph only after a step that changed it, every loop under a pass cap.

qonnx's `ComposedTransformation` runs, after EVERY transformation in its list, a deep copy and six clean-up passes
(cleanup, RemoveIdentityOps, GiveUniqueNodeNames, GiveReadableTensorNames, InferShapes, InferDataTypes), whether
that transformation changed the graph or not. FINN+'s StreamlinePlus nests ~45 transformations in such lists and
repeats the whole until nothing changes, so most of its minute goes to tidying graphs nothing touched. The clean-up
passes are idempotent, so skipping them after a transformation that reports no change, and tidying once on entry,
yields the same graph. `lean_composed(StreamlinePlus())` rebuilds a composed tree with this class, keeping FINN's
own lists of transformations.

Every loop runs under `transforms.fixed_point`'s caps: each part to its fixed point within `pass_cap(model)`
passes, the whole list within `COMPOSED_PASSES` rounds. Two parts that undo each other then end in a
`FixedPointNotReached` that names them and the nodes they changed in the last round, instead of a hang.
"""

import copy

from qonnx.transformation.composed import ComposedTransformation
from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.remove import RemoveIdentityOps

from psa_finn.transforms.fixed_point import apply_until_fixed, describe_changes, node_signatures, \
    transform_to_fixed_point, transformation_name

# Rounds of a whole list (each round runs every part to its fixed point); StreamlinePlus on the ResMLP needs 4.
COMPOSED_PASSES = 32


def _tidy(model):
    model.cleanup()
    for tidy in (RemoveIdentityOps(), GiveUniqueNodeNames(), GiveReadableTensorNames(), InferShapes(),
                 InferDataTypes()):
        model = model.transform(tidy)
    return model


class LeanComposedTransformation(ComposedTransformation):
    """ComposedTransformation that runs the clean-up passes only after a transformation that changed the graph."""

    max_passes = COMPOSED_PASSES

    def __init__(self, transformations):
        super().__init__(transformations)
        self.last_pass_changes = []
        self._tracing = False

    def trace_last_pass(self):
        """Record, during the next round, which part changed which nodes (read `last_pass_changes` after it)."""
        self._tracing = True
        self.last_pass_changes = []

    def apply(self, model):
        graph_modified = False
        for transformation in self.transformations:
            before = node_signatures(model) if self._tracing else None
            model, changed = apply_until_fixed(model, transformation)
            if changed:
                if self._tracing:
                    self.last_pass_changes.append(
                        (transformation_name(transformation), describe_changes(before, node_signatures(model))))
                model = _tidy(copy.deepcopy(model))
                graph_modified = True
        self._tracing = False
        return model, graph_modified


def lean_composed(transformation):
    """The same transformation tree with every ComposedTransformation replaced by a LeanComposedTransformation."""
    if isinstance(transformation, ComposedTransformation):
        return LeanComposedTransformation([lean_composed(t) for t in transformation.transformations])
    return transformation


def apply_lean(model, transformation):
    """Tidy the model once, then apply lean_composed(transformation) to its fixed point (capped)."""
    model = _tidy(copy.deepcopy(model))
    return transform_to_fixed_point(model, lean_composed(transformation))
