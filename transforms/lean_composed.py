"""A ComposedTransformation that tidies the graph only after a step that changed it; same result, much less work.

qonnx's `ComposedTransformation` runs, after EVERY transformation in its list, a deep copy and six clean-up passes
(cleanup, RemoveIdentityOps, GiveUniqueNodeNames, GiveReadableTensorNames, InferShapes, InferDataTypes), whether
that transformation changed the graph or not. FINN+'s StreamlinePlus nests ~45 transformations in such lists and
repeats the whole until nothing changes, so most of its minute goes to tidying graphs nothing touched. The clean-up
passes are idempotent, so skipping them after a transformation that reports no change, and tidying once on entry,
yields the same graph. `lean_composed(StreamlinePlus())` rebuilds a composed tree with this class, keeping FINN's
own lists of transformations.
"""

import copy

from qonnx.transformation.composed import ComposedTransformation
from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.remove import RemoveIdentityOps


def _tidy(model):
    model.cleanup()
    for tidy in (RemoveIdentityOps(), GiveUniqueNodeNames(), GiveReadableTensorNames(), InferShapes(),
                 InferDataTypes()):
        model = model.transform(tidy)
    return model


class LeanComposedTransformation(ComposedTransformation):
    """ComposedTransformation that runs the clean-up passes only after a transformation that changed the graph."""

    def apply(self, model):
        graph_modified = False
        for transformation in self.transformations:
            changed = False
            while True:
                model, step_changed = transformation.apply(model)
                if not step_changed:
                    break
                changed = True
            if changed:
                model = _tidy(copy.deepcopy(model))
                graph_modified = True
        return model, graph_modified


def lean_composed(transformation):
    """The same transformation tree with every ComposedTransformation replaced by a LeanComposedTransformation."""
    if isinstance(transformation, ComposedTransformation):
        return LeanComposedTransformation([lean_composed(t) for t in transformation.transformations])
    return transformation


def apply_lean(model, transformation):
    """Tidy the model once, then apply lean_composed(transformation) until nothing changes."""
    model = _tidy(copy.deepcopy(model))
    return model.transform(lean_composed(transformation))
