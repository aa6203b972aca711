"""Run and score an exported QONNX classifier with qonnx's `execute_onnx` (psa-finn's ops from `custom_ops`).

`load_qonnx_model` refuses files that are not a QONNX classifier with one clear message; `model_inputs` gives a
dataset's inputs (images [N, C, H, W] or signals [N, C, L]) the layout the model's input takes, detected from its
shape: flat [N, C*H*W], as they are [N, C, H, W], channels last [N, H, W, C], or ResMLP patches [N, T, P*P*C]
(signals: [N, C*L], [N, C, L], [N, L, C], as one-column images [N, C, L, 1] or patches [N, T, P*C]); `run_onnx`
executes any number of samples (the batch dimension is changed on a copy of the graph); `evaluate_onnx` gives
accuracy and loss.
"""

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


def _patch_size(raw_shape, sample_shape):
    """P when `sample_shape` is (T, P^d*C) of the patches of inputs `raw_shape` = (C, *d spatial sizes); else None."""
    channels, *sizes = raw_shape
    tokens, patch_dim = sample_shape
    if patch_dim % channels:
        return None
    patch = round((patch_dim // channels) ** (1 / len(sizes)))
    count = 1
    for size in sizes:
        count *= size // patch if patch and size % patch == 0 else 0
    return patch if patch and patch ** len(sizes) * channels == patch_dim and count == tokens else None


def model_inputs(model: ModelWrapper, x, source) -> np.ndarray:
    """Inputs `x` [N, C, *spatial] (or inputs already shaped as the model's) in the layout of the model's input, as
    float32 numpy; ValueError naming `source` when no layout fits."""
    x = torch.as_tensor(x, dtype=torch.float32)
    sample_shape = tuple(model.get_tensor_shape(model.graph.input[0].name)[1:])
    if tuple(x.shape[1:]) == sample_shape:
        return x.numpy()
    raw_shape = tuple(x.shape[1:])
    channels_last = raw_shape[1:] + raw_shape[:1]
    patch = _patch_size(raw_shape, sample_shape) if len(sample_shape) == 2 and len(raw_shape) >= 2 else None
    if sample_shape == (int(np.prod(raw_shape)),):
        return x.flatten(1).numpy()
    if len(raw_shape) >= 2 and sample_shape == channels_last:
        return x.movedim(1, -1).contiguous().numpy()
    if len(raw_shape) == 2 and sample_shape == raw_shape + (1,):
        return x[..., None].numpy()
    if len(raw_shape) >= 3 and raw_shape[0] == 1 and sample_shape == raw_shape[1:]:
        return x[:, 0].numpy()  # one channel dropped: an image's rows as tokens ([N, 8, 8] for digits)
    if patch:
        return patchify(x, patch).numpy()
    shapes = ", ".join(map(str, raw_shape))
    patch_values = "*".join(["P"] * (len(raw_shape) - 1) + [str(raw_shape[0])])
    layouts = [f"[N, {int(np.prod(raw_shape))}]", f"[N, {shapes}]", f"[N, {', '.join(map(str, channels_last))}]"]
    layouts += [f"[N, {shapes}, 1]"] if len(raw_shape) == 2 else []
    layouts += [f"[N, {', '.join(map(str, raw_shape[1:]))}] (rows as tokens)"] if raw_shape[:1] == (1,) else []
    raise ValueError(f"{source}: the model's input [N, {', '.join(map(str, sample_shape))}] takes none of the layouts "
                     f"of these inputs [N, {shapes}] ({', '.join(layouts)} or ResMLP patches [N, T, {patch_values}]); "
                     f"check the dataset of the model")


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
