"""QuantKANLinear, the KANLinear op and its export: the kernel against a hand-written sum, the op against the torch
layer bit for bit, gradients against autograd of the dense form, the export as Quant -> KANLinear -> Quant."""

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from psa_finn.common.grid import grid_points
from psa_finn.custom_ops.domain import KAN_LINEAR_OP, is_op, is_quant_node
from psa_finn.custom_ops.kan_linear import kan_linear_numpy
from psa_finn.export import export_qonnx
from psa_finn.models.lerp import lerp_edge_sum, lerp_table
from psa_finn.nn import QuantKANLinear


def _dense_edge_sum(x, tables, grid_range):
    """The same sum through lerp_table on [N, out * in] channels (materialises every edge value)."""
    out, inp, _ = tables.shape
    edges = lerp_table(x.unsqueeze(-2).expand(*x.shape[:-1], out, inp).reshape(*x.shape[:-1], out * inp),
                       tables.reshape(out * inp, -1), grid_range)
    return edges.view(*x.shape[:-1], out, inp).sum(-1)


def test_edge_sum_equals_hand_computed_case():
    # one output, two inputs, grid [-1, 0, 1]: edge 0 is |x| sampled, edge 1 is 2x; x = (0.5, -2) extrapolates edge 1
    tables = torch.tensor([[[1.0, 0.0, 1.0], [-2.0, 0.0, 2.0]]], dtype=torch.float64)
    x = torch.tensor([[0.5, -2.0]], dtype=torch.float64)
    assert lerp_edge_sum(x, tables, 1.0).item() == 0.5 + -4.0
    # rounded to quarter steps: 0.5 -> 0.5, and a table 0.3 at x = 0 -> round(1.2) / 4 = 0.25
    tables[0, 0, 1] = 0.3
    assert lerp_edge_sum(torch.tensor([[0.0, 0.0]], dtype=torch.float64), tables, 1.0, 0.25).item() == 0.25


def test_edge_sum_values_and_gradients_match_the_dense_form():
    torch.manual_seed(0)
    x = (torch.randn(7, 3, 5, dtype=torch.float64) * 3).requires_grad_()
    tables = torch.randn(4, 5, 9, dtype=torch.float64, requires_grad=True)
    y = lerp_edge_sum(x, tables, 2.0)
    x2, t2 = x.detach().clone().requires_grad_(), tables.detach().clone().requires_grad_()
    expected = _dense_edge_sum(x2, t2, 2.0)
    assert y.shape == (7, 3, 4)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tables.grad, t2.grad, rtol=1e-10, atol=1e-10)


def test_numpy_op_equals_torch_bit_for_bit_with_rounding_and_affine():
    rng = np.random.default_rng(1)
    x = (rng.integers(-8, 8, size=(50, 6)) * 0.25).astype(np.float32)
    tables = rng.normal(size=(3, 6, 17)).astype(np.float32)
    scale, bias = rng.uniform(0.5, 2, 6).astype(np.float32), rng.normal(size=6).astype(np.float32)
    expected = kan_linear_numpy(x, tables, 4.0, 2.0 ** -5, scale, bias)
    v = torch.from_numpy(x).double() * torch.from_numpy(scale).double() + torch.from_numpy(bias).double()
    got = lerp_edge_sum(v, torch.from_numpy(tables).double(), 4.0, 2.0 ** -5).float().numpy()
    assert np.array_equal(got, expected)
    assert np.all(np.round(expected * 32) == expected * 32)


def test_numpy_op_rejects_bad_shapes():
    with pytest.raises(ValueError, match="3 inputs"):
        kan_linear_numpy(np.zeros((2, 4)), np.zeros((2, 3, 5)), 1.0)
    with pytest.raises(ValueError, match=r"\[out, in, G\]"):
        kan_linear_numpy(np.zeros((2, 4)), np.zeros((4, 5)), 1.0)


@pytest.mark.parametrize("function,base", [("bspline", "silu"), ("bspline", None), ("lerp_psa", None)])
def test_layer_exports_as_quant_kanlinear_quant_bit_exact(tmp_path, function, base):
    torch.manual_seed(2)
    model = torch.nn.Sequential(QuantKANLinear(6, 5, bit_width=4, function=function, base=base),
                                QuantKANLinear(5, 3, bit_width=4, function=function, base=base, input_quant=None))
    model[0].return_quant_tensor = True
    x = torch.randn(64, 6) * 2
    model.train()
    for _ in range(3):  # collect the quantizers' statistics
        model(x)
    model.eval()
    path = export_qonnx(model, x, tmp_path / "kan.onnx")
    onnx_model = ModelWrapper(str(path))
    kans = [n for n in onnx_model.graph.node if is_op(n, KAN_LINEAR_OP)]
    assert len(kans) == 2
    for node in kans:
        assert is_quant_node(onnx_model.find_producer(node.input[0]))
        assert is_quant_node(onnx_model.find_consumers(node.output[0])[0])
        assert onnx_model.get_initializer(node.input[1]).shape[1:] == (6 if node is kans[0] else 5, 17)
    got = execute_onnx(onnx_model, {"global_in": x.numpy()})["global_out"]
    with torch.no_grad():
        assert np.array_equal(got, model(x).numpy())


def test_layer_learns_a_sum_of_edge_functions():
    torch.manual_seed(3)
    x = torch.rand(512, 2) * 4 - 2
    target = (torch.sin(2 * x[:, :1]) + x[:, 1:] ** 2)
    layer = QuantKANLinear(2, 1, bit_width=8, grid_size=17, grid_range=2.0)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(layer(x), target)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.02 < first


def test_layer_tables_include_the_base_and_reject_bad_options():
    layer = QuantKANLinear(3, 2, grid_size=9, grid_range=4.0)
    grid = torch.as_tensor(grid_points(9, 4.0), dtype=torch.float32)
    expected = layer.coefficients + layer.base_weight[..., None] * grid * torch.sigmoid(grid)
    torch.testing.assert_close(layer.tables(), expected)
    with pytest.raises(ValueError, match="function"):
        QuantKANLinear(3, 2, function="cubic")
    with pytest.raises(ValueError, match="3 features"):
        layer(torch.zeros(4, 5))
    with pytest.raises(TypeError, match="prefix"):
        QuantKANLinear(3, 2, weight_bit_width=3)


def test_grid_extension_keeps_every_edge_function():
    torch.manual_seed(5)
    layer = QuantKANLinear(3, 2, grid_size=5, grid_range=2.0, input_quant=None, output_quant=None)
    x = torch.linspace(-3, 3, 97)[:, None].expand(97, 3).contiguous()
    before = layer(x)
    layer.extend_grid(17)  # 16 intervals refine the 4: the same piecewise-linear functions
    assert layer.tables().shape == (2, 3, 17) and layer.coefficients.requires_grad
    torch.testing.assert_close(layer(x), before, rtol=0, atol=2 * layer.edge_scale())
