"""Float ResMLP -> calibrated QAT form (`to_qat_model`), and QAT checkpoints.

The QAT form is `export.quant_resmlp.QuantResMLP.from_float` (module replacement, affines folded as that module
says); its activation ranges are then calibrated on a few batches. A QAT checkpoint stores the float config, the bit
width and the QAT state dict; it is rebuilt by converting a float model of that config and loading the state dict.
"""


import torch
from brevitas.graph.calibrate import calibration_mode

from psa_finn.common.atomic_files import atomic_path
from psa_finn.export.quant_resmlp import QuantResMLP
from psa_finn.models.checkpoint import read_torch_file
from psa_finn.models.finite_parameters import check_finite_parameters
from psa_finn.models.resmlp import ResMLP, build_model, input_shape
from psa_finn.nn.quantizers import DEFAULT_BITS, check_bits

QAT_CHECKPOINT_FORMAT = "psa-finn-qat"
QAT_CHECKPOINT_VERSION = 2   # 2: learnable functions in the PSA form (nn.QuantLerpPSA), biases on the accumulator grid
RESERVED_KEYS = ("format", "version", "config", "bits", "state_dict")


def empty_qat_model(config: dict, bits: int = DEFAULT_BITS) -> QuantResMLP:
    """The uncalibrated QAT form of a float ResMLP `config` (random weights, to load a QAT state dict into)."""
    return QuantResMLP.from_float(build_model(config).eval(), bits)


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
    """The QAT form of `float_model` at `bits` bits: modules replaced, affines folded, activation ranges calibrated on
    `calibration_batches` (an iterable of input tensors; None leaves the quantizers uncalibrated, e.g. before
    loading a QAT state dict). Returned in eval mode; the float model is not modified."""
    bits = check_bits(bits)
    check_finite_parameters(float_model, "float model")
    qat = QuantResMLP.from_float(float_model, bits)
    if calibration_batches is not None:
        calibrate(qat, calibration_batches)
    return qat.eval()


def random_calibration_batches(config: dict, num_batches: int = 4, batch_size: int = 32, seed: int = 0):
    """Standard-normal inputs (images or signals) for a float `config`: what `--random-init` calibrates on."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, *input_shape(config))
    return [torch.randn(shape, generator=generator) for _ in range(num_batches)]


def save_qat_checkpoint(path, qat: QuantResMLP, **extra):
    """Write `{"format": "psa-finn-qat", "version", "config", "bits", "state_dict", **extra}` to `path` atomically."""
    clash = [k for k in RESERVED_KEYS if k in extra]
    if clash:
        raise ValueError(f"save_qat_checkpoint: extra keys {clash} are reserved for the checkpoint itself")
    payload = {"format": QAT_CHECKPOINT_FORMAT, "version": QAT_CHECKPOINT_VERSION, "config": dict(qat.config),
               "bits": qat.bits, "state_dict": qat.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def is_qat_checkpoint(payload) -> bool:
    """Whether a loaded checkpoint dict was written by `save_qat_checkpoint`."""
    return isinstance(payload, dict) and payload.get("format") == QAT_CHECKPOINT_FORMAT


def qat_model_from_payload(payload, source="checkpoint"):
    """(QAT model in eval mode, extra dict) of a loaded `save_qat_checkpoint` dict; errors name `source`."""
    if payload.get("version") != QAT_CHECKPOINT_VERSION:
        raise ValueError(f"{source}: a QAT checkpoint of an earlier psa-finn (version {payload.get('version', 1)}, "
                         f"tables learned directly; this one reads version {QAT_CHECKPOINT_VERSION}); re-run "
                         f"`build.py train --qat --init FLOAT_CHECKPOINT` to make it again")
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
    return qat.eval(), {k: v for k, v in payload.items() if k not in RESERVED_KEYS}


def load_qat_checkpoint(path):
    """Read a `save_qat_checkpoint` file: (QAT model in eval mode, extra dict). Any kind of model file is read by
    `export.checkpoints.load_model_file`."""
    payload = read_torch_file(path)
    if not is_qat_checkpoint(payload):
        raise ValueError(f"{path}: not a psa-finn QAT checkpoint (no 'format': '{QAT_CHECKPOINT_FORMAT}' entry)")
    return qat_model_from_payload(payload, path)
