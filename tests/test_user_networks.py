"""Networks written the way a user writes them, with the public API only (torch, brevitas, psa_finn.nn,
psa_finn.export, psa_finn.transforms, `build.py eval`): an MLP on [N, 64], a small CNN (Conv2d -> QuantLerpPSA ->
MaxPool) on [N, 1, 8, 8] and a per-pixel network on channels-last [N, 8, 8, 1], trained a few epochs on digits,
exported, executed by qonnx in a fresh process equal to torch bit for bit, lowered (auto and full equal to the
export bit for bit; lerp64 equal to the paper's interpolation node by node) and scored by `build.py eval`.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from psa_finn.custom_ops.domain import CHANNEL_AXIS_ATTR
from psa_finn.export import export_qonnx
from psa_finn.models.datasets import load_digits_split
from psa_finn.nn import QuantLerpPSA
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant
from psa_finn.transforms.lower_quantized_functions import KEPT_FORMS, lower_quantized_functions

ROOT = Path(__file__).resolve().parents[1]
EXACT = dict(weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)
FRESH_PROCESS_SCRIPT = """
import sys
import numpy as np
import psa_finn.custom_ops
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.transformation.infer_shapes import InferShapes
x = np.load(sys.argv[2])
model = ModelWrapper(sys.argv[1]).transform(ChangeBatchSize(len(x))).transform(InferShapes())
np.save(sys.argv[3], execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name])
"""


def mlp():
    """[N, 64] -> QuantLinear -> QuantLerpPSA -> QuantLinear."""
    return torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                               QuantLinear(64, 24, **EXACT), QuantLerpPSA(24, return_quant_tensor=True),
                               QuantLinear(24, 10, **EXACT))


def cnn():
    """[N, 1, 8, 8] -> QuantConv2d -> QuantLerpPSA (channel_dim=1) -> MaxPool -> QuantLinear."""
    return torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                               QuantConv2d(1, 8, 3, padding=1, **EXACT), QuantLerpPSA(8, return_quant_tensor=True),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(), QuantLinear(8 * 4 * 4, 10, **EXACT))


def per_pixel():
    """[N, 8, 8, 1] -> per-pixel QuantLinear -> QuantLerpPSA (channel_dim=-1) -> QuantLinear over all pixels."""
    return torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                               QuantLinear(1, 4, **EXACT), QuantLerpPSA(4, channel_dim=-1),
                               torch.nn.Flatten(), QuantLinear(8 * 8 * 4, 10, input_quant=SignedActQuant, **EXACT))


NETWORKS = {"mlp": (mlp, lambda x: x.flatten(1)), "cnn": (cnn, lambda x: x),
            "per_pixel": (per_pixel, lambda x: x.permute(0, 2, 3, 1).contiguous())}
NETWORK_PARAMS = ("mlp", "cnn", "per_pixel")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def train(model, x, y, epochs=4, seed=0):
    """A few epochs of Adam, as a user would; returns the model in eval mode."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def eval_accuracy(path) -> float:
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "eval", "--checkpoint", str(path),
                             "--dataset", "digits"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(re.search(r"accuracy ([0-9.]+)%", result.stdout).group(1))


def lerp64_reference(codes, table, input_type):
    """The paper's lerp64 lookup, written out: y = T[k>>2] + floor(((T[(k>>2)+1] - T[k>>2]) * (k&3) + 2) / 4)."""
    k = codes.astype(np.int64) - int(DataType[input_type].min())
    channel = np.arange(table.shape[0])
    low = table[channel, k >> 2]
    high = table[channel, (k >> 2) + 1]
    return low + np.floor(((high - low) * (k & 3) + 2) / 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORK_PARAMS)
def test_user_network_trains_exports_lowers_and_scores(name, digits, tmp_path):
    build_network, layout = NETWORKS[name]
    x_train, y_train, x_test, y_test = digits
    model = train(build_network(), layout(x_train), y_train)
    inputs = layout(x_test)
    with torch.no_grad():
        logits = model(inputs).numpy()
    accuracy = 100.0 * float((logits.argmax(1) == y_test.numpy()).mean())
    assert accuracy > 80.0, accuracy

    path = export_qonnx(model, inputs[:1], tmp_path / f"{name}.onnx", tolerance=0.0)
    np.save(tmp_path / "x.npy", inputs.numpy())
    subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(path), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, timeout=600)
    assert np.array_equal(np.load(tmp_path / "y.npy"), logits)
    assert eval_accuracy(path) == pytest.approx(accuracy, abs=0.005)

    exported = ModelWrapper(str(path))
    batch = {"global_in": inputs[:48].numpy()}
    reference = execute_onnx(exported.transform(ChangeBatchSize(48)).transform(InferShapes()), batch)["global_out"]
    for mode in ("auto", "full", "lerp64"):
        lowered, report = lower_quantized_functions(exported.transform(InferShapes()), mode)
        lowered = lowered.transform(InferShapes()).transform(InferDataTypes())
        assert len([entry for entry in report if entry.form not in KEPT_FORMS]) == 1
        assert not lowered.get_nodes_by_op_type("LerpPSA")
        lowered.save(str(tmp_path / f"{name}_{mode}.onnx"))
        resized = lowered.transform(ChangeBatchSize(48)).transform(InferShapes())
        context = execute_onnx(resized, batch, return_full_exec_context=True)
        if mode != "lerp64":
            assert np.array_equal(context["global_out"], reference), mode
            continue
        (lut,) = resized.get_nodes_by_op_type("PerChannelLUT")
        attributes = {a.name: helper.get_attribute_value(a) for a in lut.attribute}
        axis = attributes.get(CHANNEL_AXIS_ATTR, -1)
        codes = np.moveaxis(context[lut.input[0]], axis, -1).reshape(-1, len(resized.get_initializer(lut.input[1])))
        expected = lerp64_reference(codes, resized.get_initializer(lut.input[1]),
                                    attributes["inputDataType"].decode())
        produced = np.moveaxis(context[lut.output[0]], axis, -1).reshape(codes.shape)
        assert np.array_equal(produced, expected)
        assert abs(eval_accuracy(tmp_path / f"{name}_{mode}.onnx") - accuracy) <= 3.0


@pytest.mark.slow
def test_brevitas_examples_tfc_with_quant_lerp_psa_in_place_of_its_activations(digits, tmp_path):
    """A network not designed around psa-finn: brevitas_examples' TFC (QuantLinear -> BatchNorm1d -> QuantIdentity
    x3 -> QuantLinear -> TensorNorm, float weight scales) with each hidden QuantIdentity replaced by a QuantLerpPSA
    of the same bit width; it trains, exports within float rounding, scores by `build.py eval` as in torch, and
    lowers to a graph equal to the export."""
    from brevitas_examples.bnn_pynq.models.FC import FC

    torch.manual_seed(0)
    model = FC(num_classes=10, weight_bit_width=4, act_bit_width=4, in_bit_width=8, in_channels=1,
               out_features=[32, 32, 32], in_features=(8, 8))
    features = model.features
    replaced = 0
    for index in range(1, len(features)):
        if isinstance(features[index], QuantIdentity) and isinstance(features[index - 1], torch.nn.BatchNorm1d):
            features[index] = QuantLerpPSA(features[index - 1].num_features, bit_width=4)
            replaced += 1
    assert replaced == 3
    x_train, y_train, x_test, y_test = digits
    model = train(model, x_train, y_train, epochs=5)
    with torch.no_grad():
        logits = model(x_test).numpy()
    accuracy = 100.0 * float((logits.argmax(1) == y_test.numpy()).mean())
    assert accuracy > 70.0, accuracy
    path = export_qonnx(model, x_test[:1], tmp_path / "tfc.onnx")
    exported = ModelWrapper(str(path))
    assert len(exported.get_nodes_by_op_type("LerpPSA")) == 3
    assert eval_accuracy(path) == pytest.approx(accuracy, abs=0.3)  # float scales: equal up to rounding
    batch = {"global_in": x_test[:48].numpy()}
    resized = exported.transform(ChangeBatchSize(48)).transform(InferShapes())
    lowered = lower_quantized_functions(exported.transform(InferShapes()), "auto")[0].transform(ChangeBatchSize(48))
    assert not lowered.get_nodes_by_op_type("LerpPSA")
    assert np.array_equal(execute_onnx(lowered.transform(InferShapes()), batch)["global_out"],
                          execute_onnx(resized, batch)["global_out"])
