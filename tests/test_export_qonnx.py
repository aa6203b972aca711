"""export.qonnx_export / export.onnx_eval: the QONNX graph FINN needs, executed by qonnx in a fresh process equal to
the fake-quant torch model, and clear refusals of files that are not a QONNX ResMLP."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from psa_finn.export.onnx_eval import evaluate_onnx, load_qonnx_model
from psa_finn.export.qat import to_qat_model
from psa_finn.export.qonnx_export import export_qonnx
from psa_finn.models import ResMLP, patchify
from psa_finn.models.datasets import DATASET_GEOMETRY, load_digits_split

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("relu", "gelu", "lerp_psa", "bspline")
FIXED_ACTIVATION = {"relu": "Relu", "gelu": "Gelu"}  # variants without learnable functions
FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import psa_finn.custom_ops
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes
    for onnx_path, x_path, y_path in zip(*[iter(sys.argv[2:])] * 3):
        x = np.load(x_path)
        model = ModelWrapper(onnx_path).transform(ChangeBatchSize(len(x))).transform(InferShapes())
        np.save(y_path, execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name])
""")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def digits_qat(variant, bits, x_train, embed_dim=16, depth=2, hidden_factor=0.5, seed=0):
    """A calibrated QAT twin of a random digits-shaped ResMLP with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = ResMLP(variant, hidden_factor, embed_dim=embed_dim, depth=depth,
                   **DATASET_GEOMETRY["digits"].model_kwargs())
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return to_qat_model(model.eval(), bits, [x_train[i:i + 128] for i in range(0, 512, 128)])


def execute_in_fresh_process(onnx_paths, patches, folder):
    """Logits of `execute_onnx` for each model, in ONE new interpreter that imports only custom_ops and qonnx."""
    np.save(folder / "x.npy", patches)
    args = [str(a) for path in onnx_paths for a in (path, folder / "x.npy", f"{path}.out.npy")]
    subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT, str(ROOT), *args], check=True, timeout=300)
    return [np.load(f"{path}.out.npy") for path in onnx_paths]


def assert_same_outputs(onnx_out, torch_out):
    assert np.abs(onnx_out - torch_out).max() <= 1e-5
    assert np.array_equal(onnx_out.argmax(axis=1), torch_out.argmax(axis=1))


FRESH_PROCESS_CASES = (("relu", 8), ("gelu", 8), ("lerp_psa", 8), ("bspline", 8), ("lerp_psa", 4))


@pytest.fixture(scope="module")
def fresh_process_outputs(digits, tmp_path_factory):
    """{(variant, bits): (execute_onnx logits, QAT torch logits)} on 96 digits test samples."""
    x_train, _, x_test, _ = digits
    folder = tmp_path_factory.mktemp("fresh")
    x = x_test[:96]
    paths, expected = [], []
    for variant, bits in FRESH_PROCESS_CASES:
        qat = digits_qat(variant, bits, x_train)
        paths.append(folder / f"{variant}_{bits}.onnx")
        export_qonnx(qat, torch.zeros(qat.input_shape), paths[-1])
        with torch.no_grad():
            expected.append(qat(x).numpy())
    outputs = execute_in_fresh_process(paths, patchify(x, 2).numpy(), folder)
    return dict(zip(FRESH_PROCESS_CASES, zip(outputs, expected)))


@pytest.mark.parametrize("case", FRESH_PROCESS_CASES, ids=[f"{v}-{b}bit" for v, b in FRESH_PROCESS_CASES])
def test_execute_onnx_in_fresh_process_equals_qat_model(case, fresh_process_outputs):
    assert_same_outputs(*fresh_process_outputs[case])


def quant_params(model, node):
    return [model.get_initializer(name) for name in node.input[1:]], \
           [a.i for a in node.attribute if a.name in ("signed", "narrow")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_is_what_finn_needs(variant, digits, tmp_path):
    qat = digits_qat(variant, 4, digits[0])
    model = ModelWrapper(str(export_qonnx(qat, torch.zeros(qat.input_shape), tmp_path / "m.onnx")))
    ops = [n.op_type for n in model.graph.node]
    assert model.get_tensor_shape("global_in") == [1, 16, 4] and model.get_tensor_shape("global_out") == [1, 10]
    assert "BatchNormalization" not in ops and ops.count("ReduceMean") == 1
    # host-side dequantisation: the logits come from the classifier's Gemm, no output quantizer; its bias is
    # quantized on the accumulator grid (input scale * weight scale, 32 bits)
    last = model.find_producer("global_out")
    assert last.op_type == "Gemm" and [model.find_producer(i).op_type for i in last.input] == ["Quant"] * 3
    pool_quant, weight_quant, bias_quant = (model.find_producer(i) for i in last.input)
    bias_scale = model.get_initializer(bias_quant.input[1])
    assert np.array_equal(bias_scale, model.get_initializer(pool_quant.input[1]) *
                          model.get_initializer(weight_quant.input[1]).reshape(-1))
    assert model.get_initializer(bias_quant.input[3]) == 32
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    biases = [n for n in quants if n.input[0].endswith("bias") or model.get_initializer(n.input[0]) is not None
              and model.get_initializer(n.input[0]).ndim == 1]
    assert len(biases) == 1 + 2 * 3 + 1  # embedding, per block the token and two channel Linears, classifier
    assert {int(model.get_initializer(n.input[3])) for n in quants if n not in biases} == {4}
    assert {int(model.get_initializer(n.input[3])) for n in biases} == {32}
    # every residual Add: both inputs from Quant nodes with the same scale, zero point, bit width and signedness
    residual_adds = [n for n in model.graph.node if n.op_type == "Add"
                     and all(model.find_producer(i) is not None and model.find_producer(i).op_type == "Quant"
                             for i in n.input)]
    assert len(residual_adds) == 2 * 2
    for add in residual_adds:
        (a_params, a_attrs), (b_params, b_attrs) = (quant_params(model, model.find_producer(i)) for i in add.input)
        assert all(np.array_equal(a, b) for a, b in zip(a_params, b_params)) and a_attrs == b_attrs
        assert np.log2(a_params[0]).is_integer()  # power-of-two scale
    luts = [n for n in model.graph.node if n.op_type == "LerpPSA"]
    assert len(luts) == (0 if variant in FIXED_ACTIVATION else 2 * 2)
    for activation in FIXED_ACTIVATION.values():
        assert ops.count(activation) == (2 if FIXED_ACTIVATION.get(variant) == activation else 0)
    for gelu in (n for n in model.graph.node if n.op_type == "Gelu"):  # between quantizers: the lowering tabulates it
        assert model.find_producer(gelu.input[0]).op_type == "Quant"
        assert [c.op_type for c in model.find_consumers(gelu.output[0])] == ["Quant"]
    with torch.no_grad():
        tables = [m.table().numpy() for _, m in qat.lut_banks()]
    for node, table in zip(luts, tables):
        assert node.domain == "psa_finn.custom_ops"
        assert model.find_producer(node.input[0]).op_type == "Quant"
        assert [c.op_type for c in model.find_consumers(node.output[0])] == ["Quant"]
        assert np.array_equal(model.get_initializer(node.input[1]), table)
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attributes == {"grid_range": pytest.approx(4.0), "channel_axis": -1}
    # the BN affine folds into the first LUT of each channel mixer only
    assert [len(n.input) for n in luts] == ([] if variant in FIXED_ACTIVATION else [4, 2] * 2)


def test_evaluate_onnx_scores_like_the_torch_model(digits, tmp_path):
    x_train, _, x_test, y_test = digits
    qat = digits_qat("lerp_psa", 8, x_train)
    export_qonnx(qat, torch.zeros(qat.input_shape), tmp_path / "m.onnx")
    result = evaluate_onnx(tmp_path / "m.onnx", x_test[:150], y_test[:150], batch_size=64)
    with torch.no_grad():
        logits = qat(x_test[:150])
    assert result["samples"] == 150
    assert result["accuracy"] == pytest.approx(100.0 * float((logits.argmax(1) == y_test[:150]).float().mean()))
    assert result["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y_test[:150])), rel=1e-5)
    with pytest.raises(ValueError, match=r"m.onnx: the model's input \[N, 16, 4\] takes none of the layouts of these "
                                         r"inputs \[N, 3, 8, 8\] \(\[N, 192\], \[N, 3, 8, 8\], \[N, 8, 8, 3\] or "
                                         r"ResMLP patches \[N, T, P\*P\*3\]\)"):
        evaluate_onnx(tmp_path / "m.onnx", torch.zeros(5, 3, 8, 8), torch.zeros(5))


def test_files_that_are_not_qonnx_are_refused(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="junk.onnx: not an ONNX file"):
        load_qonnx_model(tmp_path / "junk.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "float", [x], [y])
    onnx.save(helper.make_model(graph), tmp_path / "float.onnx")
    with pytest.raises(ValueError, match="float.onnx: not a QONNX model: no Quant"):
        load_qonnx_model(tmp_path / "float.onnx")
    foreign = helper.make_graph([helper.make_node("Thing", ["x"], ["y"], domain="acme.ops")], "g", [x], [y])
    onnx.save(helper.make_model(foreign), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match=r"unknown domains \['Thing \(acme.ops\)'\]"):
        load_qonnx_model(tmp_path / "foreign.onnx")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_qonnx_model(tmp_path / "missing.onnx")


def test_failed_export_leaves_no_file(digits, tmp_path):
    qat = digits_qat("bspline", 8, digits[0])
    with torch.no_grad():
        qat.layers[0].layers[1].layers[2].function._coefficients_vect[5] = float("inf")
    with pytest.raises(ValueError, match=r"layers\.0\.layers\.1\.layers\.2\.function\._coefficients_vect.*non-finite"):
        export_qonnx(qat, torch.zeros(qat.input_shape), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_whole_digits_test_set_full_width_models(digits, tmp_path):
    x_train, _, x_test, _ = digits
    paths, expected = [], []
    for variant in VARIANTS:
        qat = digits_qat(variant, 8, x_train, embed_dim=96, depth=4, hidden_factor=1.0)
        paths.append(tmp_path / f"{variant}.onnx")
        export_qonnx(qat, torch.zeros(qat.input_shape), paths[-1])
        with torch.no_grad():
            expected.append(qat(x_test).numpy())
    for out, ref in zip(execute_in_fresh_process(paths, patchify(x_test, 2).numpy(), tmp_path), expected):
        assert_same_outputs(out, ref)


@pytest.mark.slow
def test_finn_streamlines_the_relu_export_to_integer_matmuls(digits, tmp_path):
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline.streamline_plus import StreamlinePlus

    qat = digits_qat("relu", 8, digits[0], depth=1)
    model = ModelWrapper(str(export_qonnx(qat, torch.zeros(qat.input_shape), tmp_path / "m.onnx")))
    model = model.transform(ConvertQONNXtoFINN()).transform(StreamlinePlus())
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 1 + 3 + 1  # embed, token, two channel, classifier
    for node in matmuls + [n for n in model.graph.node if n.op_type == "Add"][:-1]:  # last Add: host dequant
        assert all(model.get_tensor_datatype(i).is_integer() for i in node.input), node.name
