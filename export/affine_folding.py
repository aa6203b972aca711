"""Folding per-channel affines of a float ResMLP into the layers of its QAT form (REFERENCE_SPEC 6.2), in float64.

    batchnorm_affine(norm)              a BatchNorm in inference as (scale, shift): y = x * scale + shift
    fold_input_affine(W, b, s, t)       Linear(x * s + t)   -> (W diag(s), b + W t)
    fold_output_affine(W, b, s, t)      Linear(x) * s + t   -> (diag(s) W, b * s + t)
    exact_identity(values, identity)    the identity exactly, where qonnx's RemoveIdentityOps would take it for one

qonnx's RemoveIdentityOps drops a Mul/Add whose whole constant is within its tolerance of 1/0 during the FINN
conversion; such an affine (an untrained BatchNorm's 1/sqrt(1 + eps)) is made exactly the identity, so the QONNX
model and the hardware compute the same thing at quantizer ties.
"""

import torch
from qonnx.transformation.remove import RemoveIdentityOps

IDENTITY_ATOL = RemoveIdentityOps().atol   # qonnx's test: numpy.isclose(values, identity, atol=IDENTITY_ATOL).all()
IDENTITY_RTOL = 1e-5                       # (numpy's default rtol)


def batchnorm_affine(norm):
    """(scale, shift) float64 of a `ModifiedBatchNorm1d` (or BatchNorm) in inference: y = x * scale + shift."""
    bn = getattr(norm, "bn", norm)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def fold_input_affine(weight, bias, scale, shift):
    """(W', b') with W' x + b' = W (x * scale + shift) + b."""
    weight = weight.double()
    return weight * scale, bias.double() + weight @ shift


def fold_output_affine(weight, bias, scale, shift):
    """(W', b') with W' x + b' = (W x + b) * scale + shift (a per-output-channel affine such as a layer scale)."""
    scale = scale.double()
    return weight.double() * scale[:, None], bias.double() * scale + shift.double()


def exact_identity(values, identity: float):
    """`values`, or exactly `identity` everywhere if qonnx's RemoveIdentityOps would take the tensor for it."""
    reference = torch.full_like(values, identity)
    if torch.isclose(values, reference, rtol=IDENTITY_RTOL, atol=IDENTITY_ATOL).all():
        return reference
    return values
