"""The learnable 1-D functions (PSA, LerpPSA, ResPSA, BSpline) against plain-autograd restatements of the spec formulas.

The `*_formula` helpers below restate REFERENCE_SPEC 1.1, 2.3-2.4 and 3 literally with ordinary torch ops, so that
autograd of the formula is the reference for the custom backward passes.
"""

import math

import pytest
import torch

from psa_finn.models import blocking as model_blocking
from psa_finn.models import PSA, BSpline, LerpPSA, ResPSA, lerp_table
from psa_finn.models.deep_bspline import DeepBSpline
from psa_finn.models.lerp_psa import GridPSAFunction

DTYPE = torch.float64


def psa_formula(x, v_weight, q_weight, q_bias, o_weight, o_bias, epsilon):
    """f_c(x) = o_w * sum_k softmax_k(-(x - q_b)^2 / (q_w^2 + eps)) * (x * v) + o_b, on the last axis."""
    x = x[..., None]
    attention = torch.softmax(-((x - q_bias) ** 2) / (q_weight ** 2 + epsilon), dim=-1)
    return o_weight * (attention * (x * v_weight)).sum(-1) + o_bias


def lerp_formula(x, table_gc, grid_size, grid_range):
    """Reference LERP: flat channel-major table, i = clamp(floor(t), 0, G-2), u = t - i unclamped (spec 2.3-2.4)."""
    step = (grid_size - 1) / (2 * grid_range)
    num_channels = table_gc.shape[1]
    flat = table_gc.t().reshape(-1)
    t = (x + grid_range) * step
    i = torch.clamp(torch.floor(t), 0, grid_size - 2)
    u = t - i
    index = i.long() + torch.arange(num_channels) * grid_size
    return flat[index] + u * (flat[index + 1] - flat[index])


def bspline_formula(x, coefficients, spacing=0.125, half=32):
    """Reference linear B-spline (spec 3): clamp to [-32T, 31T], B1 interpolation, explicit linear extrapolation."""
    num_channels = coefficients.shape[0]
    c = coefficients.reshape(-1)
    x_clamped = torch.clamp(x, -half * spacing, (half - 1) * spacing)
    k0 = torch.floor(x_clamped / spacing)
    u = x_clamped / spacing - k0
    index = (k0.long() + half) + torch.arange(num_channels) * (2 * half + 1)
    left = coefficients[:, 1] - coefficients[:, 0]
    right = coefficients[:, -1] - coefficients[:, -2]
    return (c[index] * (1 - u) + c[index + 1] * u
            + torch.clamp(x + half * spacing, max=0) * left / spacing
            + torch.clamp(x - (half - 1) * spacing, min=0) * right / spacing)


def off_grid_inputs(shape, grid_size, grid_range, spread, generator):
    """Random inputs whose grid fraction stays in [0.2, 0.8], so finite differences never straddle a kink."""
    step = (grid_size - 1) / (2 * grid_range)
    t = torch.randint(int(-spread * step), int(spread * step), shape, generator=generator).to(DTYPE)
    t = t + 0.2 + 0.6 * torch.rand(shape, generator=generator, dtype=DTYPE)
    return (t / step - grid_range).requires_grad_()


def perturbed_lerp_psa(num_channels=5, expansion=4, grid_size=16, grid_range=2.0, save_memory=False):
    torch.manual_seed(1)
    module = LerpPSA(num_channels, expansion, grid_size=grid_size, grid_range=grid_range, save_memory=save_memory,
                     is_in_residual=True, distill_init=False).to(DTYPE)
    with torch.no_grad():
        module.q_weight.uniform_(0.5, 1.5)
        module.o_weight.uniform_(0.5, 1.5)
        module.o_bias.uniform_(-0.5, 0.5)
    return module


@pytest.fixture(params=["one block", "blocks of two grid rows"])
def blocking(request, monkeypatch):
    """Runs a test with the default CPU blocks, and again with blocks so small that every tensor is split (with a
    ragged last block): the blocked kernels must give the same values and gradients."""
    if request.param != "one block":
        monkeypatch.setattr(model_blocking, "CPU_BLOCK_ELEMENTS", 2 * 3 * 5)
    return request.param


@pytest.mark.parametrize("save_memory", [False, True])
def test_lerp_psa_matches_formula_values_and_gradients(save_memory, blocking):
    module = perturbed_lerp_psa(save_memory=save_memory)
    gen = torch.Generator().manual_seed(2)
    x = off_grid_inputs((3, 7, 5), 16, 2.0, spread=3.0, generator=gen)   # covers the extrapolation region too
    params = [module.v_weight, module.q_weight, module.q_bias, module.o_weight, module.o_bias]
    grid = torch.linspace(-2.0, 2.0, 16, dtype=DTYPE)[:, None].expand(16, 5)
    expected = lerp_formula(x, psa_formula(grid, *params, module.epsilon), 16, 2.0)
    actual = module(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    weights = torch.randn(actual.shape, dtype=DTYPE, generator=gen)
    grads = torch.autograd.grad((actual * weights).sum(), [x, *params])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, *params])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x_, *p: module(x_), (x, *params))


def test_grid_psa_backward_equals_plain_autograd_on_the_grid(blocking):
    module = perturbed_lerp_psa(num_channels=3, expansion=5, grid_size=9)
    params = list(module.function_parameters()[:5])
    grid = module.grid.to(DTYPE)
    table = GridPSAFunction.apply(grid, *params, module.epsilon)
    expected = psa_formula(grid, *params, module.epsilon)
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-12)
    weights = torch.randn(table.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(9))
    grads = torch.autograd.grad((table * weights).sum(), params)
    for got, want in zip(grads, torch.autograd.grad((expected * weights).sum(), params)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *p: GridPSAFunction.apply(grid, *p, module.epsilon), params)


def test_psa_matches_formula_and_gradcheck():
    torch.manual_seed(3)
    module = PSA(4, 3).to(DTYPE)
    x = torch.randn(6, 4, dtype=DTYPE, requires_grad=True) * 3
    params = [module.v_weight, module.q_weight, module.q_bias, module.o_weight, module.o_bias]
    torch.testing.assert_close(module(x), psa_formula(x, *params, module.epsilon), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x_, *p: module(x_), (x.detach().requires_grad_(), *params))
    # f(0) = o_bias: values are lines through the origin (spec 10.1)
    torch.testing.assert_close(module(torch.zeros(1, 4, dtype=DTYPE))[0], module.o_bias.detach())


@pytest.mark.parametrize("save_memory", [False, True])
def test_bspline_matches_formula_values_and_gradients(save_memory, blocking):
    torch.manual_seed(4)
    module = BSpline(3, save_memory=save_memory).to(DTYPE)
    with torch.no_grad():
        module._coefficients_vect.add_(0.1 * torch.randn(3 * 65, dtype=DTYPE))
    gen = torch.Generator().manual_seed(5)
    x = off_grid_inputs((20, 3), 65, 4.0, spread=6.0, generator=gen)
    coefficients = module.coefficients()
    expected = bspline_formula(x, coefficients)
    actual = module(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    weights = torch.randn(actual.shape, dtype=DTYPE, generator=gen)
    grads = torch.autograd.grad((actual * weights).sum(), [x, module._coefficients_vect])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, module._coefficients_vect])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x_, c: module(x_), (x, module._coefficients_vect))


def test_reference_bspline_kernel_equals_the_bspline_module():
    """The kernel benchmark's baseline (DeepSplines' algorithm) computes BSpline's function and gradients."""
    torch.manual_seed(6)
    module = BSpline(3).to(DTYPE)
    with torch.no_grad():
        module._coefficients_vect.add_(0.1 * torch.randn(3 * 65, dtype=DTYPE))
    reference = DeepBSpline(3).to(DTYPE)
    reference.load_state_dict(module.state_dict())
    x = off_grid_inputs((4, 5, 3), 65, 4.0, spread=6.0, generator=torch.Generator().manual_seed(7))
    actual, expected = reference(x), module(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    weights = torch.randn(actual.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(8))
    grads = torch.autograd.grad((actual * weights).sum(), [x, reference._coefficients_vect])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, module._coefficients_vect])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x_, c: reference(x_), (x, reference._coefficients_vect))
    with pytest.raises(ValueError, match="4 channels on its last axis, the spline has 3"):
        reference(torch.zeros(2, 4, dtype=DTYPE))


def test_bspline_init_and_extrapolation_hand_computed():
    module = BSpline(2)
    x = torch.tensor([[-6.0, 5.0], [-4.0, 4.0], [-1.0, 0.5]])
    # leaky_relu(., 0.01) at the knots; beyond +-4 the edge segments continue: slope 0.01 left, 1 right
    expected = torch.tensor([[-0.06, 5.0], [-0.04, 4.0], [-0.01, 0.5]])
    torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-6)
    with torch.no_grad():   # coefficients x^2 at the knots: last segment slope (16 - 3.875^2) / 0.125 = 7.875
        module._coefficients_vect.copy_((torch.linspace(-4, 4, 65) ** 2).repeat(2))
    torch.testing.assert_close(module(torch.tensor([[4.5, -4.5]])), torch.tensor([[19.9375, 19.9375]]))


def test_bspline_tv2_hand_computed():
    module = BSpline(96)
    # only the kink at 0 contributes: |-0.00125 - 0 + 0.125| / 0.125 = 0.99 per channel (spec 3)
    assert module.tv2().item() == pytest.approx(96 * 0.99, rel=1e-5)
    with torch.no_grad():
        module._coefficients_vect.copy_((torch.linspace(-4, 4, 65) ** 2).repeat(96))
    # second difference of k^2 T^2 is 2 T^2 at each of the 63 interior knots: 63 * 2 * 0.125^2 / 0.125 per channel
    assert module.tv2().item() == pytest.approx(96 * 63 * 2 * 0.125, rel=1e-5)


@pytest.mark.parametrize("save_memory", [False, True])
def test_blocked_lerp_equals_one_block_bit_for_bit(save_memory, monkeypatch):
    """Blocks change where the work happens, not the arithmetic: values and both gradients are identical."""
    gen = torch.Generator().manual_seed(12)
    table = torch.randn(6, 64, generator=gen, requires_grad=True)
    x = (5 * torch.randn(4, 50, 6, generator=gen)).requires_grad_()
    weights = torch.randn(4, 50, 6, generator=gen)
    results = []
    for block_elements in (1 << 30, 6 * 7):
        monkeypatch.setattr(model_blocking, "CPU_BLOCK_ELEMENTS", block_elements)
        y = lerp_table(x, table, 4.0, save_memory)
        results.append((y, *torch.autograd.grad((y * weights).sum(), [x, table])))
    for one_block, blocked in zip(*results):
        assert torch.equal(one_block, blocked)


@pytest.mark.parametrize("save_memory", [False, True])
def test_lerp_table_of_strided_inputs_equals_contiguous_bit_for_bit(save_memory, blocking):
    """Transposed and broadcast inputs (and the broadcast gradient of a sum) give exactly the contiguous result."""
    gen = torch.Generator().manual_seed(11)
    table = torch.randn(5, 16, dtype=DTYPE, generator=gen, requires_grad=True)
    strided = (3 * torch.randn(5, 7, dtype=DTYPE, generator=gen)).t().requires_grad_()          # [7, 5], stride (1, 7)
    broadcast = (3 * torch.randn(1, 5, dtype=DTYPE, generator=gen)).expand(6, 5).requires_grad_()
    for x in (strided, broadcast):
        dense = x.detach().contiguous().requires_grad_()
        got, want = lerp_table(x, table, 2.0, save_memory), lerp_table(dense, table, 2.0, save_memory)
        assert torch.equal(got, want)
        for g, w in zip(torch.autograd.grad(got.sum(), [x, table]), torch.autograd.grad(want.sum(), [dense, table])):
            assert torch.equal(g, w)


def test_lerp_psa_extrapolates_linearly_with_edge_slopes():
    module = perturbed_lerp_psa(num_channels=2, grid_size=64, grid_range=4.0)
    table = module.table().detach()
    step = 63 / 8
    x = torch.tensor([[4.0, -4.0], [5.5, -6.0]], dtype=DTYPE, requires_grad=True)
    y = module(x)
    right = (table[0, -1] - table[0, -2]) * step
    left = (table[1, 1] - table[1, 0]) * step
    expected = torch.stack([torch.stack([table[0, -1], table[1, 0]]),
                            torch.stack([table[0, -1] + 1.5 * right, table[1, 0] - 2.0 * left])])
    torch.testing.assert_close(y.detach(), expected, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad(y[1].sum(), x)
    torch.testing.assert_close(grad[1], torch.stack([right, left]))
    # the extrapolation is not the exact PSA: away from the grid the two separate
    exact = psa_formula(x[1].detach(), *module.function_parameters())
    assert (exact - y[1].detach()).abs().max() > 1e-3


def test_lerp_psa_hits_table_at_grid_points_and_respsa_adds_the_residual():
    torch.manual_seed(6)
    res = ResPSA(3, 8, psa_type="lerp_psa", is_in_residual=True).to(DTYPE)
    grid = torch.linspace(-4, 4, 64, dtype=DTYPE)
    table = res.psa.table().detach()
    torch.testing.assert_close(res.psa(grid[:, None].expand(64, 3)).detach().t(), table, rtol=0, atol=1e-12)
    exact = psa_formula(grid[:, None].expand(64, 3), *res.psa.function_parameters()).t()
    torch.testing.assert_close(table, exact.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(res.table().detach(), table + grid, rtol=0, atol=1e-12)
    x = torch.randn(4, 3, dtype=DTYPE)
    torch.testing.assert_close(res(x), res.psa(x) + x)
    assert (res.grid_size, res.grid_range, res.num_channels) == (64, 4.0, 3)
    exact_res = ResPSA(3, 8, psa_type="psa").to(DTYPE)
    torch.testing.assert_close(exact_res.table(), exact_res.psa.table() + grid)


def test_second_backward_with_retained_graph():
    module = perturbed_lerp_psa()
    x = torch.randn(4, 5, dtype=DTYPE, requires_grad=True)
    loss = module(x).pow(2).sum()
    loss.backward(retain_graph=True)
    first = [t.grad.clone() for t in (x, module.v_weight, module.q_bias, module.o_weight)]
    loss.backward()
    for before, t in zip(first, (x, module.v_weight, module.q_bias, module.o_weight)):
        torch.testing.assert_close(t.grad, 2 * before)


def test_higher_order_gradient_is_refused_not_silently_wrong():
    module = perturbed_lerp_psa()
    x = torch.randn(4, 5, dtype=DTYPE, requires_grad=True)
    (grad,) = torch.autograd.grad(module(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


def count_grid_evaluations(monkeypatch):
    calls = []
    original = GridPSAFunction.apply
    monkeypatch.setattr(GridPSAFunction, "apply", lambda *args: calls.append(1) or original(*args))
    return calls


def test_eval_cache_is_used_and_never_stale(monkeypatch):
    calls = count_grid_evaluations(monkeypatch)
    torch.manual_seed(7)
    module, other = LerpPSA(4, 8, is_in_residual=True), LerpPSA(4, 8, is_in_residual=True)
    x = torch.randn(8, 4) * 3
    module.eval()
    with torch.no_grad():
        first = module(x)
        module(x)
        assert len(calls) == 1                       # second eval forward reused the table
        module.load_state_dict(other.state_dict())
        torch.testing.assert_close(module(x), other.eval()(x))
        module.o_bias.data.add_(1.0)                  # an edit that bypasses the version counter
        torch.testing.assert_close(module(x), other(x) + 1.0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    module.train()
    module(x).sum().backward()
    optimizer.step()
    module.eval()
    with torch.no_grad():
        after_step = module(x)
        fresh = LerpPSA(4, 8)
        fresh.load_state_dict(module.state_dict())
        torch.testing.assert_close(after_step, fresh.eval()(x))
        module.to(DTYPE)
        torch.testing.assert_close(module(x.to(DTYPE)), fresh.to(DTYPE)(x.to(DTYPE)))
    assert not torch.equal(first, after_step)


def test_eval_forward_with_grad_still_trains_the_parameters():
    module = perturbed_lerp_psa().eval()
    with torch.no_grad():
        module(torch.randn(2, 5, dtype=DTYPE))
    module(torch.randn(2, 5, dtype=DTYPE)).sum().backward()
    assert module.v_weight.grad is not None and module.v_weight.grad.abs().sum() > 0


def test_eval_table_from_inference_mode_is_not_reused_where_autograd_records():
    module = LerpPSA(4, 8).eval().requires_grad_(False)     # a frozen teacher
    x = torch.randn(3, 4)
    with torch.inference_mode():
        expected = module(x)
    x.requires_grad_()
    y = module(x)
    torch.testing.assert_close(y.detach(), expected)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.shape == x.shape


def saved_bytes(module, x):
    """Bytes of every tensor autograd saves during module(x) (saved_tensors_hooks sees save_for_backward too)."""
    total = []

    def pack(tensor):
        total.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x)
    return sum(total)


@pytest.mark.parametrize("save_memory, bytes_per_element", [(False, 5), (True, 4)])
def test_lerp_psa_saved_memory_per_activation_does_not_grow_with_expansion(save_memory, bytes_per_element):
    channels, small, large = 32, torch.randn(4, 16, 32, requires_grad=True), torch.randn(8, 16, 32, requires_grad=True)
    extra_elements = large.numel() - small.numel()
    for expansion in (2, 16):   # fresh modules: a second training forward would share the first one's grid table
        growth = saved_bytes(LerpPSA(channels, expansion, save_memory=save_memory), large) - \
            saved_bytes(LerpPSA(channels, expansion, save_memory=save_memory), small)
        # uint8 segment index + float32 fraction (or the float32 input with save_memory), whatever E is
        assert growth == bytes_per_element * extra_elements
    exact = PSA(channels, 16)   # the plain formula for comparison: grows with the expansion
    assert saved_bytes(exact, large) - saved_bytes(exact, small) > 16 * extra_elements * 4


def test_psa_initialisation_regimes():
    torch.manual_seed(8)
    cases = [(dict(is_in_residual=True, distill_init=True), "normal", 4.0, 1.0),
             (dict(is_in_residual=True, distill_init=False), "normal", math.sqrt(2 / 9), 3.0),
             (dict(is_in_residual=False, distill_init=True), "uniform", math.sqrt(6 / 9), 1.0),
             (dict(is_in_residual=False, distill_init=False), "uniform", math.sqrt(6 / 9), 3.0)]
    for kwargs, kind, scale, q_bound in cases:
        module = PSA(2048, 8, **kwargs)
        v = module.v_weight.detach()
        if kind == "normal":
            assert v.std().item() == pytest.approx(scale, rel=0.03)
            assert v.abs().max() > scale * 1.5
        else:
            assert v.abs().max() <= scale and v.abs().max() > 0.99 * scale
            assert v.std().item() == pytest.approx(scale / math.sqrt(3), rel=0.03)
        q = module.q_bias.detach()
        assert q.abs().max() <= q_bound and q.abs().max() > 0.99 * q_bound
        assert torch.equal(module.q_weight, torch.ones(2048, 8)) and torch.equal(module.o_weight, torch.ones(2048))
        assert torch.equal(module.o_bias, torch.zeros(2048)) and module.epsilon.item() == 1.0


def test_lerp_psa_state_dict_layout_and_grid_validation():
    module = LerpPSA(3, 8)
    state = module.state_dict()
    assert list(state) == ["v_weight", "q_weight", "q_bias", "o_weight", "o_bias", "epsilon", "grid",
                           "grid_ifeat_offset"]
    assert torch.equal(state["grid_ifeat_offset"], torch.tensor([[0, 64, 128]]))
    torch.testing.assert_close(state["grid"][:, 2], torch.linspace(-4, 4, 64, dtype=DTYPE).float(), rtol=0, atol=1e-6)
    corrected = dict(state, grid=torch.linspace(-4, 4 - 8 / 64, 64)[:, None].repeat(1, 3))
    with pytest.raises(ValueError, match="grid does not hold linspace"):
        LerpPSA(3, 8).load_state_dict(corrected)
    with pytest.raises(ValueError, match="grid_ifeat_offset"):
        LerpPSA(3, 8).load_state_dict(dict(state, grid_ifeat_offset=torch.zeros(1, 3, dtype=torch.long)))
