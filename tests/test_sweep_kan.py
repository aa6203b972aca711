"""The sweeps' kan family (sweeps.kan_networks.KANClassifier): the QAT twin starts from the float edges, checkpoints of
both forms read back, the export is bit-exact, the shipped space holds its trials, a bad variant is named."""

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from psa_finn.common.cli_errors import BadInput
from psa_finn.custom_ops.domain import KAN_LINEAR_OP, is_op
from psa_finn.models.datasets import load_dataset
from psa_finn.sweeps.families import model_family
from psa_finn.sweeps.kan_networks import KANClassifier, load_float_kan, load_quant_kan
from psa_finn.sweeps.space import load_space, parse_space
from pathlib import Path

SPACES = Path(__file__).resolve().parents[1] / "sweeps" / "spaces"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("variant", ["bspline", "lerp_psa"])
def test_qat_twin_starts_from_the_float_edges_and_exports_exactly(digits, tmp_path, variant):
    family = model_family("kan")
    torch.manual_seed(0)
    network = KANClassifier(variant, 1.0, 8, 1, [1, 8, 8], 10, grid_size=9).eval()
    quant = family.to_qat(network, 4, digits.calibration_batches(64, 2))
    assert quant.bits == 4 and [layer.out_features for layer in quant.layers] == [8, 10]
    for float_layer, quant_layer in zip(network.layers, quant.layers):
        torch.testing.assert_close(quant_layer.tables(), float_layer.tables())
    path = family.export(quant, tmp_path / "kan.onnx")
    model = ModelWrapper(str(path))
    assert sum(is_op(n, KAN_LINEAR_OP) for n in model.graph.node) == 2
    x = quant.example_input()
    with torch.no_grad():
        assert np.array_equal(execute_onnx(model, {"global_in": x.numpy()})["global_out"], quant(x).numpy())


def test_checkpoints_of_both_forms_read_back(digits, tmp_path):
    family = model_family("kan")
    torch.manual_seed(1)
    network = KANClassifier("bspline", 0.5, 16, 1, [1, 8, 8], 10)
    quant = family.to_qat(network.eval(), 8, digits.calibration_batches(64, 1))
    family.save_float(tmp_path / "float.pt", network, dataset="digits")
    family.save_qat(tmp_path / "qat.pt", quant, dataset="digits")
    x = quant.example_input()
    loaded_float, extra = load_float_kan(tmp_path / "float.pt")
    loaded_quant, _ = load_quant_kan(tmp_path / "qat.pt")
    assert extra == {"dataset": "digits"}
    with torch.no_grad():
        assert torch.equal(loaded_float(x), network.eval()(x)) and torch.equal(loaded_quant(x), quant(x))
    with pytest.raises(ValueError, match="float form"):
        load_quant_kan(tmp_path / "float.pt")


def test_shipped_space_and_bad_variant():
    space = load_space(SPACES / "digits_kan.yaml")
    assert space.family == "kan" and len(space.grid_points()) == 8
    with pytest.raises(BadInput, match=r"axes.variant: must be one of \['bspline', 'lerp_psa'\], got 'relu'"):
        parse_space({"dataset": "digits", "model": {"family": "kan", "embed_dim": 8, "depth": 1},
                     "axes": {"variant": ["relu"], "hidden_factor": [1]}}, "s.yaml")
