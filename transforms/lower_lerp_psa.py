"""LowerLerpPSA: replace Quant -> LerpPSA -> Quant by integer hardware forms that compute the same output codes.

The function is evaluated at every input code (through the same numpy code the graph executes), giving each
channel's integer table k_c(q). Then, per node:
- "threshold": MultiThreshold -> [Add a_c] -> [Mul m_c], exact when every channel's table is monotone
  (non-decreasing or non-increasing, per channel). The MultiThreshold counts n = k - kmin (rising channels) or
  kmax - k (falling channels) with thresholds halfway between neighbouring input values; the output
  m_c * (n + a_c) equals the output Quant's (k - z) * s bit for bit (m_c = +-s_c, a_c integer).
- "full" / "lerp64": Mul(1/s_in) -> [Add z_in] -> PerChannelLUT -> [Add -z_out] -> [Mul s_out].
- "auto": threshold when monotone, else full.
The input Quant stays (it may feed other consumers); LerpPSA and the output Quant go. The new tensors get shapes;
run InferDataTypes afterwards for their datatypes. `self.report` collects one `LoweredNode` per lowered node.
"""

from dataclasses import dataclass

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from psa_finn.custom_ops.lerp_psa import lerp_psa_numpy
from psa_finn.custom_ops.lut_tables import lerp64_decode, lerp64_table, table_entries
from psa_finn.custom_ops.domain import LERP_PSA_OP, OPS_DOMAIN, PER_CHANNEL_LUT_OP, is_op, match_quantized_function
from psa_finn.transforms.quant_params import read_quant_params

LOWERING_MODES = ("auto", "threshold", "full", "lerp64")
MAX_LUT_INPUT_BITS = 12
CHANNELS_LAST_LAYOUT = {2: "NC", 3: "NWC", 4: "NHWC"}


@dataclass
class LoweredNode:
    """What one LerpPSA node became and why; lerp64 errors are in output codes over every reachable input code."""

    node: str
    form: str
    reason: str
    monotone: bool
    rising_channels: int
    falling_channels: int
    channels: int
    input_datatype: str
    output_datatype: str
    entries_per_channel: int
    lerp64_max_abs_error: int
    lerp64_mean_abs_error: float


class LowerLerpPSA(Transformation):
    """Lower every Quant -> LerpPSA -> Quant to MultiThreshold or PerChannelLUT (mode auto|threshold|full|lerp64)."""

    def __init__(self, mode: str = "auto"):
        super().__init__()
        if mode not in LOWERING_MODES:
            raise ValueError(f"unknown lowering mode {mode!r}; use one of {LOWERING_MODES}")
        self.mode = mode
        self.report = []

    def apply(self, model):
        graph_modified = False
        for node in list(model.graph.node):
            if is_op(node, LERP_PSA_OP):
                self.report.append(self._lower(model, node))
                graph_modified = True
        return model, graph_modified

    def _lower(self, model, node):
        where = f"LerpPSA node '{node.name}'"
        chain = match_quantized_function(model, node)
        quant_in, quant_out = chain.quant_in, chain.quant_out
        params = [model.get_initializer(name) for name in node.input[1:]]
        if any(value is None for value in params):
            raise ValueError(f"{where}: table, in_scale and in_bias must be constant initializers")
        table = np.asarray(params[0])
        channels = table.shape[0]
        shape = model.get_tensor_shape(node.input[0])
        if shape is None or len(shape) not in CHANNELS_LAST_LAYOUT or shape[-1] != channels:
            raise ValueError(f"{where}: needs a known input shape [N, C], [N, T, C] or [N, H, W, C] with "
                             f"C = {channels} table rows, got {shape} (run InferShapes first)")
        qin = read_quant_params(model, quant_in, channels, where)
        qout = read_quant_params(model, quant_out, channels, where)
        codes = _code_table(node, table, params[1:], qin, qout)
        first, last = qin.code_min - qin.datatype.min(), qin.code_max - qin.datatype.min() + 1
        reachable = codes[:, first:last]
        steps = np.diff(reachable, axis=1)
        rising = np.all(steps >= 0, axis=1)
        falling = np.all(steps <= 0, axis=1) & ~rising
        monotone = bool(np.all(rising | falling))
        full = codes[:, :-1]
        compressed = lerp64_table(full, codes[:, -1])
        lerp_error = np.abs(lerp64_decode(compressed) - full)[:, first:last]

        form, reason = self._choose_form(where, monotone, rising | falling, qin.bits)
        new_nodes = _lowered_nodes(model, node, form, rising, full if form == "full" else compressed,
                                   qin, qout, reachable, len(shape))
        index = list(model.graph.node).index(node)
        for offset, new_node in enumerate(new_nodes):
            model.graph.node.insert(index + offset, new_node)
        model.graph.node.remove(node)
        model.graph.node.remove(quant_out)
        stored = qout.code_max - qout.code_min if form == "threshold" else table_entries(form, qin.bits)
        return LoweredNode(node=node.name, form={"threshold": "MultiThreshold"}.get(form, f"PerChannelLUT {form}"),
                           reason=reason, monotone=monotone, rising_channels=int(rising.sum()),
                           falling_channels=int(falling.sum()), channels=channels,
                           input_datatype=qin.datatype.name, output_datatype=qout.datatype.name,
                           entries_per_channel=int(stored), lerp64_max_abs_error=int(lerp_error.max()),
                           lerp64_mean_abs_error=float(lerp_error.mean()))

    def _choose_form(self, where, monotone, monotone_channels, bits):
        if self.mode in ("auto", "threshold") and monotone:
            return "threshold", "every channel's integer table is monotone"
        if self.mode == "threshold":
            bad = np.flatnonzero(~monotone_channels)
            raise ValueError(f"{where}: mode threshold needs monotone tables, but {bad.size} channel(s) are not "
                             f"(first: {bad[:8].tolist()}); use mode auto, full or lerp64")
        form = "full" if self.mode == "auto" else self.mode
        if bits > MAX_LUT_INPUT_BITS:
            raise ValueError(f"{where}: a {form} table for {bits}-bit input codes is too wide (at most "
                             f"{MAX_LUT_INPUT_BITS} bits); quantize the input to fewer bits or use mode threshold")
        reason = "some channel's integer table is not monotone" if self.mode == "auto" else f"mode {form} requested"
        return form, reason


def _code_table(node, table, affine, qin, qout):
    """Output codes [C, 2^b + 1] at every code of the input DataType plus one code past its end."""
    codes = np.arange(qin.datatype.min(), qin.datatype.max() + 2)
    inputs = qin.dequantize(np.broadcast_to(codes[:, None], (codes.size, table.shape[0])))
    grid_range = getCustomOp(node).get_nodeattr("grid_range")
    try:
        values = lerp_psa_numpy(inputs, table, grid_range, *(affine or [None, None]))
    except ValueError as err:
        raise ValueError(f"LerpPSA node '{node.name}': {err}") from err
    return qout.quantize(values).T


def _lowered_nodes(model, node, form, rising, lut, qin, qout, reachable, rank):
    """The replacement nodes, from the input Quant's output to the output Quant's output tensor."""
    graph_in = node.input[0]
    graph_out = model.find_consumer(node.output[0]).output[0]
    chain = _NodeChain(model, node.name or node.output[0], graph_in, graph_out)
    if form == "threshold":
        thresholds = _thresholds(rising, reachable, qin, qout)
        kmin, kmax = qout.code_min, qout.code_max
        offsets = np.where(rising, kmin - qout.zeropt, qout.zeropt - kmax)
        scales = np.where(rising, qout.scale, -qout.scale).astype(np.float32)
        levels = kmax - kmin
        folded = _uniform(offsets) and qout.datatype.min() <= offsets.flat[0] and \
            offsets.flat[0] + levels <= qout.datatype.max()
        out_bias = float(offsets.flat[0]) if folded else 0.0
        out_dtype = qout.datatype if folded else DataType.get_smallest_possible(levels)
        chain.add("MultiThreshold", thresholds, domain="qonnx.custom_op.general", out_dtype=out_dtype.name,
                  out_bias=out_bias, data_layout=CHANNELS_LAST_LAYOUT[rank])
        if not folded:
            chain.add("Add", offsets)
        chain.add("Mul", scales)
    else:
        chain.add("Mul", (1.0 / qin.scale.astype(np.float64)).astype(np.float32))
        chain.add("Add", qin.zeropt)
        chain.add(PER_CHANNEL_LUT_OP, lut, domain=OPS_DOMAIN, param_datatype=qout.datatype, mode=form,
                  inputDataType=qin.datatype.name, outputDataType=qout.datatype.name)
        chain.add("Add", -qout.zeropt)
        chain.add("Mul", qout.scale)
    return chain.finish()


def _thresholds(rising, reachable, qin, qout):
    """MultiThreshold thresholds [C, kmax - kmin]: level j sits halfway below the first input reaching count j."""
    channels, count = reachable.shape
    levels = np.where(rising[:, None], reachable - qout.code_min, qout.code_max - reachable)
    codes = np.arange(qin.code_min, qin.code_max + 1)
    inputs = qin.dequantize(np.broadcast_to(codes[:, None], (count, channels))).T.astype(np.float64)
    edges = np.concatenate([inputs[:, :1] - (inputs[:, 1:2] - inputs[:, :1]) / 2,
                            (inputs[:, :-1] + inputs[:, 1:]) / 2,
                            inputs[:, -1:] + (inputs[:, -1:] - inputs[:, -2:-1]) / 2], axis=1)
    targets = np.arange(1, qout.code_max - qout.code_min + 1)
    thresholds = np.stack([edges[c, np.searchsorted(levels[c], targets, side="left")] for c in range(channels)])
    return thresholds.astype(np.float32)


def _uniform(values) -> bool:
    values = np.asarray(values)
    return bool(np.all(values == values.reshape(-1)[0]))


class _NodeChain:
    """Builds a linear chain of elementwise nodes from tensor `first` to tensor `last` (intermediate tensors get
    the shape of `first`), skipping identity Adds and Muls."""

    def __init__(self, model, name, first, last):
        self.model, self.name, self.last = model, name, last
        self.shape = model.get_tensor_shape(first)
        self.steps = []
        self.current = first

    def add(self, op_type, param, domain="", param_datatype=None, **attributes):
        param = np.asarray(param, dtype=np.float32)
        if (op_type == "Add" and np.all(param == 0)) or (op_type == "Mul" and np.all(param == 1)):
            return
        if op_type in ("Add", "Mul") and _uniform(param):
            param = param.reshape(-1)[:1].reshape(())
        self.steps.append((op_type, param, param_datatype, domain, attributes))

    def finish(self):
        nodes = []
        for index, (op_type, param, param_datatype, domain, attributes) in enumerate(self.steps):
            param_name = self.model.make_new_valueinfo_name()
            self.model.set_initializer(param_name, param)
            if param_datatype is not None:
                self.model.set_tensor_datatype(param_name, param_datatype)
            output = self.last
            if index < len(self.steps) - 1:
                output = self.model.make_new_valueinfo_name()
                self.model.set_tensor_shape(output, self.shape)
            nodes.append(helper.make_node(op_type, [self.current, param_name], [output], domain=domain,
                                          name=f"{self.name}_{op_type}_{index}", **attributes))
            self.current = output
        return nodes
