"""Test helpers: small QONNX graphs `x -> [Quant] -> function nodes -> Quant -> y` in any layout, inputs holding
every code of a quantizer for every channel, and execution. Written against qonnx directly, not psa_finn's code."""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

import psa_finn.custom_ops  # noqa: F401  (registers LerpPSA and PerChannelLUT with qonnx)

OPSETS = [helper.make_opsetid("", 20), helper.make_opsetid("psa_finn.custom_ops", 1),
          helper.make_opsetid("qonnx.custom_op.general", 1)]
# layout name -> (shape factory (channels, positions needed) -> shape, channel axis)
LAYOUTS = {
    "NC": (lambda c, k: [k, c], 1),
    "NCW": (lambda c, k: [2, c, -(-k // 2)], 1),
    "NCHW": (lambda c, k: [1, c, 2, -(-k // 2)], 1),
    "NHWC": (lambda c, k: [1, 2, -(-k // 2), c], 3),
    "NTC": (lambda c, k: [2, -(-k // 2), c], 2),
}


def quantizer(bits, signed, scale=1.0, zeropt=0.0, narrow=False, rounding_mode="ROUND"):
    """A Quant node's settings; scale/zeropt as numpy arrays shaped to broadcast against the tensor."""
    return {"bits": bits, "signed": signed, "narrow": narrow, "rounding_mode": rounding_mode,
            "scale": np.asarray(scale, dtype=np.float32), "zeropt": np.asarray(zeropt, dtype=np.float32)}


def code_range(q):
    """(lowest, highest) code of quantizer q."""
    low = -(2 ** (q["bits"] - 1)) if q["signed"] else 0
    high = 2 ** (q["bits"] - 1) - 1 if q["signed"] else 2 ** q["bits"] - 1
    return low + int(q["narrow"] and q["signed"]), high - int(q["narrow"] and not q["signed"])


def _quant_node(tensor, output, q, name, inits):
    for part in ("scale", "zeropt", "bits"):
        inits[f"{name}_{part}"] = np.asarray(q[part], dtype=np.float32)
    return helper.make_node("Quant", [tensor, f"{name}_scale", f"{name}_zeropt", f"{name}_bits"], [output],
                            domain="qonnx.custom_op.general", name=name, signed=int(q["signed"]),
                            narrow=int(q["narrow"]), rounding_mode=q["rounding_mode"])


def chain_model(shape, nodes, qin, qout, constants=None):
    """x [shape] -> Quant 'quant_in' (qin; None: none) -> `nodes` (reading 'xq', writing 'f') -> Quant 'quant_out'
    -> y. `constants` are the function nodes' initializers."""
    inits = dict(constants or {})
    graph_nodes = [_quant_node("x", "xq", qin, "quant_in", inits)] if qin is not None else \
        [helper.make_node("Identity", ["x"], ["xq"], name="input")]
    graph_nodes += list(nodes) + [_quant_node("f", "y", qout, "quant_out", inits)]
    graph = helper.make_graph(graph_nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=OPSETS))
    for name, value in inits.items():
        model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return model.transform(InferShapes())


def every_code_input(shape, axis, q, rng):
    """x [shape] holding, for every channel along `axis`, every code of q (dequantized with that channel's scale
    and zero point) at shuffled positions; the positions left over get random codes."""
    channels = shape[axis]
    positions = int(np.prod(shape)) // channels
    low, high = code_range(q)
    codes = np.arange(low, high + 1)
    assert positions >= codes.size, "shape too small for every code"
    per_channel = np.stack([rng.permutation(np.concatenate([codes, rng.integers(low, high + 1,
                                                                                positions - codes.size)]))
                            for _ in range(channels)], axis=-1)  # [positions, C]
    other = [size for i, size in enumerate(shape) if i != axis]
    codes_tensor = np.moveaxis(per_channel.reshape(other + [channels]), -1, axis).astype(np.float32)
    return (codes_tensor - q["zeropt"]) * q["scale"]


def channel_shaped(values, shape, axis):
    """[C] values as a full-rank array along `axis` of a tensor of `shape`."""
    target = [1] * len(shape)
    target[axis] = len(values)
    return np.asarray(values, dtype=np.float32).reshape(target)


def run(model, x):
    """The graph's output y for input x."""
    return execute_onnx(model, {"x": np.asarray(x, dtype=np.float32)})["y"]
