"""Folding of psa-finn's HW layers for a cycles-per-frame target (finn-plus's ``SetFolding`` does not know them).

``FoldForTarget`` visits every node of one layer family (``is_layer``) and lets ``fold`` set its folding attributes
(``FOLDING_ATTRIBUTES``) so that ``get_exp_cycles`` meets ``target_cycles_per_frame``; it reports a change only
when an attribute changed, so it is idempotent. Run it BEFORE ``step_target_fps_parallelization``.
"""

from abc import abstractmethod

from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation


class FoldForTarget(Transformation):
    """Set the folding of every node of a layer family for a cycles-per-frame target; subclasses define
    ``FOLDING_ATTRIBUTES``, ``is_layer(node)`` and ``fold(layer)``."""

    FOLDING_ATTRIBUTES = ()

    def __init__(self, target_cycles_per_frame):
        """Remember the target (cycles per frame, > 0)."""
        super().__init__()
        if target_cycles_per_frame < 1:
            raise ValueError(f"target_cycles_per_frame must be positive, got {target_cycles_per_frame}")
        self.target_cycles_per_frame = target_cycles_per_frame

    @abstractmethod
    def is_layer(self, node):
        """True for the nodes this folding sets."""

    @abstractmethod
    def fold(self, layer):
        """Set the folding attributes of one layer (its CustomOp)."""

    def apply(self, model):
        """Fold each layer independently."""
        graph_modified = False
        for node in model.graph.node:
            if not self.is_layer(node):
                continue
            layer = getCustomOp(node)
            old = [layer.get_nodeattr(name) for name in self.FOLDING_ATTRIBUTES]
            self.fold(layer)
            graph_modified |= [layer.get_nodeattr(name) for name in self.FOLDING_ATTRIBUTES] != old
        return model, graph_modified
