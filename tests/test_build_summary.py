"""build_configs.summary on hand-made graphs and reports: host-side vs off-hardware nodes, per-layer tables, totals."""


import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from psa_finn.build_configs import finn_shims

finn_shims.boot_finn("/tmp/psa_finn_test_build_summary")

from psa_finn.build_configs.summary import (  # noqa
    layer_table,
    partition_nodes,
    resources_by_op_type,
    zero_estimate_ops,
)


def _parent_model(extra_tail_op=None):
    """global_in -> StreamingDataflowPartition -> Mul(const) -> Add(const) [-> extra op] -> out."""
    nodes = [helper.make_node("StreamingDataflowPartition", ["x"], ["acc"], domain="finn.custom_op.fpgadataflow",
                              model="child.onnx", name="partition"),
             helper.make_node("Mul", ["acc", "s"], ["scaled"], name="dequant_scale"),
             helper.make_node("Add", ["scaled", "b"], ["logits"], name="dequant_bias")]
    out = "logits"
    if extra_tail_op:
        nodes.append(helper.make_node(extra_tail_op, ["logits"], ["y"], name="post"))
        out = "y"
    graph = helper.make_graph(nodes, "parent", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 3])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("s", np.array(0.5, dtype=np.float32))
    model.set_initializer("b", np.zeros(3, dtype=np.float32))
    return model


def test_output_dequant_is_host_side_and_everything_on_hw():
    host, off_hw = partition_nodes(_parent_model())
    assert host == ["dequant_scale (Mul)", "dequant_bias (Add)"]
    assert off_hw == []


def test_ops_behind_an_unmapped_op_are_off_hw_too():
    host, off_hw = partition_nodes(_parent_model(extra_tail_op="Softmax"))
    assert host == []
    assert off_hw == ["dequant_scale (Mul)", "dequant_bias (Add)", "post (Softmax)"]


def _hw_model():
    nodes = [helper.make_node("Thresholding", ["x"], ["q"], domain="finn.custom_op.fpgadataflow",
                              backend="fpgadataflow", NumChannels=4, PE=2, inputDataType="INT16",
                              outputDataType="INT8", weightDataType="INT16", numSteps=255, numInputVectors=[1],
                              name="thr"),
             helper.make_node("DuplicateStreams", ["q"], ["d0", "d1"], domain="finn.custom_op.fpgadataflow",
                              backend="fpgadataflow", NumChannels=4, PE=1, NumOutputStreams=2, inputDataType="INT8",
                              numInputVectors=[1], name="dup")]
    graph = helper.make_graph(nodes, "hw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 4]) for o in ("d0", "d1")])
    return ModelWrapper(qonnx_make_model(graph))


def test_layer_table_and_per_op_totals_follow_the_reports():
    resources = {"thr": {"LUT": 120.4, "DSP": 0, "BRAM_18K": 2, "URAM": 0},
                 "dup": {"LUT": 0, "DSP": 0, "BRAM_18K": 0, "URAM": 0}}
    cycles = {"thr": 2, "dup": 4}
    layers = layer_table(_hw_model(), resources, cycles)
    assert [(lay["name"], lay["op_type"], lay["cycles"]) for lay in layers] == [("thr", "Thresholding", 2),
                                                                                ("dup", "DuplicateStreams", 4)]
    assert (layers[0]["lut"], layers[0]["bram18"], layers[0]["PE"]) == (120, 2, 2)
    assert layers[0]["estimate_basis"] == "finn-plus"
    assert layers[0]["finn_estimate"] == {"lut": 120, "dsp": 0, "bram18": 2, "uram": 0}
    by_type = resources_by_op_type(layers)
    assert by_type["Thresholding"] == {"count": 1, "lut": 120, "dsp": 0, "bram18": 2, "uram": 0,
                                       "estimate_basis": "finn-plus",
                                       "finn_estimate": {"lut": 120, "dsp": 0, "bram18": 2, "uram": 0}}
    assert not any(by_type["DuplicateStreams"][k] for k in ("lut", "dsp", "bram18", "uram"))
    assert zero_estimate_ops(by_type) == ["DuplicateStreams"]


def test_psa_finn_figures_replace_the_stock_ones_which_stay_beside_them():
    resources = {"thr": {"LUT": 120.4, "DSP": 0, "BRAM_18K": 2, "URAM": 0},
                 "dup": {"LUT": 0, "DSP": 0, "BRAM_18K": 0, "URAM": 0}}
    figures = {"thr": {"lut": 900, "dsp": 0, "bram18": 1, "uram": 0, "basis": "psa-finn model"},
               "dup": {"lut": 0, "dsp": 0, "bram18": 0, "uram": 0, "basis": "psa-finn model"}}
    layers = layer_table(_hw_model(), resources, {}, figures)
    assert [(lay["lut"], lay["bram18"], lay["estimate_basis"]) for lay in layers] == [(900, 1, "psa-finn model"),
                                                                                     (0, 0, "psa-finn model")]
    assert layers[0]["finn_estimate"] == {"lut": 120, "dsp": 0, "bram18": 2, "uram": 0}
    by_type = resources_by_op_type(layers)
    assert by_type["Thresholding"]["lut"] == 900 and by_type["Thresholding"]["finn_estimate"]["lut"] == 120
    # a psa-finn model's zero is a result (wiring), not a missing estimate
    assert zero_estimate_ops(by_type) == []


def test_boot_finn_moves_its_own_build_dir_but_keeps_the_users(tmp_path, monkeypatch):
    monkeypatch.delenv("FINN_BUILD_DIR", raising=False)
    monkeypatch.delenv(finn_shims.OWN_BUILD_DIR_MARK, raising=False)
    assert finn_shims.boot_finn(tmp_path / "a") == (tmp_path / "a" / "finn_tmp").resolve()
    assert finn_shims.boot_finn(tmp_path / "b") == (tmp_path / "b" / "finn_tmp").resolve()
    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "mine"))
    assert finn_shims.boot_finn(tmp_path / "c") == tmp_path / "mine"
