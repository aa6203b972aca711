"""Reference-checkpoint import: state dicts built from the documented layout (REFERENCE_STATE_DICT.md) and an
independent functional restatement of the reference forward (REFERENCE_SPEC 1-4) as the judge of the logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from psa_finn.models import ResMLP, load_reference_checkpoint, save_checkpoint

HIDDEN_FACTORS = (4, 2, 1, 0.5, 0.25)
D, TOKENS, PATCH_DIM, CLASSES, DEPTH, E, G, R = 96, 64, 48, 10, 4, 8, 64, 4.0


def reference_layout(variant, h):
    """[(key, shape, dtype)] in state_dict order, from the documented naming rules."""
    f32, i64 = torch.float32, torch.int64

    def bn(prefix):
        return [(f"{prefix}.bn.weight", [D], f32), (f"{prefix}.bn.bias", [D], f32),
                (f"{prefix}.bn.running_mean", [D], f32), (f"{prefix}.bn.running_var", [D], f32),
                (f"{prefix}.bn.num_batches_tracked", [], i64)]

    def linear(prefix, n_in, n_out):
        return [(f"{prefix}.weight", [n_out, n_in], f32), (f"{prefix}.bias", [n_out], f32)]

    def psa(prefix, c):
        return [(f"{prefix}.psa.{name}", [c, E], f32) for name in ("v_weight", "q_weight", "q_bias")] + [
            (f"{prefix}.psa.o_weight", [c], f32), (f"{prefix}.psa.o_bias", [c], f32),
            (f"{prefix}.psa.epsilon", [1], f32), (f"{prefix}.psa.grid", [G, c], f32),
            (f"{prefix}.psa.grid_ifeat_offset", [1, c], i64)]

    layout = linear("embed_linear", PATCH_DIM, D)
    for block in range(DEPTH):
        token, channel = f"layers.{block}.layers.0", f"layers.{block}.layers.1"
        layout += bn(f"{token}.affine_1")
        layout += [(f"{token}.affine_2.weight", [D], f32), (f"{token}.affine_2.bias", [D], f32)]
        layout += linear(f"{token}.layers", TOKENS, TOKENS)
        layout += bn(f"{channel}.affine_1")
        layout += [(f"{channel}.affine_2.weight", [D], f32), (f"{channel}.affine_2.bias", [D], f32)]
        mlp = f"{channel}.layers"
        if variant == "relu":
            layout += linear(f"{mlp}.0", D, h) + linear(f"{mlp}.2", h, D)
        elif variant == "lerp_psa":
            layout += psa(f"{mlp}.0", D) + linear(f"{mlp}.1", D, h) + psa(f"{mlp}.2", h) + linear(f"{mlp}.3", h, D)
        else:
            layout += [(f"{mlp}.0._coefficients_vect", [D * 65], f32)] + linear(f"{mlp}.1", D, h)
            layout += [(f"{mlp}.2._coefficients_vect", [h * 65], f32)] + linear(f"{mlp}.3", h, D)
    return layout + bn("affine") + linear("classifier", D, CLASSES)


def random_reference_state_dict(variant, h, seed=0):
    """Plausible trained-looking values for every documented key (buffers as the reference builds them)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(shape, scale=1.0, offset=0.0):
        return offset + scale * torch.randn(shape, generator=gen)

    state = {}
    for key, shape, dtype in reference_layout(variant, h):
        name = key.rsplit(".", 1)[1]
        if name == "num_batches_tracked":
            value = torch.tensor(1234)
        elif name == "grid_ifeat_offset":
            value = (torch.arange(shape[1]) * G)[None, :]
        elif name == "grid":
            value = torch.linspace(-R, R, G)[:, None].repeat(1, shape[1])
        elif name == "epsilon":
            value = torch.ones(1)
        elif name == "running_var":
            value = 0.5 + torch.rand(shape, generator=gen)
        elif name == "_coefficients_vect":
            knots = torch.linspace(-4, 4, 65).repeat(shape[0] // 65)
            value = F.leaky_relu(knots, 0.01) + rand(shape, 0.05)
        elif name in ("v_weight", "q_bias"):
            value = rand(shape, 1.0)
        elif name in ("q_weight", "o_weight"):
            value = rand(shape, 0.2, 1.0)
        elif ".bn." in key and name == "weight":
            value = rand(shape, 0.1, 1.0)
        elif "affine_2" in key and name == "weight":
            value = rand(shape, 0.02, 0.1)
        elif name == "weight":
            value = rand(shape, 1.0 / math.sqrt(shape[1]))
        else:
            value = rand(shape, 0.1)
        state[key] = value.to(dtype)
    return state


def reference_forward(state, images, variant, train):
    """The reference ResMLP forward restated from REFERENCE_SPEC 1-4 with functional ops on the raw state dict."""

    def bn(x, prefix):                       # ModifiedBatchNorm1d on [B, L, C]
        y = F.batch_norm(x.transpose(1, 2), state[f"{prefix}.bn.running_mean"].clone(),
                         state[f"{prefix}.bn.running_var"].clone(), state[f"{prefix}.bn.weight"],
                         state[f"{prefix}.bn.bias"], training=train, momentum=0.1, eps=1e-5)
        return y.transpose(1, 2)

    def lin(x, prefix):
        return x @ state[f"{prefix}.weight"].t() + state[f"{prefix}.bias"]

    def lerp_psa(x, prefix):                 # spec 2.1-2.4 with the state dict's own grid buffers, + residual
        p = {n: state[f"{prefix}.psa.{n}"] for n in ("v_weight", "q_weight", "q_bias", "o_weight", "o_bias",
                                                    "epsilon", "grid", "grid_ifeat_offset")}
        g = p["grid"][..., None]                                            # [G, C, 1]
        scores = (g - p["q_bias"]) ** 2 / (p["q_weight"] ** 2 + p["epsilon"])
        attention = torch.softmax(-scores, dim=-1)
        values = g * p["v_weight"]
        table = p["o_weight"] * (attention * values).sum(-1) + p["o_bias"]  # [G, C]
        flat = table.t().reshape(-1)
        step = (G - 1) / (2 * R)
        t = (x + R) * step
        i = torch.clamp(torch.floor(t), 0, G - 2)
        u = t - i
        index = i.long() + p["grid_ifeat_offset"]
        return flat[index] + u * (flat[index + 1] - flat[index]) + x

    def bspline(x, prefix):                  # spec 3
        c = state[f"{prefix}._coefficients_vect"]
        spacing = math.floor((4.0 / 32) / 1e-6) * 1e-6
        channels = x.shape[-1]
        cc = c.view(channels, 65)
        xc = torch.clamp(x, -32 * spacing, 31 * spacing)
        k0 = torch.floor(xc / spacing)
        u = xc / spacing - k0
        index = k0.long() + 32 + torch.arange(channels) * 65
        return (c[index] * (1 - u) + c[index + 1] * u
                + torch.clamp(x + 32 * spacing, max=0) * (cc[:, 1] - cc[:, 0]) / spacing
                + torch.clamp(x - 31 * spacing, min=0) * (cc[:, 64] - cc[:, 63]) / spacing)

    b = images.shape[0]
    tokens = images.unfold(2, 4, 4).unfold(3, 4, 4)                         # [B, 3, 8, 8, 4, 4]
    tokens = tokens.permute(0, 2, 3, 4, 5, 1).reshape(b, 64, 48)
    x = lin(tokens, "embed_linear")
    for block in range(DEPTH):
        pre = f"layers.{block}.layers"
        z = bn(x, f"{pre}.0.affine_1")
        z = lin(z.transpose(1, 2), f"{pre}.0.layers").transpose(1, 2)
        x = z * state[f"{pre}.0.affine_2.weight"] + state[f"{pre}.0.affine_2.bias"] + x
        z = bn(x, f"{pre}.1.affine_1")
        mlp = f"{pre}.1.layers"
        if variant == "relu":
            z = lin(torch.relu(lin(z, f"{mlp}.0")), f"{mlp}.2")
        elif variant == "lerp_psa":
            z = lin(lerp_psa(lin(lerp_psa(z, f"{mlp}.0"), f"{mlp}.1"), f"{mlp}.2"), f"{mlp}.3")
        else:
            z = lin(bspline(lin(bspline(z, f"{mlp}.0"), f"{mlp}.1"), f"{mlp}.2"), f"{mlp}.3")
        x = z * state[f"{pre}.1.affine_2.weight"] + state[f"{pre}.1.affine_2.bias"] + x
    x = bn(x, "affine")
    return lin(x.sum(dim=1) / 64, "classifier")


@pytest.mark.parametrize("variant, keys, parameters",
                         [("relu", 89, 100_074), ("lerp_psa", 153, 120_042), ("bspline", 97, 149_994)])
def test_layout_helper_matches_documented_counts(variant, keys, parameters):
    layout = reference_layout(variant, 96)
    assert len(layout) == keys
    trainable = [s for k, s, _ in layout if not k.endswith(("running_mean", "running_var", "num_batches_tracked",
                                                            "epsilon", "grid", "grid_ifeat_offset"))]
    assert sum(math.prod(s) for s in trainable) == parameters


@pytest.mark.parametrize("variant", ["relu", "lerp_psa", "bspline"])
@pytest.mark.parametrize("hidden_factor", HIDDEN_FACTORS)
def test_our_state_dict_equals_reference_layout(variant, hidden_factor):
    h = int(96 * hidden_factor)
    ours = ResMLP(variant, hidden_factor, img_size=32, patch_size=4, in_channels=3).state_dict()
    assert [(k, list(v.shape), v.dtype) for k, v in ours.items()] == reference_layout(variant, h)


@pytest.mark.parametrize("variant", ["relu", "lerp_psa", "bspline"])
@pytest.mark.parametrize("hidden_factor", HIDDEN_FACTORS)
def test_imported_model_gives_reference_logits(variant, hidden_factor):
    h = int(96 * hidden_factor)
    state = random_reference_state_dict(variant, h, seed=int(hidden_factor * 4))
    model = load_reference_checkpoint(state)
    assert model.config == dict(variant=variant, hidden_factor=hidden_factor, img_size=32, patch_size=4,
                                in_channels=3, embed_dim=96, depth=4, num_classes=10, spatial_dims=2,
                                grid_size={"relu": None, "lerp_psa": 64, "bspline": 65}[variant])
    images = 2.0 * torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        expected_eval = reference_forward(state, images, variant, train=False)
        torch.testing.assert_close(model(images), expected_eval, rtol=0, atol=1e-5)
        expected_train = reference_forward(state, images, variant, train=True)
        torch.testing.assert_close(model.train()(images), expected_train, rtol=0, atol=1e-5)
    assert expected_eval.abs().max() > 0.1 and not torch.allclose(expected_eval, expected_train, atol=1e-3)


def test_import_from_file_and_inferred_hidden_factor(tmp_path):
    state = random_reference_state_dict("lerp_psa", 48)
    path = tmp_path / "lerp_psa_h_div_2_model.bin"
    torch.save(state, path)
    model = load_reference_checkpoint(path)
    assert model.config["variant"] == "lerp_psa" and model.config["hidden_factor"] == 0.5 and not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_import_of_our_own_relu_digits_shapes_needs_no_hint():
    model = ResMLP("relu", 0.5, img_size=8, patch_size=2, in_channels=1, embed_dim=32, depth=2, num_classes=10)
    imported = load_reference_checkpoint(model.state_dict())
    assert imported.config == model.config


def test_import_errors_name_the_problem(tmp_path):
    state = random_reference_state_dict("bspline", 24)
    good = tmp_path / "bspline_model.bin"
    torch.save(state, good)

    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.bin: not a readable torch checkpoint"):
        load_reference_checkpoint(truncated)

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.txt: not a readable torch checkpoint"):
        load_reference_checkpoint(text)

    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, load_reference_checkpoint(state))
    with pytest.raises(ValueError, match="psa-finn checkpoint; read it with models.load_checkpoint"):
        load_reference_checkpoint(ours)

    listed = tmp_path / "list.bin"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        load_reference_checkpoint(listed)

    missing = dict(state)
    del missing["layers.2.layers.1.layers.2._coefficients_vect"]
    with pytest.raises(ValueError, match=r"missing 1 key\(s\).*layers\.2\.layers\.1\.layers\.2\._coefficients_vect"):
        load_reference_checkpoint(missing)

    misshapen = dict(state, **{"layers.1.layers.1.layers.3.weight": torch.zeros(96, 25)})
    with pytest.raises(ValueError, match=r"'layers\.1\.layers\.1\.layers\.3\.weight' has shape \[96, 25\].*\[96, 24\]"):
        load_reference_checkpoint(misshapen)

    extra = dict(state, **{"layers.0.layers.1.layers.0.alpha": torch.zeros(1)})
    with pytest.raises(ValueError, match="1 unexpected key"):
        load_reference_checkpoint(extra)

    quantized = dict(state, **{"classifier.input_abs_max": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="quantized .*float"):
        load_reference_checkpoint(quantized)

    no_variant = {k: v for k, v in state.items() if "layers.0.layers.1.layers.0" not in k}
    with pytest.raises(ValueError, match="cannot tell the ResMLP variant"):
        load_reference_checkpoint(no_variant)

    with pytest.raises(ValueError, match="missing key 'embed_linear.weight'"):
        load_reference_checkpoint({k: v for k, v in state.items() if not k.startswith("embed_linear")})

    with pytest.raises(ValueError, match="cannot tell the image geometry.*in_channels"):
        load_reference_checkpoint(dict(state, **{"embed_linear.weight": torch.zeros(96, 12)}))
    assert load_reference_checkpoint(dict(state, **{"embed_linear.weight": torch.zeros(96, 12)}),
                                     in_channels=3).config["patch_size"] == 2

    psa_state = random_reference_state_dict("lerp_psa", 24)
    psa_state["layers.3.layers.1.layers.2.psa.grid"] = torch.linspace(-4, 4 - 8 / 64, 64)[:, None].repeat(1, 24)
    with pytest.raises(ValueError, match="layers.3.layers.1.layers.2.psa.grid does not hold linspace"):
        load_reference_checkpoint(psa_state)
