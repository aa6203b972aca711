"""SIMD folding of FINN's generic Shuffle (transpose) layers, which SetFolding skips.

`step_convert_to_hw` turns the ResMLP token mixer's transposes into generic `Shuffle` nodes; they are only
decomposed into InnerShuffle/OuterShuffle (and specialised) by `step_transpose_decomposition`, after folding.
SetFolding folds specialised (hls/rtl) nodes only, so a Shuffle keeps SIMD=1 and, through SetFolding's two-pass
relaxation, slows the whole pipeline down to its own rate. `FoldShuffles(target_cycles)` sets each Shuffle's SIMD
to the smallest value that divides the innermost input and output dimensions and meets the target (its
`get_exp_cycles` already models the decomposed stages); the decomposition inherits the SIMD.
"""

from finn.transformation.fpgadataflow.set_folding import common_divisors
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation


def shuffle_simd_candidates(op):
    """SIMD values a Shuffle accepts, ascending: common divisors of its innermost input and output dimensions."""
    inner_in = int(op.get_nodeattr("in_shape")[-1])
    inner_out = int(op.get_nodeattr("out_shape")[-1])
    return [int(d) for d in common_divisors([inner_in, inner_out])]


class FoldShuffles(Transformation):
    """Set SIMD of every generic Shuffle node to the smallest legal value whose cycles <= target_cycles."""

    def __init__(self, target_cycles: int):
        super().__init__()
        self.target_cycles = int(target_cycles)

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type != "Shuffle":
                continue
            op = getCustomOp(node)
            for simd in shuffle_simd_candidates(op):
                op.set_nodeattr("SIMD", simd)
                if op.get_exp_cycles() <= self.target_cycles:
                    break
        return model, False
