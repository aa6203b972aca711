"""PyTorch side of psa-finn: learnable 1-D functions (PSA, LerpPSA, BSpline), the ResMLP variants, checkpoints."""

from models.bspline import BSpline
from models.checkpoint import load_checkpoint, save_checkpoint
from models.lerp import lerp_table
from models.lerp_psa import LerpPSA
from models.psa import PSA
from models.reference_import import load_reference_checkpoint
from models.res_psa import ResPSA
from models.resmlp import VARIANTS, ResMLP, build_model, patchify

__all__ = ["BSpline", "LerpPSA", "PSA", "ResPSA", "ResMLP", "VARIANTS", "build_model", "patchify", "lerp_table",
           "save_checkpoint", "load_checkpoint", "load_reference_checkpoint"]
