"""Float ResMLP -> QAT twin (`to_qat_model`), calibration of its quantizer ranges, and QAT checkpoints.

The conversion copies every weight and folds what is exactly foldable (REFERENCE_SPEC 6.2, done right for all
three variants): each BatchNorm becomes its affine `a = gamma / sqrt(var + eps)`, `b = beta - mean * a`;
  - channel mixer BN: into the first Linear (relu) or into the first LUT's in_scale/in_bias (lerp_psa, bspline);
  - channel mixer layer scale: into the last Linear (`W <- diag(w) W`, `b <- w * b + beta`);
  - final BN: into the classifier (it commutes with the mean over tokens);
  - token mixer BN and layer scale: kept as per-channel affines (the token Linear mixes tokens, not channels);
    a multiplier (offset) that qonnx's RemoveIdentityOps would take for 1 (0), such as an untrained BatchNorm's
    1/sqrt(1 + eps), becomes exactly that: the FINN build drops such a node, so otherwise the hardware would compute
    a slightly different model than the QONNX file at quantizer ties;
  - ResPSA residual: into the table (`ResPSA.table()` = psa table + grid); B-spline coefficients are the table.
"""


import torch
from brevitas.graph.calibrate import calibration_mode
from qonnx.transformation.remove import RemoveIdentityOps

from psa_finn.common.atomic_files import atomic_path
from psa_finn.export.quant_resmlp import QuantLerpPSA, QuantResMLP
from psa_finn.export.quantizers import DEFAULT_BITS, check_bits
from psa_finn.models.checkpoint import read_torch_file
from psa_finn.models.finite_parameters import check_finite_parameters
from psa_finn.common.grid import BSPLINE_GRID_RANGE, LERP_GRID_RANGE
from psa_finn.models.resmlp import ResMLP, build_model, input_shape

QAT_CHECKPOINT_FORMAT = "psa-finn-qat"
LUT_GRID_RANGE = {"relu": LERP_GRID_RANGE, "lerp_psa": LERP_GRID_RANGE, "bspline": BSPLINE_GRID_RANGE}
IDENTITY_ATOL = RemoveIdentityOps().atol   # qonnx's test: numpy.isclose(values, identity, atol=IDENTITY_ATOL).all()
IDENTITY_RTOL = 1e-5                       # (numpy's default rtol)


def batchnorm_affine(norm):
    """(scale, shift) float64 of a `ModifiedBatchNorm1d` in inference: y = x * scale + shift."""
    bn = norm.bn
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def _copy_linear(target, weight, bias):
    with torch.no_grad():
        target.weight.copy_(weight.to(target.weight.dtype))
        target.bias.copy_(bias.to(target.bias.dtype))


def _fold_input_affine(target, linear, scale, shift):
    """target = linear(x * scale + shift)."""
    weight = linear.weight.double()
    _copy_linear(target, weight * scale, linear.bias.double() + weight @ shift)


def _fold_output_affine(target, linear, affine):
    """target = affine(linear(x)) for a per-output-channel affine (layer scale)."""
    w = affine.weight.double()
    _copy_linear(target, linear.weight.double() * w[:, None], linear.bias.double() * w + affine.bias.double())


def exact_identity(values, identity: float):
    """`values`, or exactly `identity` everywhere if qonnx's RemoveIdentityOps would take the tensor for it."""
    reference = torch.full_like(values, identity)
    if torch.isclose(values, reference, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL).all():
        return reference
    return values


def _copy_affine(target, scale, shift):
    with torch.no_grad():
        target.weight.copy_(exact_identity(scale, 1.0).to(target.weight.dtype))
        target.bias.copy_(exact_identity(shift, 0.0).to(target.bias.dtype))


def _copy_lut(target: QuantLerpPSA, function, scale=None, shift=None):
    table = function.table().detach()
    if tuple(table.shape) != tuple(target.table.shape) or float(function.grid_range) != target.grid_range:
        raise ValueError(f"a function table of shape {tuple(table.shape)} on [-{function.grid_range}, "
                         f"{function.grid_range}] does not fit the QAT table {tuple(target.table.shape)} on "
                         f"[-{target.grid_range}, {target.grid_range}]")
    with torch.no_grad():
        target.table.copy_(table)
        if scale is not None:
            target.in_scale.copy_(scale.float())
            target.in_bias.copy_(shift.float())


def empty_qat_model(config: dict, bits: int = DEFAULT_BITS) -> QuantResMLP:
    """The uncalibrated QAT skeleton for a float ResMLP `config` (its hidden width taken from models.ResMLP)."""
    model = build_model(config)
    return QuantResMLP(model.config, model.hidden_dim, bits, model.config["grid_size"],
                       LUT_GRID_RANGE[config["variant"]])


def copy_float_weights(qat: QuantResMLP, model: ResMLP):
    """Fill `qat` from the float `model` (same config), folding the affines as the module docstring says."""
    _copy_linear(qat.embed_linear, model.embed_linear.weight, model.embed_linear.bias)
    for qblock, block in zip(qat.layers, model.layers):
        qtoken, token = qblock.layers[0], block.layers[0]
        _copy_affine(qtoken.affine_1, *batchnorm_affine(token.affine_1))
        _copy_linear(qtoken.layers, token.layers.weight, token.layers.bias)
        _copy_affine(qtoken.affine_2, token.affine_2.weight, token.affine_2.bias)
        qmlp, mlp = qblock.layers[1].layers, block.layers[1]
        scale, shift = batchnorm_affine(mlp.affine_1)
        if model.variant == "relu":
            _fold_input_affine(qmlp[0], mlp.layers[0], scale, shift)
            _fold_output_affine(qmlp[2], mlp.layers[2], mlp.affine_2)
        else:
            _copy_lut(qmlp[0], mlp.layers[0], scale, shift)
            _copy_linear(qmlp[1], mlp.layers[1].weight, mlp.layers[1].bias)
            _copy_lut(qmlp[3], mlp.layers[2])
            _fold_output_affine(qmlp[4], mlp.layers[3], mlp.affine_2)
    _fold_input_affine(qat.classifier, model.classifier, *batchnorm_affine(model.affine))


def calibrate(qat: QuantResMLP, batches) -> QuantResMLP:
    """Set every activation quantizer's range from the inputs in `batches` (images or patches), in place."""
    count = 0
    qat.eval()
    with torch.no_grad(), calibration_mode(qat):
        for x in batches:
            qat(x)
            count += 1
    if count == 0:
        raise ValueError("calibration needs at least one batch of inputs")
    qat.eval()
    return qat


def to_qat_model(float_model: ResMLP, bits: int = DEFAULT_BITS, calibration_batches=None) -> QuantResMLP:
    """The QAT twin of `float_model` at `bits` bits: weights copied and folded, activation ranges calibrated on
    `calibration_batches` (an iterable of input tensors; None leaves the quantizers uncalibrated, e.g. before
    loading a QAT state dict). Returned in eval mode; the float model is not modified."""
    bits = check_bits(bits)
    check_finite_parameters(float_model, "float model")
    qat = empty_qat_model(float_model.config, bits)
    copy_float_weights(qat, float_model)
    if calibration_batches is not None:
        calibrate(qat, calibration_batches)
    return qat.eval()


def random_calibration_batches(config: dict, num_batches: int = 4, batch_size: int = 32, seed: int = 0):
    """Standard-normal inputs (images or signals) for a float `config`: what `--random-init` calibrates on."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, *input_shape(config))
    return [torch.randn(shape, generator=generator) for _ in range(num_batches)]


def save_qat_checkpoint(path, qat: QuantResMLP, **extra):
    """Write `{"format": "psa-finn-qat", "config", "bits", "state_dict", **extra}` to `path` atomically."""
    clash = [k for k in ("format", "config", "bits", "state_dict") if k in extra]
    if clash:
        raise ValueError(f"save_qat_checkpoint: extra keys {clash} are reserved for the checkpoint itself")
    payload = {"format": QAT_CHECKPOINT_FORMAT, "config": dict(qat.config), "bits": qat.bits,
               "state_dict": qat.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def is_qat_checkpoint(payload) -> bool:
    """Whether a loaded checkpoint dict was written by `save_qat_checkpoint`."""
    return isinstance(payload, dict) and payload.get("format") == QAT_CHECKPOINT_FORMAT


def qat_model_from_payload(payload, source="checkpoint") -> QuantResMLP:
    """Rebuild the QAT model of a loaded `save_qat_checkpoint` dict (eval mode); errors name `source`."""
    for key in ("config", "bits", "state_dict"):
        if key not in payload:
            raise ValueError(f"{source}: QAT checkpoint without its '{key}' entry")
    qat = empty_qat_model(payload["config"], payload["bits"])
    try:
        qat.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{source}: weights do not fit the stored config {payload['config']} at "
                         f"{payload['bits']} bits: {err}") from err
    check_finite_parameters(qat, str(source))
    return qat.eval()


def load_qat_checkpoint(path):
    """Read a `save_qat_checkpoint` file: (QAT model in eval mode, extra dict)."""
    payload = read_torch_file(path)
    if not is_qat_checkpoint(payload):
        raise ValueError(f"{path}: not a psa-finn QAT checkpoint (no 'format': '{QAT_CHECKPOINT_FORMAT}' entry)")
    extra = {k: v for k, v in payload.items() if k not in ("format", "config", "bits", "state_dict")}
    return qat_model_from_payload(payload, path), extra
