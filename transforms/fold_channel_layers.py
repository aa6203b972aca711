"""Folding of psa-finn's channel-wise hardware layers (PerChannelLUT, IntegerRequant) for a cycles-per-frame target.

finn-plus's ``SetFolding`` does not know these layers, and its two-pass relaxation would slow the whole design down
to an unfolded layer, so ``FoldChannelLayers`` sets their PE first: run it BEFORE
``step_target_fps_parallelization``.
"""

from finn.transformation.fpgadataflow.set_folding import divisors
from qonnx.custom_op.registry import getCustomOp

from psa_finn.custom_ops.domain import is_hw_node
from psa_finn.custom_ops.fpgadataflow import IntegerRequant, PerChannelLUT
from psa_finn.transforms.fold_for_target import FoldForTarget

CHANNEL_LAYERS = (PerChannelLUT, IntegerRequant)


def is_channel_layer(node):
    """True for psa-finn's channel-wise hardware nodes (PE folds NumChannels), specialised or not."""
    return is_hw_node(node) and isinstance(getCustomOp(node), CHANNEL_LAYERS)


class FoldChannelLayers(FoldForTarget):
    """Set PE of every PerChannelLUT and IntegerRequant node to the smallest divisor of NumChannels that meets the
    target.

    ``target_cycles_per_frame`` is the clock cycles per frame the build targets (build_configs.config_check's
    ``target_cycles_per_frame``). A layer that
    misses the target even at PE=NumChannels gets PE=NumChannels. Idempotent, so ``model.transform`` stops after
    one pass.
    """

    FOLDING_ATTRIBUTES = ("PE",)

    def is_layer(self, node):
        """PerChannelLUT and IntegerRequant nodes, specialised or not."""
        return is_channel_layer(node)

    def fold(self, layer):
        """The smallest PE dividing NumChannels that meets the target (else PE = NumChannels)."""
        for pe in divisors(layer.get_nodeattr("NumChannels")):
            layer.set_nodeattr("PE", pe)
            if layer.get_exp_cycles() <= self.target_cycles_per_frame:
                break
