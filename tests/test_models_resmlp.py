"""ResMLP variants: parameter counts of the spec table, patchify order, forward contracts, config and checkpoints."""

import os

import pytest
import torch

from psa_finn.models import BSpline, ResMLP, ResPSA, build_model, load_checkpoint, patchify, save_checkpoint
from psa_finn.models.datasets import DATASET_GEOMETRY

CIFAR = DATASET_GEOMETRY["cifar10"].model_kwargs()
DIGITS = DATASET_GEOMETRY["digits"].model_kwargs()

# REFERENCE_SPEC section 4, trainable parameters at CIFAR-10 shapes
SPEC_PARAMETER_COUNTS = {
    4: {"relu": 322_410, "lerp_psa": 372_330, "bspline": 447_210},
    2: {"relu": 174_186, "lerp_psa": 204_138, "bspline": 249_066},
    1: {"relu": 100_074, "lerp_psa": 120_042, "bspline": 149_994},
    0.5: {"relu": 63_018, "lerp_psa": 77_994, "bspline": 100_458},
    0.25: {"relu": 44_490, "lerp_psa": 56_970, "bspline": 75_690},
}


@pytest.mark.parametrize("hidden_factor, variant",
                         [(h, v) for h in SPEC_PARAMETER_COUNTS for v in ("relu", "lerp_psa", "bspline")])
def test_trainable_parameter_counts_equal_spec_table(hidden_factor, variant):
    model = ResMLP(variant, hidden_factor, **CIFAR)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == SPEC_PARAMETER_COUNTS[hidden_factor][variant]
    assert model.hidden_dim == int(96 * hidden_factor)


def test_patchify_order_row_col_channel():
    b, c, h, w, p = 2, 3, 8, 8, 4
    images = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    tokens = patchify(images, p)
    assert tokens.shape == (2, 4, 48)
    for token in range(4):
        ty, tx = divmod(token, 2)
        for row in range(p):
            for col in range(p):
                for ch in range(c):
                    expected = images[1, ch, ty * p + row, tx * p + col]
                    assert tokens[1, token, (row * p + col) * c + ch] == expected
    with pytest.raises(ValueError, match="multiple of patch_size"):
        patchify(torch.zeros(1, 1, 6, 6), 4)


@pytest.mark.parametrize("variant", ["relu", "gelu", "lerp_psa", "bspline"])
def test_forward_accepts_images_and_patches_and_exits_early(variant):
    torch.manual_seed(0)
    model = ResMLP(variant, 0.5, **DIGITS).eval()
    images = torch.randn(3, 1, 8, 8)
    logits = model(images)
    assert logits.shape == (3, 10)
    torch.testing.assert_close(model(patchify(images, 2)), logits, rtol=0, atol=0)
    embedded = model.embed_linear(patchify(images, 2))
    assert torch.equal(model(images, early_exit_after_block=0), embedded)
    after_two = model(images, early_exit_after_block=2)
    torch.testing.assert_close(after_two, model.layers[1](model.layers[0](embedded)), rtol=0, atol=0)
    assert after_two.shape == (3, 16, 96)
    with pytest.raises(ValueError, match=r"images \[B, 1, 8, 8\] or patches \[B, 16, 4\]"):
        model(torch.randn(3, 16, 5))
    with pytest.raises(ValueError, match=r"expects images \[B, 1, 8, 8\]"):
        model(torch.randn(3, 3, 8, 8))
    with pytest.raises(ValueError, match="early_exit_after_block must be in 0..4"):
        model(images, early_exit_after_block=5)


def test_module_layout_per_variant():
    psa = ResMLP("lerp_psa", 2, **CIFAR)
    assert [name for name, _ in psa.learnable_functions()][:2] == ["layers.0.layers.1.layers.0",
                                                                   "layers.0.layers.1.layers.2"]
    functions = psa.learnable_functions()
    assert len(functions) == 8 and all(isinstance(m, ResPSA) for _, m in functions)
    assert [m.table().shape for _, m in functions[:2]] == [(96, 64), (192, 64)]
    spline = ResMLP("bspline", 0.25, **CIFAR)
    assert [m.table().shape for _, m in spline.learnable_functions()[:2]] == [(96, 65), (24, 65)]
    assert all(isinstance(m, BSpline) for _, m in spline.learnable_functions())
    assert ResMLP("relu", 1, **CIFAR).learnable_functions() == []


def test_model_tv2_sums_spline_banks():
    # every spline channel contributes 0.99 at init (spec 3): 4 blocks x (96 + 96) channels at h=1
    assert ResMLP("bspline", 1, **CIFAR).tv2().item() == pytest.approx(760.32, rel=1e-5)
    assert ResMLP("bspline", 0.5, **CIFAR).tv2().item() == pytest.approx(4 * (96 + 48) * 0.99, rel=1e-5)
    assert ResMLP("lerp_psa", 1, **DIGITS).tv2().item() == 0.0


def test_config_rebuilds_the_model():
    model = ResMLP("bspline", 0.25, img_size=8, patch_size=2, in_channels=1, embed_dim=32, depth=2, num_classes=5)
    rebuilt = build_model(dict(model.config))
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="unknown ResMLP config keys"):
        build_model(dict(model.config, dropout=0.1))
    with pytest.raises(ValueError, match="variant must be one of"):
        ResMLP("swish", 1, **CIFAR)
    with pytest.raises(ValueError, match="hidden width"):
        ResMLP("relu", 0.001, **CIFAR)


def test_same_seed_same_init():
    torch.manual_seed(2023)
    first = ResMLP("lerp_psa", 0.5, **DIGITS).state_dict()
    torch.manual_seed(2023)
    second = ResMLP("lerp_psa", 0.5, **DIGITS).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("variant", ["relu", "gelu", "lerp_psa", "bspline"])
def test_checkpoint_round_trip(tmp_path, variant):
    torch.manual_seed(1)
    model = ResMLP(variant, 0.5, **DIGITS)
    model.train()
    model(torch.randn(8, 1, 8, 8))          # move the BatchNorm running statistics off their init
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, epoch=7, metrics={"accuracy": 0.91})
    assert sorted(os.listdir(path.parent)) == ["model.pt"]          # no temp file left behind
    loaded, extra = load_checkpoint(path)
    assert extra == {"epoch": 7, "metrics": {"accuracy": 0.91}}
    assert loaded.config == model.config and not loaded.training
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert list(loaded_state) == list(state) and all(torch.equal(state[k], loaded_state[k]) for k in state)
    images = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(loaded(images), model.eval()(images), rtol=0, atol=0)


def test_checkpoint_errors(tmp_path):
    model = ResMLP("relu", 0.25, **DIGITS)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", model, config={})
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pt: not a readable torch checkpoint"):
        load_checkpoint(truncated)
    bare = tmp_path / "bare.bin"
    torch.save(model.state_dict(), bare)
    with pytest.raises(ValueError, match="bare state dict.*load_reference_checkpoint"):
        load_checkpoint(bare)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden_factor"] = 0.5
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    with pytest.raises(ValueError, match="weights do not fit the stored config"):
        load_checkpoint(mismatched)
