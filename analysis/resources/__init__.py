"""psa-finn's resource models, one file per layer family, and the analysis that applies them to a model.

`layer_resources(model, fpgapart)` -> {node: {lut, dsp, bram18, uram, basis}}; `fifo_resources(depth, width_bits,
impl_style, ram_style, fpgapart)` -> the figures of one stream FIFO.
"""

from psa_finn.analysis.resources.fifo import fifo_resources
from psa_finn.analysis.resources.layer_resources import layer_resources

__all__ = ["fifo_resources", "layer_resources"]
