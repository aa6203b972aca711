"""The analysis `layer_resources(model, fpgapart)`: psa-finn's resource figures of every HW layer of a model.

Like finn-plus's `analysis.fpgadataflow.res_estimation` it reads the model and returns a dict (the model is never
changed): {node name: {lut, dsp, bram18, uram, basis}}. The figure of a layer comes from, in this order:

1. a psa-finn HW layer (its class lives in psa_finn, e.g. PerChannelLUT): the layer's own resource methods
   (`lut_estimation`, `dsp_estimation`, `bram_estimation`, `uram_estimation`), basis "psa-finn model";
2. a model of this package for the op type (`LAYER_MODELS`: MVAU_rtl, Thresholding_rtl/hls, the stream layers,
   Requant_rtl, ...), basis "psa-finn model", or "finn-plus" where the model is finn-plus's own complete one
   (MVAU_hls's FINN-R model, StreamingFIFO's Vivado-fitted fifo.sv model);
3. otherwise finn-plus's `node_res_estimation`, basis "finn-plus".
"""

from finn.util.fpgadataflow import is_hls_node, is_rtl_node
from qonnx.custom_op.registry import getCustomOp

from psa_finn.analysis.resources.fifo import streaming_fifo_resources
from psa_finn.analysis.resources.mvau import mvau_hls_resources, mvau_rtl_resources
from psa_finn.analysis.resources.requant import requant_rtl_resources
from psa_finn.analysis.resources.streams import (
    ELEMENTWISE_DATAPATH,
    data_width_converter_resources,
    duplicate_streams_resources,
    elementwise_binary_resources,
    global_acc_pool_resources,
    inner_shuffle_resources,
    label_select_resources,
    reshape_resources,
)
from psa_finn.analysis.resources.thresholding import thresholding_hls_resources, thresholding_rtl_resources
from psa_finn.analysis.resources.windows import fmpadding_rtl_resources, pool_resources

RESOURCE_KEYS = ("lut", "dsp", "bram18", "uram")
FINN_RESOURCE_KEYS = {"lut": "LUT", "dsp": "DSP", "bram18": "BRAM_18K", "uram": "URAM"}
BASIS_FINN = "finn-plus"
BASIS_PSA_FINN = "psa-finn model"
BASIS_YOSYS = "yosys"
BASES = (BASIS_FINN, BASIS_PSA_FINN, BASIS_YOSYS)
HW_DOMAIN = "finn.custom_op.fpgadataflow"

# op type -> (model(op, model, fpgapart) -> {lut, dsp, bram18, uram}, basis)
LAYER_MODELS = {
    "MVAU_rtl": (mvau_rtl_resources, BASIS_PSA_FINN),
    "MVAU_hls": (mvau_hls_resources, BASIS_FINN),
    "Thresholding_rtl": (thresholding_rtl_resources, BASIS_PSA_FINN),
    "Thresholding_hls": (thresholding_hls_resources, BASIS_PSA_FINN),
    "DuplicateStreams_hls": (duplicate_streams_resources, BASIS_PSA_FINN),
    "GlobalAccPool_hls": (global_acc_pool_resources, BASIS_PSA_FINN),
    "InnerShuffle_rtl": (inner_shuffle_resources, BASIS_PSA_FINN),
    "Reshape_rtl": (reshape_resources, BASIS_PSA_FINN),
    "StreamingDataWidthConverter_rtl": (data_width_converter_resources, BASIS_PSA_FINN),
    "StreamingDataWidthConverter_hls": (data_width_converter_resources, BASIS_PSA_FINN),
    "LabelSelect_hls": (label_select_resources, BASIS_PSA_FINN),
    "Requant_rtl": (requant_rtl_resources, BASIS_PSA_FINN),
    "StreamingFIFO_rtl": (streaming_fifo_resources, BASIS_FINN),
    "Pool_hls": (pool_resources, BASIS_PSA_FINN),
    "FMPadding_rtl": (fmpadding_rtl_resources, BASIS_PSA_FINN),
    **{f"{name}_{backend}": (elementwise_binary_resources, BASIS_PSA_FINN)
       for name in ELEMENTWISE_DATAPATH for backend in ("hls", "rtl")},
}


def is_hw_node(node) -> bool:
    """A finn-plus HW layer node (any of the fpgadataflow domains, specialised or not)."""
    return node.domain.startswith(HW_DOMAIN)


def is_psa_finn_layer(op) -> bool:
    """Whether the layer's class is psa-finn's own (its resource methods are then the model)."""
    return type(op).__module__.startswith("psa_finn.")


def finn_plus_resources(op, fpgapart) -> dict:
    """finn-plus's own figures of a layer (`node_res_estimation`), as {lut, dsp, bram18, uram}."""
    estimate = op.node_res_estimation(fpgapart)
    return {key: int(round(float(estimate.get(src, 0)))) for key, src in FINN_RESOURCE_KEYS.items()}


def node_resources(node, model, fpgapart) -> dict:
    """{lut, dsp, bram18, uram, basis} of one HW node (see the module docstring for the order of bases)."""
    op = getCustomOp(node)
    if is_psa_finn_layer(op):
        figures = {"lut": op.lut_estimation(fpgapart), "dsp": op.dsp_estimation(fpgapart),
                   "bram18": op.bram_estimation(fpgapart), "uram": op.uram_estimation(fpgapart)}
        basis = BASIS_PSA_FINN
    elif node.op_type in LAYER_MODELS:
        layer_model, basis = LAYER_MODELS[node.op_type]
        figures = layer_model(op, model, fpgapart)
    else:
        figures, basis = finn_plus_resources(op, fpgapart), BASIS_FINN
    return {**{key: int(figures[key]) for key in RESOURCE_KEYS}, "basis": basis}


def layer_resources(model, fpgapart: str) -> dict:
    """{node name: {lut, dsp, bram18, uram, basis}} for every specialised (hls / rtl) HW layer of `model` (an
    analysis: reads only), as finn-plus's res_estimation covers them.

    Give the nodes unique names first (qonnx GiveUniqueNodeNames), as for finn-plus's res_estimation.
    """
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers psa-finn's HW layers with qonnx)

    return {node.name: node_resources(node, model, fpgapart) for node in model.graph.node
            if is_hls_node(node) or is_rtl_node(node)}
