"""analysis.exact_counts on hand-made models: MACs, weight / threshold / table / FIFO bits, the paper's op count."""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_exact_counts")

import finn.custom_op.fpgadataflow.rtl  # noqa: E402,F401  (registers finn-plus's HW layers)

from psa_finn.analysis.exact_counts import exact_counts, paper_operation_count, qonnx_macs_per_frame  # noqa: E402
from psa_finn.custom_ops.domain import OPS_DOMAIN, RTL_DOMAIN as RTL  # noqa: E402



def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def hw_chain():
    """MVAU (8 -> 4, 3 vectors, INT4 weights) -> Thresholding (4 x 3 INT12 thresholds) -> FIFO (depth 16) ->
    PerChannelLUT (4 channels, UINT2 in, INT5 out: 4 x 4 entries)."""
    nodes = [
        helper.make_node("MVAU_rtl", ["x", "w"], ["acc"], domain=RTL, backend="fpgadataflow", name="mvau", MW=8,
                         MH=4, PE=1, SIMD=1, inputDataType="INT8", weightDataType="INT4", outputDataType="INT12",
                         noActivation=1, mem_mode="internal_decoupled", numInputVectors=[1, 3]),
        helper.make_node("Thresholding_rtl", ["acc", "t"], ["q"], domain=RTL, backend="fpgadataflow", name="thr",
                         NumChannels=4, PE=1, numSteps=3, inputDataType="INT12", weightDataType="INT12",
                         outputDataType="UINT2", numInputVectors=[1, 3]),
        helper.make_node("StreamingFIFO_rtl", ["q"], ["qf"], domain=RTL, backend="fpgadataflow", name="fifo",
                         depth=16, folded_shape=[1, 3, 4, 1], normal_shape=[1, 3, 4], dataType="UINT2"),
        helper.make_node("PerChannelLUT_rtl", ["qf", "table"], ["y"], domain=RTL, backend="fpgadataflow",
                         name="lut", NumChannels=4, PE=1, inputDataType="UINT2", outputDataType="INT5", mode="full",
                         numInputVectors=[1, 3]),
    ]
    graph = helper.make_graph(nodes, "hw", [_vi("x", [1, 3, 8])], [_vi("y", [1, 3, 4])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("w", np.ones((8, 4), dtype=np.float32))
    model.set_initializer("t", np.tile(np.array([[-1, 0, 1]], dtype=np.float32), (4, 1)))
    model.set_initializer("table", np.zeros((4, 4), dtype=np.float32))
    model.set_tensor_datatype("x", DataType["INT8"])
    return model


def test_exact_counts_by_hand():
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401

    counts = exact_counts(hw_chain())
    assert counts == {
        "macs_per_frame": 8 * 4 * 3,
        "weight_bits": 8 * 4 * 4,
        "threshold_bits": 4 * 3 * 12,
        "table_bits": 4 * 4 * 5,
        "fifo_bits": 16 * 8,  # a 2-bit stream padded to one byte
        "paper_ops_per_frame": None,
    }



def test_thresholds_fused_into_an_mvau_are_counted_at_their_tensor_type():
    """An MVAU with its activation fused (finn-plus's default steps): thresholds are input 2, typed on the tensor as
    finn-plus's code generation reads them (the MVAU has no datatype attribute for input 2)."""
    node = helper.make_node("MVAU_rtl", ["x", "w", "t"], ["y"], domain=RTL, backend="fpgadataflow", name="mvau", MW=8,
                            MH=4, PE=1, SIMD=1, inputDataType="INT8", weightDataType="INT4", outputDataType="UINT2",
                            accDataType="INT16", noActivation=0, mem_mode="internal_decoupled",
                            numInputVectors=[1, 3])
    graph = helper.make_graph([node], "hw", [_vi("x", [1, 3, 8])], [_vi("y", [1, 3, 4])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("w", np.ones((8, 4), dtype=np.float32))
    model.set_initializer("t", np.tile(np.array([[-1, 0, 1]], dtype=np.float32), (4, 1)))
    model.set_tensor_datatype("t", DataType["INT10"])
    assert exact_counts(model)["threshold_bits"] == 4 * 3 * 10

def source_model(activation="Relu"):
    """MatMul [1, 3, 8] x [8, 4] -> activation on [1, 3, 4]."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm")]
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", ["h"], ["y"], name="act"))
    else:
        nodes.append(helper.make_node("LerpPSA", ["h", "table"], ["y"], domain=OPS_DOMAIN, name="act",
                                      grid_range=4.0, channel_axis=-1))
    graph = helper.make_graph(nodes, "src", [_vi("x", [1, 3, 8])], [_vi("y", [1, 3, 4])],
                              value_info=[_vi("h", [1, 3, 4])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("w", np.ones((8, 4), dtype=np.float32))
    if activation != "Relu":
        model.set_initializer("table", np.zeros((4, 64), dtype=np.float32))
    return model


def test_paper_operation_count_by_hand():
    relu = paper_operation_count(source_model("Relu"))
    assert qonnx_macs_per_frame(source_model()) == 96
    assert relu == {"ops_per_frame": 2 * 96 + 12, "mac_ops": 192, "activation_ops": 12,
                    "activation_elements": {"Relu": 12}}
    lerp = paper_operation_count(source_model("LerpPSA"))
    assert lerp["ops_per_frame"] == 2 * 96 + 11 * 12 and lerp["activation_elements"] == {"LerpPSA": 12}
    assert exact_counts(hw_chain(), source_model())["paper_ops_per_frame"] == 204
