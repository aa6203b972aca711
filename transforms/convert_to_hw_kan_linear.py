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
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the hardware layer)
from psa_finn.custom_ops.domain import HW_DOMAIN, KAN_LUT_OP, is_hw_node, is_op
from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear


def is_kan_linear_layer(node):
    """True for KANLinear hardware nodes, specialised or not."""
    return is_hw_node(node) and isinstance(getCustomOp(node), KANLinear)


class InferKANLinearLayer(Transformation):
    """Replace every lowered ``custom_ops.KANLUT`` node by the ``KANLinear`` hardware layer (SIMD = PE = 1; fold
    afterwards with ``FoldKANLinear``); the tables must be an initializer, the input shape known ``[..., MW]``."""

    def apply(self, model):
        """Convert all matching nodes in one pass."""
        graph = model.graph
        graph_modified = False
        for index, node in enumerate(list(graph.node)):
            if not is_op(node, KAN_LUT_OP):
                continue
            lowered = getCustomOp(node)
            tables = model.get_initializer(node.input[1])
            if tables is None:
                raise ValueError(f"{node.name}: the tables input {node.input[1]} is not an initializer; the hardware "
                                 f"layer embeds the tables (fold constants first)")
            shape = model.get_tensor_shape(node.input[0])
            if shape is None or len(shape) < 2:
                raise ValueError(f"{node.name}: input {node.input[0]} needs a known shape [..., MW] (got {shape})")
            hw_node = helper.make_node(
                "KANLinear", [node.input[0], node.input[1]], [node.output[0]], domain=HW_DOMAIN,
                backend="fpgadataflow", name=node.name, MW=int(tables.shape[1]), MH=int(tables.shape[0]), SIMD=1,
                PE=1, inputDataType=lowered.get_nodeattr("inputDataType"),
                tableDataType=model.get_tensor_datatype(node.input[1]).name,
                outputDataType=lowered.get_nodeattr("outputDataType"), numInputVectors=list(shape[:-1]),
                ram_style="auto", liveEdges=[int(v) for v in np.any(tables != 0, axis=2).reshape(-1)])
            getCustomOp(hw_node).get_lane_tables(tables)
            graph.node.insert(index, hw_node)
            graph.node.remove(node)
            graph_modified = True
        if graph_modified:
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
        return model, graph_modified


class FoldKANLinear(Transformation):
    """Set SIMD and PE of every KANLinear hardware node for a cycles-per-frame target: among the (SIMD, PE) pairs of
    divisors of (MW, MH) that meet it, the least parallel one (SIMD x PE), ties to the layer's fewest estimated
    LUTs then RAMB18s. A layer that misses the target even fully unrolled gets SIMD = MW, PE = MH. Idempotent."""

    def __init__(self, target_cycles_per_frame, fpgapart=""):
        """Remember the target (cycles per frame, > 0) and the part the estimates are for."""
        super().__init__()
        if target_cycles_per_frame < 1:
            raise ValueError(f"target_cycles_per_frame must be positive, got {target_cycles_per_frame}")
        self.target_cycles_per_frame = target_cycles_per_frame
        self.fpgapart = fpgapart

    def apply(self, model):
        """Fold each layer independently."""
        graph_modified = False
        for node in model.graph.node:
            if not is_kan_linear_layer(node):
                continue
            layer = getCustomOp(node)
            old = (layer.get_nodeattr("SIMD"), layer.get_nodeattr("PE"))
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
            graph_modified |= best != old
        return model, graph_modified
