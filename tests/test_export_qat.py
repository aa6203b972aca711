"""export.qat / export.quant_resmlp: the float -> QAT conversion folds exactly, bits and finiteness are checked,
the LerpPSA torch function matches the qonnx op bit for bit, QAT checkpoints round-trip and the twin trains."""

import numpy as np
import pytest
import torch
from brevitas.graph.calibrate import quantization_status_manager
from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU

from psa_finn.custom_ops.lerp_psa import lerp_psa_numpy
from psa_finn.export.affine_folding import exact_identity
from psa_finn.export.qat import load_qat_checkpoint, save_qat_checkpoint, to_qat_model
from psa_finn.nn import QuantBSpline, QuantLerpPSA
from psa_finn.nn.lerp_psa_function import lerp_psa
from psa_finn.nn.quant_table_function import QuantTableFunction
from psa_finn.nn.quantizers import check_bits
from psa_finn.models import ResMLP, load_checkpoint, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY
from psa_finn.common.grid import grid_points

VARIANTS = ("relu", "gelu", "lerp_psa", "bspline")


def tiny_float_model(variant, seed=0):
    """A digits-shaped ResMLP (D=16, h=8, 2 blocks) with non-trivial BatchNorm statistics and layer scales."""
    torch.manual_seed(seed)
    model = ResMLP(variant, 0.5, embed_dim=16, depth=2, **DATASET_GEOMETRY["digits"].model_kwargs())
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for name, param in model.named_parameters():
            if name.endswith("affine_2.weight") or name.endswith("affine_2.bias"):
                param.uniform_(-0.3, 0.3)
    return model.eval()


def images(n, seed=1):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS)
def test_folding_is_exact_without_quantization(variant):
    model = tiny_float_model(variant)
    qat = to_qat_model(model, 8, [images(16)])
    x = images(8, seed=2)
    with torch.no_grad(), quantization_status_manager(qat, disable_act_quant=True, disable_weight_quant=True,
                                                      disable_bias_quant=True, is_training=False):
        folded = qat(x)
        expected = model(x)
    assert torch.allclose(folded, expected, atol=1e-5, rtol=1e-5), (folded - expected).abs().max()


def test_affines_qonnx_takes_for_identity_become_exactly_the_identity():
    untrained = torch.full((4,), 1 / np.sqrt(1 + 1e-5), dtype=torch.float64)     # BatchNorm: gamma 1, var 1
    assert torch.equal(exact_identity(untrained, 1.0), torch.ones(4, dtype=torch.float64))
    mixed = untrained.clone()
    mixed[2] = 0.99                                  # one real channel: RemoveIdentityOps keeps the node, and so do we
    assert torch.equal(exact_identity(mixed, 1.0), mixed)
    assert torch.equal(exact_identity(torch.tensor([5e-6, -9e-6]), 0.0), torch.zeros(2))
    assert torch.equal(exact_identity(torch.tensor([2e-5, 0.0]), 0.0), torch.tensor([2e-5, 0.0]))
    torch.manual_seed(0)
    qat = to_qat_model(ResMLP("relu", 0.5, embed_dim=16, depth=2, **DATASET_GEOMETRY["digits"].model_kwargs()).eval())
    for block in qat.layers:
        assert torch.equal(block.layers[0].affine_1.weight, torch.ones(16))


@pytest.mark.parametrize("variant", ("lerp_psa", "bspline"))
def test_tables_and_input_affine_come_from_the_float_functions(variant):
    model = tiny_float_model(variant)
    qat = to_qat_model(model, 8)
    mlp, qmlp = model.layers[1].layers[1], qat.layers[1].layers[1].layers
    layer = QuantLerpPSA if variant == "lerp_psa" else QuantBSpline
    assert [type(m) for m in qmlp] == [layer, QuantLinear, layer, QuantLinear]
    with torch.no_grad():
        assert torch.equal(qmlp[0].table(), mlp.layers[0].table())
        assert torch.equal(qmlp[2].table(), mlp.layers[2].table())
    assert qmlp[2].in_scale is None
    bn = mlp.affine_1.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(qmlp[0].in_scale, scale, rtol=1e-6)
    assert torch.allclose(qmlp[0].in_bias, bn.bias - bn.running_mean * scale, rtol=1e-6, atol=1e-7)
    if variant == "lerp_psa":  # the ResPSA residual is in the table: table - grid is the bare PSA table
        grid = torch.as_tensor(grid_points(64, 4.0), dtype=torch.float32)
        with torch.no_grad():
            assert torch.allclose(qmlp[0].table() - grid, mlp.layers[0].psa.table(), atol=1e-6)


def test_lerp_psa_torch_equals_the_qonnx_op_bit_for_bit():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, 6, generator=generator) * 3  # reaches beyond [-4, 4]: extrapolation
    table = torch.randn(6, 64, generator=generator)
    scale, bias = torch.rand(6, generator=generator) + 0.5, torch.randn(6, generator=generator)
    ours = lerp_psa(x, table, 4.0, scale, bias).numpy()
    theirs = lerp_psa_numpy(x.numpy(), table.numpy(), np.float32(4.0), scale.numpy(), bias.numpy())
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs)
    assert np.array_equal(lerp_psa(x, table, 4.0).numpy(), lerp_psa_numpy(x.numpy(), table.numpy(), 4.0))
    with pytest.raises(ValueError, match="together"):
        lerp_psa(x, table, 4.0, scale, None)


def test_lerp_psa_gradients_reach_input_table_and_affine():
    x = torch.tensor([[-5.0, 0.3], [1.1, 4.5]], dtype=torch.float64, requires_grad=True)
    table = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.9, 1.2], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: lerp_psa(*a[:2], 4.0, *a[2:]), (x, table, scale, bias))


@pytest.mark.parametrize("bits", [1, 9, 0, 2.5, "8", True])
def test_bits_outside_2_to_8_are_refused(bits):
    with pytest.raises(ValueError, match="bits must be"):
        check_bits(bits)
    with pytest.raises(ValueError, match="bits must be"):
        to_qat_model(tiny_float_model("relu"), bits)


def test_bits_set_every_quantizer():
    qat = to_qat_model(tiny_float_model("lerp_psa"), 4, [images(16)])
    acts = [m.act_quant.bit_width() for m in qat.modules() if isinstance(m, (QuantIdentity, QuantReLU))]
    functions = [m for m in qat.modules() if isinstance(m, QuantTableFunction)]
    acts += [m.act_quant.bit_width() for m in functions] + [m.input_quant.bit_width() for m in functions[1::2]]
    weights = [m.weight_quant.bit_width() for m in qat.modules() if isinstance(m, QuantLinear)]
    assert len(acts) == 1 + 2 * (3 + 1 + 3) + 1 and len(weights) == 1 + 2 * 3 + 1  # input, blocks, pool
    assert not functions[0].input_quant.is_quant_enabled  # the first function reads the residual stream's quantizer
    assert {int(w) for w in acts + weights} == {4}


@pytest.mark.parametrize("variant", ("relu", "bspline"))
def test_non_finite_parameters_are_named(variant):
    model = tiny_float_model(variant)
    name = "layers.1.layers.1.layers.2._coefficients_vect" if variant == "bspline" else "classifier.weight"
    with torch.no_grad():
        model.get_parameter(name)[3] = float("nan")
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ".*non-finite"):
        to_qat_model(model, 8)


def test_qat_checkpoint_round_trip_is_bit_exact(tmp_path):
    qat = to_qat_model(tiny_float_model("bspline"), 6, [images(16)])
    save_qat_checkpoint(tmp_path / "q.pt", qat, dataset="digits")
    loaded, extra = load_qat_checkpoint(tmp_path / "q.pt")
    x = images(4, seed=5)
    with torch.no_grad():
        assert torch.equal(loaded(x), qat(x))
    assert loaded.bits == 6 and extra == {"dataset": "digits"}
    save_checkpoint(tmp_path / "float.pt", tiny_float_model("relu"))
    with pytest.raises(ValueError, match="not a psa-finn QAT checkpoint"):
        load_qat_checkpoint(tmp_path / "float.pt")
    assert load_checkpoint(tmp_path / "float.pt")[0].variant == "relu"


def test_qat_model_trains_functions_weights_and_quantizer_scales():
    qat = to_qat_model(tiny_float_model("lerp_psa"), 8, [images(32)]).train()
    before = {k: v.clone() for k, v in qat.state_dict().items()}
    optimiser = torch.optim.SGD(qat.parameters(), lr=0.05)
    loss = torch.nn.functional.cross_entropy(qat(images(32, seed=7)), torch.arange(32) % 10)
    loss.backward()
    optimiser.step()
    changed = {k for k, v in qat.state_dict().items() if not torch.equal(v, before[k])}
    assert {f"layers.0.layers.1.layers.0.function.{p}" for p in ("v_weight", "q_weight", "q_bias")} <= changed
    assert "layers.0.layers.1.layers.0.in_scale" in changed
    assert "embed_linear.weight" in changed
    assert any(k.endswith("scaling_impl.value") for k in changed)
