"""LerpPSA's shared grid table in training (one grid evaluation per step, plain-PyTorch gradients for the usual
training patterns, a clear error for the one pattern it changes) and the in-place LERP segment computation."""

import copy
import pickle

import numpy as np
import pytest
import torch

from psa_finn.models import LerpPSA
from psa_finn.common.grid import grid_points, segment_and_fraction
from psa_finn.models.lerp import _segment_dtype
from psa_finn.models.lerp_psa import GridPSAFunction

DTYPE = torch.float64
APPLICATIONS = 3


def make_module(seed=0, **kwargs):
    torch.manual_seed(seed)
    module = LerpPSA(4, 3, grid_size=16, grid_range=2.0, is_in_residual=True, distill_init=False, **kwargs).to(DTYPE)
    with torch.no_grad():
        module.q_weight.uniform_(0.5, 1.5)
        module.o_bias.uniform_(-0.5, 0.5)
    return module


def inputs(seed):
    return torch.randn(APPLICATIONS, 6, 4, dtype=DTYPE, generator=torch.Generator().manual_seed(seed)) * 2


def shared_loss(module, x):
    """The bench pattern: the same module applied several times in one graph."""
    y = x[0]
    for i in range(APPLICATIONS):
        y = module(y + x[i]).tanh()
    return y.pow(2).sum()


def reference_gradients(module, x):
    """The same loss with a fresh (never shared) table per application: eval mode recomputes it every forward."""
    clone = copy.deepcopy(module).eval()
    return torch.autograd.grad(shared_loss(clone, x), list(clone.parameters()))


@pytest.fixture
def grid_evaluations(monkeypatch):
    calls = []
    original = GridPSAFunction.apply
    monkeypatch.setattr(GridPSAFunction, "apply", lambda *args: calls.append(1) or original(*args))
    return calls


@pytest.mark.parametrize("save_memory", [False, True])
def test_one_grid_evaluation_per_step_with_the_same_gradients(grid_evaluations, save_memory):
    module = make_module(save_memory=save_memory).train()
    x = inputs(1)
    expected = reference_gradients(module, x)
    grid_evaluations.clear()
    shared_loss(module, x).backward()
    assert len(grid_evaluations) == 1
    for p, want in zip(module.parameters(), expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-10, atol=1e-12)


def test_training_loop_and_gradient_accumulation_recompute_after_each_backward(grid_evaluations):
    module, reference = make_module().train(), make_module().eval()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for step in range(2):
        for opt in (optimizer, reference_optimizer):
            opt.zero_grad()
        for micro_batch in range(2):   # accumulation: forward, backward, forward, backward, then one step
            x = inputs(10 * step + micro_batch)
            shared_loss(module, x).backward()
            shared_loss(reference, x).backward()
        for p, q in zip(module.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
        optimizer.step()
        reference_optimizer.step()
    assert len(grid_evaluations) == 4 + 4 * APPLICATIONS   # shared: once per backward; eval: once per forward


def test_changed_parameters_give_a_new_table_within_a_step():
    module = make_module().train()
    x = inputs(2)[0]
    before = module(x)
    with torch.no_grad():
        module.v_weight.mul_(2.0)                 # version counter
    after_inplace = module(x)
    module.o_bias.data.add_(1.0)                  # bypasses the version counter: caught by the value comparison
    after_data_edit = module(x)
    other = make_module(seed=3)
    module.load_state_dict(other.state_dict())
    after_load = module(x)
    torch.testing.assert_close(after_load, other.train()(x), rtol=0, atol=0)
    outputs = [before, after_inplace, after_data_edit, after_load]
    assert all(not torch.equal(a, b) for a, b in zip(outputs, outputs[1:]))
    module.to(torch.float32)
    torch.testing.assert_close(module(x.float()), other.float()(x.float()), rtol=0, atol=0)


def test_retain_graph_and_autograd_grad_see_plain_pytorch_semantics():
    module = make_module().train()
    x = inputs(4)
    expected = reference_gradients(module, x)
    loss = shared_loss(module, x)
    loss.backward(retain_graph=True)
    loss.backward()
    for p, want in zip(module.parameters(), expected):
        torch.testing.assert_close(p.grad, 2 * want, rtol=1e-10, atol=1e-12)
    got = torch.autograd.grad(shared_loss(module, x), list(module.parameters()))
    for g, want in zip(got, expected):
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)


def test_separate_backwards_of_outputs_sharing_a_table():
    module = make_module().train()
    x = inputs(5)
    first, second = module(x[0]).sum(), module(x[1]).sum()
    first.backward()
    with pytest.raises(RuntimeError, match="share its grid table.*retain_graph=True"):
        second.backward()
    # the documented ways out: retain_graph on the earlier call, or one backward of the sum
    module.zero_grad()
    first, second = module(x[0]).sum(), module(x[1]).sum()
    first.backward(retain_graph=True)
    second.backward()
    separate = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    (module(x[0]).sum() + module(x[1]).sum()).backward()
    for p, want in zip(module.parameters(), separate):
        torch.testing.assert_close(p.grad, want, rtol=1e-12, atol=1e-12)


def test_eval_with_autograd_never_shares_and_mode_switches_are_safe(grid_evaluations):
    module = make_module()
    x = inputs(6)[0]
    module.train()
    shared = module(x)
    module.eval()
    first, second = module(x).sum(), module(x).sum()
    first.backward()
    second.backward()                              # eval mode: separate tables, plain PyTorch
    assert len(grid_evaluations) == 3
    with torch.no_grad():
        detached = module(x)
        module(x)
    assert len(grid_evaluations) == 4              # the no-grad eval cache
    module.train()
    torch.testing.assert_close(module(x), shared)
    torch.testing.assert_close(detached, shared.detach())


def test_copies_and_pickles_leave_the_shared_table_behind():
    module = make_module().train()
    x = inputs(7)[0]
    y = module(x)
    twin = copy.deepcopy(module)                   # a recorded table cannot be deep-copied: not copied at all
    torch.testing.assert_close(twin(x), y)
    torch.testing.assert_close(pickle.loads(pickle.dumps(module))(x), y)
    y.sum().backward()
    assert module.v_weight.grad is not None and twin.v_weight.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid_size, grid_range", [(64, 4.0), (65, 4.0), (16, 2.0), (300, 3.0)])
def test_torch_segments_equal_the_numpy_op_bit_for_bit(dtype, grid_size, grid_range):
    """The model (torch, one-byte index) and the qonnx LerpPSA op (numpy) index the grid identically."""
    x = torch.cat([torch.randn(20000, dtype=dtype, generator=torch.Generator().manual_seed(8)) * 2 * grid_range,
                   torch.as_tensor(grid_points(grid_size, grid_range), dtype=dtype),
                   torch.tensor([1e30, -1e30, float("inf"), -float("inf"), 0.0, -0.0], dtype=dtype)])
    segment, fraction = segment_and_fraction(x.numpy(), grid_size, grid_range)
    torch_segment, torch_fraction = segment_and_fraction(x, grid_size, grid_range, index_dtype=torch.int32)
    stored = torch_segment.to(_segment_dtype(grid_size))     # what LerpFunction saves for its backward
    assert stored.dtype == (torch.uint8 if grid_size <= 257 else torch.int64)
    np.testing.assert_array_equal(stored.long().numpy(), segment)
    np.testing.assert_array_equal(torch_fraction.numpy(), fraction)