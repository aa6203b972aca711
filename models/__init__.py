"""PyTorch side of psa-finn: learnable 1-D functions (PSA, LerpPSA, BSpline), the ResMLP variants, checkpoints."""

from psa_finn.models.bspline import BSpline
from psa_finn.models.checkpoint import load_checkpoint, save_checkpoint
from psa_finn.models.lerp import lerp_table
from psa_finn.models.lerp_psa import LerpPSA
from psa_finn.models.psa import PSA
from psa_finn.models.reference_import import load_reference_checkpoint
from psa_finn.models.res_psa import ResPSA
from psa_finn.models.resmlp import VARIANTS, ResMLP, build_model, patchify

__all__ = ["BSpline", "LerpPSA", "PSA", "ResPSA", "ResMLP", "VARIANTS", "build_model", "patchify", "lerp_table",
           "save_checkpoint", "load_checkpoint", "load_reference_checkpoint"]
