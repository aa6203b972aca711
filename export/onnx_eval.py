"""Run and score an exported QONNX classifier with qonnx's `execute_onnx` (psa-finn's ops from `custom_ops`).

`load_qonnx_model` refuses files that are not a QONNX classifier with one clear message; `model_inputs` gives a
dataset's images [N, C, H, W] the layout the model's input takes, detected from its shape: flat [N, C*H*W],
images [N, C, H, W], channels last [N, H, W, C], or ResMLP patches [N, T, P*P*C]; `run_onnx` executes any number
of samples (the batch dimension is changed on a copy of the graph); `evaluate_onnx` gives accuracy and loss.
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
FIX_HINT = "export one with `python build.py export --checkpoint CKPT --out model.onnx` or psa_finn.export.export_qonnx"


def load_qonnx_model(path) -> ModelWrapper:
    """The QONNX classifier in `path`: one input, one output [N, classes], only standard ONNX, qonnx and psa-finn
    nodes, at least one of them quantized. ValueError naming the file and the problem otherwise."""
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
        raise ValueError(f"{path}: not a QONNX model: no Quant (or other qonnx/psa-finn) node, a float ONNX "
                         f"graph; {FIX_HINT}")
    shapes = [model.get_tensor_shape(t.name) for t in (*model.graph.input, *model.graph.output)]
    if len(model.graph.input) != 1 or len(model.graph.output) != 1 or len(shapes[1] or ()) != 2 \
            or len(shapes[0] or ()) < 2:
        raise ValueError(f"{path}: expected a classifier with one input [N, ...] and one output [N, classes], got "
                         f"inputs/outputs of shapes {shapes}; {FIX_HINT}")
    return model


def _patch_size(images_shape, sample_shape):
    """P when `sample_shape` is (T, P*P*C) of patches of images [C, H, W]; None otherwise."""
    channels, height, width = images_shape
    tokens, patch_dim = sample_shape
    patch = math.isqrt(patch_dim // channels) if patch_dim % channels == 0 else 0
    if patch and patch * patch * channels == patch_dim and height % patch == 0 and width % patch == 0 \
            and (height // patch) * (width // patch) == tokens:
        return patch
    return None


def model_inputs(model: ModelWrapper, x, source) -> np.ndarray:
    """Images `x` [N, C, H, W] (or inputs already shaped as the model's) in the layout of the model's input, as
    float32 numpy; ValueError naming `source` when no layout fits."""
    x = torch.as_tensor(x, dtype=torch.float32)
    sample_shape = tuple(model.get_tensor_shape(model.graph.input[0].name)[1:])
    if tuple(x.shape[1:]) == sample_shape:
        return x.numpy()
    if x.dim() == 4:
        images_shape = tuple(x.shape[1:])
        channels, height, width = images_shape
        if sample_shape == (channels * height * width,):
            return x.flatten(1).numpy()
        if sample_shape == (height, width, channels):
            return x.permute(0, 2, 3, 1).contiguous().numpy()
        if len(sample_shape) == 2 and _patch_size(images_shape, sample_shape):
            return patchify(x, _patch_size(images_shape, sample_shape)).numpy()
        layouts = f"[N, {channels * height * width}], [N, {channels}, {height}, {width}], " \
                  f"[N, {height}, {width}, {channels}] or ResMLP patches [N, T, P*P*{channels}]"
    else:
        layouts = f"inputs of shape [N, {', '.join(map(str, sample_shape))}]"
    raise ValueError(f"{source}: the model's input [N, {', '.join(map(str, sample_shape))}] takes none of the "
                     f"layouts of these inputs {list(x.shape)} ({layouts}); check the dataset of the model")


def run_onnx(path_or_model, x, batch_size: int = 128) -> np.ndarray:
    """Logits [N, classes] of the QONNX model (file or ModelWrapper) for images `x` (see `model_inputs`)."""
    model = path_or_model if isinstance(path_or_model, ModelWrapper) else load_qonnx_model(path_or_model)
    inputs = model_inputs(model, x, path_or_model)
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    resized = {}
    outputs = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        if len(chunk) not in resized:
            resized[len(chunk)] = model.transform(ChangeBatchSize(len(chunk))).transform(InferShapes())
        outputs.append(execute_onnx(resized[len(chunk)], {in_name: chunk})[out_name])
    return np.concatenate(outputs)


def evaluate_onnx(path, x, y, batch_size: int = 128) -> dict:
    """{'accuracy': % correct, 'loss': mean cross-entropy, 'samples': N} of the QONNX model in `path` on inputs
    `x` (images, see `model_inputs`) and labels `y`, as `models.evaluation.evaluate` reports a torch model."""
    logits = torch.from_numpy(run_onnx(path, x, batch_size))
    y = torch.as_tensor(y, dtype=torch.long)
    if len(y) != len(logits):
        raise ValueError(f"{len(logits)} inputs but {len(y)} labels")
    return {"accuracy": 100.0 * float((logits.argmax(dim=1) == y).float().mean()),
            "loss": float(F.cross_entropy(logits, y)), "samples": int(len(y))}
