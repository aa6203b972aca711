"""psa-finn stage package: export (any Brevitas model -> QONNX file; the ResMLP's QAT form; running QONNX files).

    from psa_finn.export import export_qonnx
    export_qonnx(model, example_input, "model.onnx")   # any nn.Module of Brevitas layers and psa_finn.nn layers

qonnx_export    export_qonnx: Brevitas export, checks, execution against the torch model, atomic write
affine_folding  exact folds of BatchNorms and layer scales into the layers of the QAT ResMLP
quant_resmlp    the QAT ResMLP, built from the float model by module replacement
qat             float ResMLP -> calibrated QAT model, QAT checkpoints
onnx_eval       running and scoring a QONNX classifier with qonnx's execute_onnx
cli             `build.py export`
"""

from psa_finn.export.qonnx_export import ExportMismatch, export_qonnx

__all__ = ["export_qonnx", "ExportMismatch"]
