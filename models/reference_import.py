"""Import a reference (gsingh328/PSA-Compress) float ResMLP checkpoint: a bare `model.state_dict()` torch file.

The variant comes from the keys (`…psa.v_weight`: lerp_psa, `…_coefficients_vect`: bspline, else relu), the widths
from the shapes (REFERENCE_STATE_DICT.md). The image geometry is ambiguous from the weights alone (48 values per
token are 4x4 patches of 3 channels or 1x1 patches of 48), so it is taken from the dataset geometry whose token count
and token length fit (CIFAR-10/SVHN for the reference models), or from `in_channels` when given.
"""

import math
from collections.abc import Mapping

import torch

from psa_finn.models.checkpoint import CHECKPOINT_FORMAT, read_torch_file
from psa_finn.models.datasets import DATASET_GEOMETRY
from psa_finn.models.resmlp import ResMLP

VARIANT_MARKER_KEYS = (
    ("lerp_psa", "layers.0.layers.1.layers.0.psa.v_weight"),
    ("bspline", "layers.0.layers.1.layers.0._coefficients_vect"),
    ("relu", "layers.0.layers.1.layers.0.weight"),
)
HIDDEN_WEIGHT_KEY = {"relu": "layers.0.layers.1.layers.0.weight", "lerp_psa": "layers.0.layers.1.layers.1.weight",
                     "bspline": "layers.0.layers.1.layers.1.weight"}


def _fail(source, message):
    raise ValueError(f"{source}: {message}")


def _shape(state_dict, key, source, ndim):
    if key not in state_dict:
        _fail(source, f"missing key {key!r}; is this a reference ResMLP state dict?")
    shape = tuple(state_dict[key].shape)
    if len(shape) != ndim:
        _fail(source, f"key {key!r} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _image_geometry(num_tokens, patch_dim, in_channels, source):
    grid_side = math.isqrt(num_tokens)
    if grid_side * grid_side != num_tokens:
        _fail(source, f"{num_tokens} tokens is not a square patch grid")
    if in_channels is None:
        fits = {(g.img_size, g.patch_size, g.in_channels) for g in DATASET_GEOMETRY.values()
                if g.num_tokens == num_tokens and g.patch_dim == patch_dim}
        if len(fits) != 1:
            _fail(source, f"cannot tell the image geometry from {num_tokens} tokens of {patch_dim} values "
                          f"(matching datasets: {sorted(fits)}); pass in_channels=")
        return fits.pop()
    patch_size = math.isqrt(patch_dim // in_channels) if patch_dim % in_channels == 0 else 0
    if patch_size == 0 or patch_size * patch_size * in_channels != patch_dim:
        _fail(source, f"{patch_dim} values per token is not patch_size^2 * {in_channels} input channels")
    return grid_side * patch_size, patch_size, in_channels


def _check_layout(model, state_dict, source):
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        _fail(source, f"missing {len(missing)} key(s) of a {model.variant} ResMLP (h={model.hidden_dim}), "
                      f"e.g. {missing[:5]}")
    if unexpected:
        _fail(source, f"{len(unexpected)} unexpected key(s) for a {model.variant} ResMLP (h={model.hidden_dim}), "
                      f"e.g. {unexpected[:5]}")
    for key, ours in expected.items():
        theirs = state_dict[key]
        if theirs.shape != ours.shape:
            _fail(source, f"key {key!r} has shape {list(theirs.shape)}, a {model.variant} ResMLP "
                          f"(h={model.hidden_dim}) needs {list(ours.shape)}")
        if theirs.is_floating_point() != ours.is_floating_point():
            _fail(source, f"key {key!r} has dtype {theirs.dtype}, expected {ours.dtype}")


def load_reference_checkpoint(path_or_state_dict, in_channels=None) -> ResMLP:
    """ResMLP (eval mode) holding a reference float checkpoint: a `.bin`/`.pt` path or the state dict itself.

    Variant, hidden factor, depth, embedding width and classes are inferred from the keys and shapes; errors name
    the file and the offending key.
    """
    if isinstance(path_or_state_dict, Mapping):
        source, state_dict = "reference state dict", path_or_state_dict
    else:
        source = str(path_or_state_dict)
        state_dict = read_torch_file(path_or_state_dict)
    if not isinstance(state_dict, Mapping):
        _fail(source, f"holds a {type(state_dict).__name__}, not a state dict (reference checkpoints are "
                      f"torch.save(model.state_dict()))")
    if state_dict.get("format") == CHECKPOINT_FORMAT:
        _fail(source, "is a psa-finn checkpoint; read it with models.load_checkpoint")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        _fail(source, f"entries {not_tensors[:5]} are not tensors: not a bare state dict")
    quantized = [k for k in state_dict if k.endswith("_abs_max") or ".res_affine." in k]
    if quantized:
        _fail(source, f"is a quantized (QAT) reference checkpoint (keys like {quantized[0]!r}); import the float "
                      f"*_model.bin instead")
    variant = next((v for v, key in VARIANT_MARKER_KEYS if key in state_dict), None)
    if variant is None:
        _fail(source, f"cannot tell the ResMLP variant: none of {[k for _, k in VARIANT_MARKER_KEYS]} is present")
    embed_dim, patch_dim = _shape(state_dict, "embed_linear.weight", source, 2)
    num_tokens = _shape(state_dict, "layers.0.layers.0.layers.weight", source, 2)[0]
    num_classes = _shape(state_dict, "classifier.weight", source, 2)[0]
    hidden_dim = _shape(state_dict, HIDDEN_WEIGHT_KEY[variant], source, 2)[0]
    depth = len({k.split(".")[1] for k in state_dict if k.startswith("layers.")})
    img_size, patch_size, in_ch = _image_geometry(num_tokens, patch_dim, in_channels, source)
    model = ResMLP(variant, hidden_dim / embed_dim, img_size=img_size, patch_size=patch_size, in_channels=in_ch,
                   embed_dim=embed_dim, depth=depth, num_classes=num_classes)
    _check_layout(model, state_dict, source)
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, ValueError) as err:
        _fail(source, str(err))
    return model.eval()
