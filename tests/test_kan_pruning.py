"""Edge pruning of QuantKANLinear (the L1 edge importance of Liu et al.'s KAN) and its hardware: a pruned edge's table
is zero through export and lowering, the KANLinear layer marks it dead (`liveEdges`), and the resource model drops
its ROM bits and its addend; yosys agrees that they vanish (slow)."""

import numpy as np
import pytest
import torch
from hls_cppsim import random_lut_input
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_shapes import InferShapes

from psa_finn.custom_ops.domain import KAN_LUT_OP, is_op
from psa_finn.custom_ops.fpgadataflow.kan_linear import flat_sum_luts
from psa_finn.custom_ops.fpgadataflow.per_channel_lut import lutrom_luts
from psa_finn.custom_ops.fpgadataflow.rtl.axis_stream_sim import simulator_available
from psa_finn.custom_ops.fpgadataflow.rtl.kan_linear_verilog import PIPELINE_LATENCY
from psa_finn.custom_ops.kan_lut import kan_lut_numpy
from psa_finn.export import export_qonnx
from psa_finn.hardware_checks.kan_layer_models import make_kan_layer_model
from psa_finn.hardware_checks.lut_layer_models import DEFAULT_FPGA_PART
from psa_finn.hardware_checks.yosys_synth import yosys_available
from psa_finn.nn import QuantKANLinear
from psa_finn.transforms.convert_to_hw_kan_linear import InferKANLinearLayer
from psa_finn.transforms.lower_kan_linear import LowerKANLinear


def _layer_with_weak_edges():
    """A 4 -> 3 layer whose edges (j, i) with i + j odd are 100 x weaker than the others."""
    torch.manual_seed(0)
    layer = QuantKANLinear(4, 3, bit_width=4, base=None)
    grid = layer.grid
    tables = torch.stack([torch.stack([torch.sin(grid + i + j) * (0.01 if (i + j) % 2 else 1.0)
                                       for i in range(4)]) for j in range(3)])
    layer.set_tables(tables)
    return layer


def test_prune_edges_drops_the_weak_edges_and_zeroes_their_tables():
    layer = _layer_with_weak_edges()
    x = torch.randn(512, 4) * 2
    weak = (torch.arange(3)[:, None] + torch.arange(4)[None, :]) % 2 == 1
    scores = layer.edge_scores(x)
    assert torch.all(scores[weak] < 0.02 * scores[~weak].min())
    assert layer.prune_edges(x, threshold=0.05) == int((~weak).sum()) == 6
    assert torch.equal(layer.edge_mask.bool(), ~weak)
    assert torch.all(layer.tables()[weak] == 0)
    assert torch.all(torch.any(layer.tables()[~weak] != 0, dim=-1))
    assert layer.prune_edges(x, threshold=0.0) == 6  # pruned edges stay pruned
    with pytest.raises(ValueError, match="threshold"):
        layer.prune_edges(x, threshold=1.0)


def test_state_dicts_from_before_pruning_load_with_every_edge_kept():
    layer = _layer_with_weak_edges()
    state = {k: v for k, v in layer.state_dict().items() if k != "edge_mask"}
    layer.edge_mask.zero_()
    result = layer.load_state_dict(state, strict=False)  # strict=False: Brevitas' uncalibrated scales are absent
    assert "edge_mask" not in result.missing_keys
    assert layer.edges_kept == 12


def test_pruned_edges_are_dead_in_the_hardware_layer(tmp_path):
    layer = _layer_with_weak_edges()
    x = torch.randn(512, 4) * 2
    layer.prune_edges(x, threshold=0.05)
    layer.train()
    layer(x)  # calibrate the quantizers
    layer.eval()
    model = ModelWrapper(str(export_qonnx(layer, x[:1], tmp_path / "pruned.onnx")))
    model = model.transform(LowerKANLinear()).transform(InferShapes())
    lowered = next(n for n in model.graph.node if is_op(n, KAN_LUT_OP))
    tables = model.get_initializer(lowered.input[1])
    mask = layer.edge_mask.bool().numpy()
    assert np.all(tables[~mask] == 0) and np.all(np.any(tables[mask] != 0, axis=-1))
    model = model.transform(InferKANLinearLayer())
    hw = getCustomOp(next(n for n in model.graph.node if n.op_type == "KANLinear"))
    assert np.array_equal(hw.get_live_edges(), mask)


def test_resource_model_drops_dead_rom_bits_and_addends():
    # 8 -> 4 unrolled (SIMD 8, PE 4): inputs 4..7 pruned on every edge, input 0 pruned for outputs 0 and 1
    pruned = np.zeros((4, 8), dtype=bool)
    pruned[:, 4:] = True
    pruned[:2, 0] = True
    full = getCustomOp(make_kan_layer_model(8, 4, 8, 4, "INT4", "INT6").graph.node[0])
    cut = getCustomOp(make_kan_layer_model(8, 4, 8, 4, "INT4", "INT6", pruned_edges=pruned).graph.node[0])
    assert cut.get_nodeattr("liveEdges") == [int(v) for v in (~pruned).reshape(-1)]
    live = cut.get_live_lane_entries()  # [SIMD, PE]
    assert np.array_equal(live, ~pruned.T)
    acc = cut.get_output_datatype().bitwidth()
    # lanes 1..3 keep 4 entries of 6 bits, lane 0 two, lanes 4..7 none (16-deep LUT ROMs); outputs 0, 1 add 3 live
    # entries, outputs 2, 3 add 4
    expected = 3 * lutrom_luts(16, 24) + lutrom_luts(16, 12) + 2 * flat_sum_luts(3, 6, acc) + \
        2 * flat_sum_luts(4, 6, acc)
    assert cut.lut_estimation("") == expected
    assert full.lut_estimation("") == 8 * lutrom_luts(16, 24) + 4 * flat_sum_luts(8, 6, full.get_output_datatype()
                                                                                 .bitwidth())
    assert cut.lut_estimation("") < full.lut_estimation("") / 3
    # folded (SIMD 2, PE 2): a lane entry is live when any of its folds' edges is
    folded = getCustomOp(make_kan_layer_model(8, 4, 2, 2, "INT4", "INT6", pruned_edges=pruned).graph.node[0])
    assert np.array_equal(folded.get_live_lane_entries(), np.ones((2, 2), dtype=bool))


@pytest.mark.slow
@pytest.mark.skipif(not yosys_available(), reason="yosys is not installed")
def test_pruned_edges_vanish_in_yosys(tmp_path):
    from psa_finn.analysis.resources import layer_resources
    from psa_finn.build_configs import finn_shims

    finn_shims.boot_finn(tmp_path)
    from psa_finn.hardware_checks.synth_check import synth_check_layer

    pruned = np.zeros((4, 8), dtype=bool)
    pruned[:, 4:] = True
    pruned[:2, 0] = True
    luts = {}
    for name, mask in (("full", None), ("pruned", pruned)):
        model = make_kan_layer_model(8, 4, 8, 4, "INT4", "INT6", impl_style="rtl", pruned_edges=mask)
        node = model.graph.node[0]
        synthesised = synth_check_layer(model, node, "xcu50-fsvh2104-2-e", tmp_path / name)
        luts[name] = synthesised["lut"] + synthesised["lutram"]
        estimate = layer_resources(model, "xcu50-fsvh2104-2-e")[node.name]["lut"]
        assert abs(estimate - luts[name]) <= 0.25 * luts[name], (name, estimate, synthesised["cells"])
    assert luts["pruned"] < luts["full"] / 3


@pytest.mark.skipif(not (simulator_available("iverilog") or simulator_available("verilator")),
                    reason="no RTL simulator: install Debian's iverilog or verilator")
def test_rtl_without_the_dead_entries_is_exact(tmp_path):
    # 6 -> 6 at SIMD 2, PE 3: input lane 1 (inputs 1, 3, 5) dead, entry p = 2 of lane 0 dead (outputs 2 and 5 read
    # only lane 0's inputs 0, 2, 4 ... which are pruned for them): lane 1 has no ROM, lane 0's word 2 entries wide
    pruned = np.zeros((6, 6), dtype=bool)
    pruned[:, 1::2] = True
    pruned[[2, 5], :] = True
    model = make_kan_layer_model(6, 6, 2, 3, "INT4", "INT6", impl_style="rtl", num_vectors=(3,), pruned_edges=pruned)
    layer = getCustomOp(model.graph.node[0])
    assert layer.get_geometry().live == ((True, True, False), (False, False, False))
    layer.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    layer.generate_hdl(model, DEFAULT_FPGA_PART, 5.0)
    assert [name.rsplit("_", 1)[-1] for name in layer.get_all_meminit_filenames()] == ["lane0.dat"]
    verilog = (tmp_path / layer.get_rtl_file_list()[0]).read_text()
    assert "rom_1" not in verilog and ".WIDTH(12)" in verilog
    layer.set_nodeattr("exec_mode", "rtlsim")
    x = random_lut_input(model, seed=5)
    expected = kan_lut_numpy(x.astype(np.int64), model.get_initializer("tables"), DataType["INT4"])
    assert np.array_equal(execute_onnx(model, {"x": x})["y"], expected)
    assert layer.get_nodeattr("cycles_rtlsim") == layer.get_exp_cycles() + PIPELINE_LATENCY


def test_prune_network_scores_each_layer_on_its_own_input():
    from psa_finn.sweeps.kan_networks import KANNetwork, prune_network

    torch.manual_seed(1)
    network = KANNetwork([4, 3, 2], bits=4).eval()
    x = torch.randn(256, 4) * 2
    first, second = network.layers
    with torch.no_grad():
        scores = [first.edge_scores(x), second.edge_scores(first(x))]
    expected = [s >= 0.3 * s.max() for s in scores]
    assert prune_network(network, x, 0.3) == sum(int(m.sum()) for m in expected) < 4 * 3 + 3 * 2
    assert torch.equal(first.edge_mask.bool(), expected[0]) and torch.equal(second.edge_mask.bool(), expected[1])
