"""Builds the trial's own networks from the README alone; records API-level failures (one JSON line per case)."""
import json, shutil, sys, traceback
from pathlib import Path
import onnx, torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from psa_finn.export import export_qonnx
from psa_finn.models.datasets import load_digits_split
from psa_finn.nn import QuantLerpPSA
from psa_finn.nn.quantizers import AccumulatorBiasQuant, ChannelWeightQuant, SignedActQuant

W = Path(sys.argv[1])
exact = dict(weight_quant=ChannelWeightQuant, bias_quant=AccumulatorBiasQuant)
x_train, y_train, x_test, y_test = load_digits_split()
xf = x_test.flatten(1)
log = open(W / "api.jsonl", "w")

def record(case, fn):
    try:
        fn()
        log.write(json.dumps({"case": case, "raised": False, "msg": ""}) + "\n")
    except Exception as e:  # the user's view: what the exception says
        msg = f"{type(e).__name__}: {e}"
        log.write(json.dumps({"case": case, "raised": True, "msg": msg}) + "\n")
    log.flush()

def train(model, x, epochs=2):
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        for b in torch.randperm(len(x_train)).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[b]), y_train[b])
            opt.zero_grad(), loss.backward(), opt.step()
    model.eval()

torch.manual_seed(0)
def mlp(*tail, act=None, width=64):
    act = act if act is not None else QuantLerpPSA(16, return_quant_tensor=True)
    return torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                               QuantLinear(width, 16, **exact), act, QuantLinear(16, 10, **exact), *tail)

def good():
    m = mlp(); train(m, x_train.flatten(1)); export_qonnx(m, xf[:1], W / "mlp.onnx")
    shutil.copy(W / "mlp.onnx", W / "mlp_copy.onnx")
record("gen_mlp", good)
record("gen_mlp_softmax", lambda: export_qonnx(mlp(torch.nn.Softmax(dim=1)).eval(), xf[:1], W / "mlp_softmax.onnx"))
record("gen_mlp_logsoftmax", lambda: export_qonnx(mlp(torch.nn.LogSoftmax(dim=1)).eval(), xf[:1], W / "mlp_logsoftmax.onnx"))
record("gen_mlp_batch4", lambda: export_qonnx(mlp().eval(), xf[:4], W / "mlp_batch4.onnx"))
record("gen_mlp_in32", lambda: export_qonnx(mlp(width=32).eval(), xf[:1, :32], W / "mlp_in32.onnx"))
def bn():
    m = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                            QuantLinear(64, 16, weight_quant=ChannelWeightQuant, bias=False), torch.nn.BatchNorm1d(16),
                            QuantReLU(return_quant_tensor=True), QuantLinear(16, 10, **exact))
    train(m, x_train.flatten(1), 1); export_qonnx(m, xf[:1], W / "mlp_bn.onnx")
record("gen_mlp_bn", bn)
def gelu():
    m = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                            QuantLinear(64, 16, **exact), QuantIdentity(act_quant=SignedActQuant), torch.nn.GELU(),
                            QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True), QuantLinear(16, 10, **exact))
    export_qonnx(m.eval(), xf[:1], W / "mlp_gelu.onnx")
record("gen_mlp_gelu", gelu)
def silu_acc():  # SiLU straight on the accumulator, no quantizer before it
    m = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                            QuantLinear(64, 16, weight_quant=ChannelWeightQuant), torch.nn.SiLU(),
                            QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True), QuantLinear(16, 10, **exact))
    export_qonnx(m.eval(), xf[:1], W / "mlp_silu_acc.onnx")
record("gen_mlp_silu_acc", silu_acc)
def noinq():  # forgot the input quantizer (and so the exact bias quantizer cannot be used either)
    m = torch.nn.Sequential(QuantLinear(64, 16, weight_quant=ChannelWeightQuant),
                            QuantLerpPSA(16, return_quant_tensor=True), QuantLinear(16, 10, **exact))
    export_qonnx(m.eval(), xf[:1], W / "mlp_noinq.onnx")
record("api_noinq_export", noinq)
def cnn():
    m = torch.nn.Sequential(QuantIdentity(act_quant=SignedActQuant, return_quant_tensor=True),
                            QuantConv2d(1, 16, 3, padding=1, **exact), QuantLerpPSA(16, return_quant_tensor=True),
                            torch.nn.MaxPool2d(2), torch.nn.Flatten(), QuantLinear(16 * 4 * 4, 10, **exact))
    train(m, x_train, 1); export_qonnx(m, x_test[:1], W / "cnn.onnx")
record("gen_cnn", cnn)
record("api_grid1", lambda: QuantLerpPSA(16, grid_size=1))
record("api_bits1", lambda: export_qonnx(mlp(act=QuantLerpPSA(16, bit_width=1, return_quant_tensor=True)).eval(), xf[:1], W / "bits1.onnx"))
record("api_bits17", lambda: export_qonnx(mlp(act=QuantLerpPSA(16, bit_width=17, return_quant_tensor=True)).eval(), xf[:1], W / "bits17.onnx"))
record("api_negrange", lambda: QuantLerpPSA(16, grid_range=-4.0))
record("api_wrongch", lambda: mlp(act=QuantLerpPSA(10, return_quant_tensor=True)).eval()(xf[:2]))
# float ONNX straight from torch, and an exported model edited the way users edit them
float_m = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)).eval()
record("gen_float", lambda: torch.onnx.export(float_m, xf[:1], str(W / "float.onnx"), dynamo=False))
def edits():
    m = onnx.load(W / "mlp.onnx")
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 99
    onnx.save(m, W / "mlp_opset99.onnx")
    m = onnx.load(W / "mlp.onnx")
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(m, W / "mlp_dynbatch.onnx")
record("gen_edits", edits)
