"""MVAU folding by the complete resource model: the same throughput for fewer LUTs.

finn-plus's ``SetFolding`` raises PE first, then SIMD, until a layer meets its cycle target; it never asks what a
folding costs. For MVAU_rtl the cost differs a lot between foldings with the same PE x SIMD: each PE lane has its
own accumulator, lane-resolve adders and output-buffer bits, while a wider SIMD only deepens one adder tree
(analysis.resources.mvau). On the CIFAR ResMLP's 96x96 layers PE=24, SIMD=4 (SetFolding's choice) is 3,046 LUTs
and PE=4, SIMD=24 is 2,586, both on 48 DSPs at 96 cycles per vector.

``RefoldMVAUsByResources`` re-chooses (PE, SIMD) of every MVAU among the divisor pairs of (MH, MW) that keep the
layer at most as slow as it is and its weight stream at most as wide, fewest DSPs first, then fewest LUTs, then
fewest BRAM18/URAM (so it never trades DSPs for LUTs, nor adds block RAM). The LUTs counted are the layer's and
those of the two data width converters finn's ``InsertDWC`` will put between it and its HW neighbours (a wide PE
output into a PE=1 requantizer costs a 500-bit converter). Run it after
``step_target_fps_parallelization`` and before ``step_apply_folding_config`` (a folding file still has the last
word). What it optimises is the psa-finn estimate, not a synthesis result: docs/hardware_numbers.md says what that
model rests on.
"""

from finn.transformation.fpgadataflow.set_folding import divisors
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from psa_finn.analysis.resources.layer_resources import node_resources
from psa_finn.analysis.resources.streams import width_converter_luts
from psa_finn.custom_ops.domain import is_hw_node

MVAU_OP_TYPES = ("MVAU_rtl", "MVAU_hls")


def resource_rank(figures: dict, converter_luts: int) -> tuple:
    """The order foldings are compared in: DSP, then LUT (the layer's plus its width converters'), then BRAM18,
    then URAM."""
    return figures["dsp"], figures["lut"] + converter_luts, figures["bram18"], figures["uram"]


def boundary_converter_luts(model, node) -> int:
    """LUTs of the width converters between an MVAU and its HW producer (activation input) and HW consumers, at the
    MVAU's current folding (`width_converter_luts`: 0 where the stream widths match)."""
    layer = getCustomOp(node)
    luts = 0
    producer = model.find_producer(node.input[0])
    if producer is not None and is_hw_node(producer):
        luts += width_converter_luts(getCustomOp(producer).get_outstream_width(), layer.get_instream_width(),
                                     layer.get_input_datatype().bitwidth())
    for consumer in model.find_consumers(node.output[0]) or []:
        if is_hw_node(consumer):
            index = list(consumer.input).index(node.output[0])
            luts += width_converter_luts(layer.get_outstream_width(), getCustomOp(consumer).get_instream_width(index),
                                         layer.get_output_datatype().bitwidth())
    return luts


class RefoldMVAUsByResources(Transformation):
    """Set PE and SIMD of every specialised MVAU (rtl or hls) to the cheapest pair, by `resource_rank` of
    psa-finn's resource model on ``fpgapart`` (the layer and its boundary width converters), that is no slower and
    no wider in weights than the layer's current folding. Idempotent: a second pass finds each layer already
    cheapest."""

    def __init__(self, fpgapart: str):
        """Remember the part the resource model prices the layers on."""
        super().__init__()
        self.fpgapart = fpgapart

    def rank(self, model, node) -> tuple:
        """`resource_rank` of the node at its current folding."""
        return resource_rank(node_resources(node, model, self.fpgapart), boundary_converter_luts(model, node))

    def apply(self, model):
        """Refold each MVAU independently; report whether any folding changed."""
        graph_modified = False
        for node in model.graph.node:
            if node.op_type not in MVAU_OP_TYPES:
                continue
            layer = getCustomOp(node)
            mw, mh = layer.get_nodeattr("MW"), layer.get_nodeattr("MH")
            current = layer.get_nodeattr("PE"), layer.get_nodeattr("SIMD")
            # no slower (cycles per vector MW x MH / (PE x SIMD), finn's calc_wmem) and no wider: the same PE x SIMD
            width = current[0] * current[1]
            best, best_rank = current, self.rank(model, node)
            for pe in divisors(mh):
                for simd in divisors(mw):
                    if (pe, simd) == current or pe * simd != width:
                        continue
                    layer.set_nodeattr("PE", pe)
                    layer.set_nodeattr("SIMD", simd)
                    rank = self.rank(model, node)
                    if rank < best_rank:
                        best, best_rank = (pe, simd), rank
            layer.set_nodeattr("PE", best[0])
            layer.set_nodeattr("SIMD", best[1])
            graph_modified |= best != current
        return model, graph_modified
