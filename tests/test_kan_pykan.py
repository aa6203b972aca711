"""QuantKANLinear.from_pykan: a trained pykan 0.2.8 KANLayer (cubic B-splines + SiLU base, scale_base, scale_sp,
mask), sampled on our grid, agrees with pykan's own forward within one output quantization step."""

import pytest
import torch

from psa_finn.nn import QuantKANLinear

kan_layer = pytest.importorskip("kan.KANLayer", reason="pykan is the optional extra psa-finn[kan]")


def _trained_pykan_layer():
    torch.manual_seed(0)
    layer = kan_layer.KANLayer(in_dim=3, out_dim=2, num=5, k=3)
    x = torch.rand(256, 3) * 2 - 1
    target = torch.stack([torch.sin(3 * x[:, 0]) + x[:, 1] ** 2, torch.exp(x[:, 2]) - x[:, 0]], dim=1)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.02)
    for _ in range(200):
        loss = torch.nn.functional.mse_loss(layer(x)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        layer.mask[1, 0] = 0.0  # a pruned edge: imported as the zero function
    return layer


def test_imported_pykan_layer_agrees_within_the_quantization_step():
    pykan = _trained_pykan_layer()
    ours = QuantKANLinear.from_pykan(pykan, bit_width=8, return_quant_tensor=True)
    assert (ours.in_features, ours.out_features, ours.grid_range, ours.grid_size) == (3, 2, 1.0, 21)
    assert torch.all(ours.tables()[0, 1] == 0)
    x = torch.rand(512, 3) * 2 - 1
    ours.train()
    for _ in range(3):  # the quantizers' statistics
        ours(x)
    ours.eval()
    with torch.no_grad():
        quantized_input = ours.input_quant(x).value  # feed pykan the codes our layer sees
        out = ours(x)
        reference = pykan(quantized_input)[0]
    step = float(out.scale)
    error = (out.value - reference).abs().max().item()
    assert error <= step, f"max |ours - pykan| = {error} > one output step {step}"
    assert reference.abs().max().item() > 16 * step  # a real comparison: the outputs span many steps
