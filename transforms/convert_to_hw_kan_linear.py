"""Conversion of the lowered KANLUT node into the finn-plus KANLinear hardware layer, and its folding.

``InferKANLinearLayer`` turns ``custom_ops.KANLUT`` (integer codes -> sums of per-edge tables) into the
``KANLinear`` HWCustomOp in domain ``finn.custom_op.fpgadataflow`` (SIMD = PE = 1, ram_style auto), ready for
``SpecializeLayers``. finn-plus's ``SetFolding`` does not know the layer, so ``FoldKANLinear`` sets SIMD and PE for a
cycles-per-frame target and is meant to run BEFORE ``step_target_fps_parallelization`` (as FoldChannelLayers).
"""

import numpy as np
from finn.transformation.fpgadataflow.set_folding import divisors
from onnx import helper
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the hardware layer)
from psa_finn.custom_ops.domain import HW_DOMAIN, KAN_LUT_OP, is_hw_node, is_op
from psa_finn.custom_ops.fpgadataflow.embedded_table import embedded_table
from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear
from psa_finn.transforms.convert_to_hw_layer import ConvertToHWLayer
from psa_finn.transforms.fold_for_target import FoldForTarget


def is_kan_linear_layer(node):
    """True for KANLinear hardware nodes, specialised or not."""
    return is_hw_node(node) and isinstance(getCustomOp(node), KANLinear)


class InferKANLinearLayer(ConvertToHWLayer):
    """Replace every lowered ``custom_ops.KANLUT`` node by the ``KANLinear`` hardware layer (SIMD = PE = 1; fold
    afterwards with ``FoldKANLinear``); the tables must be an initializer, the input shape known ``[..., MW]``."""

    def matches(self, node):
        """The lowered KANLUT nodes."""
        return is_op(node, KAN_LUT_OP)

    def hw_node(self, model, node):
        """The KANLinear node (its lane tables checked against the attributes)."""
        lowered = getCustomOp(node)
        tables = embedded_table(node, model, "tables")
        shape = self.known_input_shape(model, node, "[..., MW]")
        hw_node = helper.make_node(
            "KANLinear", [node.input[0], node.input[1]], [node.output[0]], domain=HW_DOMAIN,
            backend="fpgadataflow", name=node.name, MW=int(tables.shape[1]), MH=int(tables.shape[0]), SIMD=1,
            PE=1, inputDataType=lowered.get_nodeattr("inputDataType"),
            tableDataType=model.get_tensor_datatype(node.input[1]).name,
            outputDataType=lowered.get_nodeattr("outputDataType"), numInputVectors=list(shape[:-1]),
            ram_style="auto", liveEdges=[int(v) for v in np.any(tables != 0, axis=2).reshape(-1)])
        getCustomOp(hw_node).get_lane_tables(tables)
        return hw_node


class FoldKANLinear(FoldForTarget):
    """Set SIMD and PE of every KANLinear hardware node for a cycles-per-frame target: among the (SIMD, PE) pairs of
    divisors of (MW, MH) that meet it, the least parallel one (SIMD x PE), ties to the layer's fewest estimated
    LUTs then RAMB18s. A layer that misses the target even fully unrolled gets SIMD = MW, PE = MH. Idempotent."""

    FOLDING_ATTRIBUTES = ("SIMD", "PE")

    def __init__(self, target_cycles_per_frame, fpgapart=""):
        """Remember the target (cycles per frame, > 0) and the part the estimates are for."""
        super().__init__(target_cycles_per_frame)
        self.fpgapart = fpgapart

    def is_layer(self, node):
        """KANLinear nodes, specialised or not."""
        return is_kan_linear_layer(node)

    def fold(self, layer):
        """The least parallel (SIMD, PE) meeting the target, by estimated LUTs then RAMB18s on ties."""
        candidates = []
        for simd in divisors(layer.get_nodeattr("MW")):
            for pe in divisors(layer.get_nodeattr("MH")):
                layer.set_nodeattr("SIMD", simd)
                layer.set_nodeattr("PE", pe)
                if layer.get_exp_cycles() <= self.target_cycles_per_frame:
                    candidates.append((simd * pe, layer.lut_estimation(self.fpgapart),
                                       layer.bram_estimation(self.fpgapart), simd, pe))
        best = min(candidates)[3:] if candidates else (layer.get_nodeattr("MW"), layer.get_nodeattr("MH"))
        layer.set_nodeattr("SIMD", best[0])
        layer.set_nodeattr("PE", best[1])
