"""psa-finn stage package: export (Brevitas QAT twins of the ResMLP variants and their QONNX export).

quantizers         power-of-two quantizers and the 2..8 bit check
lerp_psa_function  the LerpPSA function in torch, bit-identical to the qonnx op, exported as one custom node
quant_resmlp       the QAT ResMLP modules
qat                float -> QAT conversion (folding, calibration) and QAT checkpoints
qonnx_export       QAT model -> QONNX file
onnx_eval          running and scoring a QONNX file with qonnx's execute_onnx
cli                `build.py export`
"""
