"""Run and score an exported QONNX ResMLP with qonnx's `execute_onnx` (the LerpPSA op from `custom_ops`).

`load_qonnx_model` refuses files that are not a QONNX classifier with one clear message; `run_onnx` executes any
number of samples (the batch dimension is changed on a copy of the graph); `evaluate_onnx` gives accuracy and loss.
"""

import math
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.transformation.infer_shapes import InferShapes

import psa_finn.custom_ops  # noqa: F401  (registers the LerpPSA op)
from psa_finn.custom_ops.domain import OPS_DOMAIN
from psa_finn.models.resmlp import patchify

STANDARD_DOMAINS = ("", "ai.onnx")
QONNX_DOMAINS = ("qonnx.custom_op.general", OPS_DOMAIN)
FIX_HINT = "export one with `python build.py export --checkpoint CKPT --out model.onnx`"


def load_qonnx_model(path) -> ModelWrapper:
    """The QONNX model in `path`: one input [1, T, P*P*Cin], one output [1, classes], only standard ONNX, qonnx and
    custom_ops nodes, at least one of them quantized. ValueError naming the file and the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        model = ModelWrapper(onnx.load(str(path)))
    except Exception as err:
        raise ValueError(f"{path}: not an ONNX file ({type(err).__name__}: {err}); {FIX_HINT}") from err
    foreign = sorted({f"{n.op_type} ({n.domain})" for n in model.graph.node
                      if n.domain not in STANDARD_DOMAINS + QONNX_DOMAINS})
    if foreign:
        raise ValueError(f"{path}: not a QONNX model: nodes of unknown domains {foreign}; {FIX_HINT}")
    if not any(n.domain in QONNX_DOMAINS for n in model.graph.node):
        raise ValueError(f"{path}: not a QONNX model: no Quant (or other qonnx/custom_ops) node, a float ONNX "
                         f"graph; {FIX_HINT}")
    shapes = [model.get_tensor_shape(t.name) for t in (*model.graph.input, *model.graph.output)]
    if len(model.graph.input) != 1 or len(model.graph.output) != 1 or [len(s or ()) for s in shapes] != [3, 2] \
            or shapes[0][0] != 1:
        raise ValueError(f"{path}: expected one input [1, T, P*P*Cin] and one output [1, classes] (a ResMLP "
                         f"classifier), got inputs/outputs of shapes {shapes}; {FIX_HINT}")
    return model


def _as_patches(model: ModelWrapper, x, source) -> np.ndarray:
    """Images [N, Cin, H, W] or signals [N, Cin, L] (patchified) or patches [N, T, values] matching the model input,
    as float32 numpy."""
    x = torch.as_tensor(x, dtype=torch.float32)
    _, tokens, patch_dim = model.get_tensor_shape(model.graph.input[0].name)
    if x.dim() == 4:
        patch = math.isqrt(patch_dim // x.shape[1]) if patch_dim % x.shape[1] == 0 else 0
        if patch and patch * patch * x.shape[1] == patch_dim and x.shape[2] % patch == 0 and x.shape[3] % patch == 0:
            x = patchify(x, patch)
    elif x.dim() == 3 and tuple(x.shape[1:]) != (tokens, patch_dim) and patch_dim % x.shape[1] == 0:
        patch = patch_dim // x.shape[1]
        if x.shape[2] == tokens * patch:
            x = patchify(x, patch)
    if x.dim() != 3 or tuple(x.shape[1:]) != (tokens, patch_dim):
        raise ValueError(f"{source}: the model reads patches [N, {tokens}, {patch_dim}] (or the images or signals "
                         f"they come from), got inputs of shape {tuple(x.shape)}; check the dataset of the model")
    return x.numpy()


def run_onnx(path_or_model, x, batch_size: int = 128) -> np.ndarray:
    """Logits [N, classes] of the QONNX model (file or ModelWrapper) for images or patches `x`."""
    model = path_or_model if isinstance(path_or_model, ModelWrapper) else load_qonnx_model(path_or_model)
    patches = _as_patches(model, x, path_or_model)
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    resized = {}
    outputs = []
    for start in range(0, len(patches), batch_size):
        chunk = patches[start:start + batch_size]
        if len(chunk) not in resized:
            resized[len(chunk)] = model.transform(ChangeBatchSize(len(chunk))).transform(InferShapes())
        outputs.append(execute_onnx(resized[len(chunk)], {in_name: chunk})[out_name])
    return np.concatenate(outputs)


def evaluate_onnx(path, x, y, batch_size: int = 128) -> dict:
    """{'accuracy': % correct, 'loss': mean cross-entropy, 'samples': N} of the QONNX model in `path` on inputs
    `x` (images or patches) and labels `y`, as `models.evaluation.evaluate` reports a torch model."""
    logits = torch.from_numpy(run_onnx(path, x, batch_size))
    y = torch.as_tensor(y, dtype=torch.long)
    if len(y) != len(logits):
        raise ValueError(f"{len(logits)} inputs but {len(y)} labels")
    return {"accuracy": 100.0 * float((logits.argmax(dim=1) == y).float().mean()),
            "loss": float(F.cross_entropy(logits, y)), "samples": int(len(y))}
