"""QAT ResMLP -> QONNX file: Brevitas' TorchScript export, qonnx clean-up, checks, atomic write.

The graph reads host-side patches [1, T, P*P*Cin] and returns float logits [1, classes]. Each learnable 1-D
function is one `psa_finn.custom_ops::LerpPSA` node between two `Quant` nodes; ReLU is `Relu -> Quant`; the token
mean is a `ReduceMean` over axis 1; the classifier's MatMul -> Mul/Add dequantisation ends the graph (host side).
"""


import onnx
import torch
from brevitas.export import export_qonnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from psa_finn.common.atomic_files import atomic_path
import psa_finn.custom_ops  # noqa: F401  (registers the LerpPSA op for shape and datatype inference)
from psa_finn.custom_ops.domain import LERP_PSA_OP, OPS_DOMAIN, OPS_DOMAIN_VERSION, is_op, match_quantized_function
from psa_finn.export.qat import check_finite_parameters
from psa_finn.export.quant_resmlp import QuantResMLP

INPUT_NAME = "global_in"
OUTPUT_NAME = "global_out"


def export_qonnx_model(qat: QuantResMLP, out_path) -> ModelWrapper:
    """Export `qat` (calibrated) to the QONNX file `out_path`, written atomically; returns the cleaned model."""
    check_finite_parameters(qat, "QAT model")
    example = torch.zeros(qat.input_shape)
    with atomic_path(out_path, suffix=".tmp.onnx") as tmp:
        training = qat.training
        qat.eval()
        try:
            opsets = {OPS_DOMAIN: OPS_DOMAIN_VERSION} if qat.lut_banks() else {}
            export_qonnx(qat, args=example, export_path=tmp, dynamo=False, custom_opsets=opsets)
        finally:
            qat.train(training)
        model = cleanup_model(ModelWrapper(tmp))
        _check_exported(model, qat)
        model.save(tmp)
    return model


def _check_exported(model: ModelWrapper, qat: QuantResMLP):
    """The exported graph has the expected input/output names and one LerpPSA node per table, each between Quants."""
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise RuntimeError(f"unexpected graph inputs/outputs {names} after qonnx clean-up")
    luts = [n for n in model.graph.node if is_op(n, LERP_PSA_OP)]
    if len(luts) != len(qat.lut_banks()):
        raise RuntimeError(f"expected {len(qat.lut_banks())} {OPS_DOMAIN}::LerpPSA nodes, found "
                           f"{[(n.name, n.domain) for n in luts]}")
    for node in luts:
        match_quantized_function(model, node)
    onnx.checker.check_model(model.model)
