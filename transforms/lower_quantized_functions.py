"""LowerQuantizedFunctions: every `Quant -> S -> Quant` (transforms.quantized_function_chains) becomes integer
hardware forms that compute the same output codes: FINN's MultiThreshold or psa-finn's PerChannelLUT.

S is tabulated by executing it, cut out of the graph together with its output Quant, with qonnx's execute_onnx
(node by node, as the whole graph executes), so the tables are bit-exact to the graph. Per channel (the one axis
along which S's constants and the quantizers vary; a per-tensor chain has one shared row):
- With an input Quant, S runs on every code of the input DataType, giving the output codes k_c(q).
  "threshold": MultiThreshold [-> Add] -> Mul, when every channel's k_c is non-decreasing; it counts
  n = k - base with thresholds halfway between neighbouring input values, and (n + base - z) * s equals the output
  Quant's (k - z) * s bit for bit. A falling channel is never a MultiThreshold: it would need a per-channel sign Mul,
  on which FINN's FactorOutMulSignMagnitude and CollapseRepeatedMul undo each other forever.
  "full" / "lerp64": Mul(1/s_in) -> [Add z_in] -> PerChannelLUT -> [Add -z_out] -> [Mul s_out].
  "auto": threshold where every channel rises, else full.
- Without an input Quant (S reads an accumulator, e.g. QuantLinear -> Sigmoid -> Quant), S must be non-decreasing
  by its ops (transforms.elementwise_ops); the thresholds invert S at the output levels (the smallest float32 input
  reaching each level, by bisection over the float32 values). Otherwise a ValueError names the node and asks for an
  input quantizer. Chains of ReLU and affine maps only are left to FINN's own QONNX conversion.
What cannot be lowered (several variable inputs, constants varying along two axes, a table too wide, NaN outputs,
no output quantizer) stays in place with the reason in the report; an explicitly requested form that cannot be
built is a ValueError. The input Quant stays (it may feed other nodes). A LerpPSA that reads a Quant through shape
ops gets that Quant again first (transforms.requantize_after_shape_ops), and a fan-out written with shape ops
becomes a 0/1 MatMul (transforms.fan_out_as_matmul). `lower_quantized_functions` returns the
report with the lowered model; `LowerQuantizedFunctions` is the same as a qonnx Transformation.
"""

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from psa_finn.common.bit_widths import MAX_LUT_INPUT_BITS, MAX_TABULATED_INPUT_BITS
from psa_finn.custom_ops.domain import (CHANNEL_AXIS_ATTR, LERP_PSA_OP, OPS_DOMAIN, PER_CHANNEL_LUT_OP,
                                        channel_axis_of, is_op)
from psa_finn.custom_ops.lerp_psa import check_lerp_psa_inputs
from psa_finn.custom_ops.lut_tables import LERP64_MIN_INPUT_BITS, lerp64_decode, lerp64_table, table_entries
from psa_finn.transforms.channel_geometry import ChannelGeometry
from psa_finn.transforms.elementwise_ops import monotone_direction
from psa_finn.transforms.fan_out_as_matmul import FanOutAsMatMul
from psa_finn.transforms.fixed_point import apply_until_fixed
from psa_finn.transforms.quant_params import read_quant_params, varying_axes
from psa_finn.transforms.requantize_after_shape_ops import RequantizeAfterShapeOps
from psa_finn.transforms.quantized_function_chains import GraphIndex, find_quantized_function_chains, \
    stray_function_nodes

LOWERING_MODES = ("auto", "threshold", "full", "lerp64")
LEFT_IN_PLACE = "left in place"
LEFT_TO_FINN = "left to FINN"
KEPT_FORMS = (LEFT_IN_PLACE, LEFT_TO_FINN)
MULTITHRESHOLD = "MultiThreshold"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class ChainLowering:
    """One line of the lowering report: what a chain (or a function node outside any chain) became and why.

    `node` is the chain's first non-affine node; `ops`/`nodes` list S. lerp64 errors are in output codes over every
    reachable input code (chains with an input Quant of 3 to 12 bits); fields that do not apply are None.
    """

    node: str
    form: str
    reason: str
    ops: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    channels: int = None
    channel_axis: int = None
    monotone: bool = None
    rising_channels: int = None
    falling_channels: int = None
    input_datatype: str = None
    output_datatype: str = None
    entries_per_channel: int = None
    lerp64_max_abs_error: int = None
    lerp64_mean_abs_error: float = None


class _LeftInPlace(Exception):
    """A chain that stays as it is; the message is the report's reason."""


def _claim(axes, what, value_shape, geometry):
    if len(value_shape) > len(geometry.shape):
        raise _LeftInPlace(f"{what} of shape {list(value_shape)} has more dimensions than the tensor "
                           f"{geometry.shape}")
    for axis in varying_axes(value_shape, geometry.shape):
        axes.setdefault(axis, []).append(what)


def _geometry(model, index, chain, where):
    shape = model.get_tensor_shape(chain.output)
    source_shape = model.get_tensor_shape(chain.sources[0])
    if shape is None or source_shape is None:
        raise ValueError(f"{where}: needs known tensor shapes (run InferShapes first)")
    geometry = ChannelGeometry(list(shape), None)
    if list(source_shape) != geometry.shape:
        raise _LeftInPlace(f"S broadcasts its input {list(source_shape)} to {geometry.shape}; an elementwise "
                           f"function keeps the shape")
    axes = {}
    for node in chain.nodes:
        if is_op(node, LERP_PSA_OP):
            table = index.constant(node.input[1])
            try:
                axis = check_lerp_psa_inputs(list(shape), table.shape, channel_axis_of(node))
            except ValueError as err:
                raise ValueError(f"LerpPSA node '{node.name}': {err}") from err
            if table.shape[0] > 1:
                axes.setdefault(axis, []).append(f"LerpPSA '{node.name}'")
            continue
        for tensor in node.input:
            value = index.constant(tensor)
            if value is not None:
                _claim(axes, f"constant '{tensor}'", value.shape, geometry)
    for quant in filter(None, (chain.input_quant, chain.output_quant)):
        for tensor in quant.input[1:3]:
            value = index.constant(tensor)
            if value is not None:
                _claim(axes, f"the quantizer parameter '{tensor}'", value.shape, geometry)
    if len(axes) > 1:
        where_they_vary = "; ".join(f"axis {axis}: {what[0]}" for axis, what in sorted(axes.items()))
        raise _LeftInPlace(f"its constants vary along {len(axes)} axes ({where_they_vary}); a table is per tensor "
                           f"or per channel of one axis")
    geometry.axis = next(iter(axes), None)
    if geometry.axis is not None and len(shape) < 2:
        raise _LeftInPlace(f"a per-channel function of a rank-{len(shape)} tensor has no axis left for the codes")
    return geometry


class _Tabulator:
    """Executes S and its output Quant, cut out of the graph, on table-space inputs [K, C]."""

    def __init__(self, model, index, chain, geometry):
        self.model, self.index, self.chain, self.geometry = model, index, chain, geometry

    def outputs(self, values):
        """The output Quant's float32 outputs [K, C] for S's input `values` [K, C]."""
        x = self.geometry.to_tensor(np.asarray(values, dtype=np.float32))
        small = self._cut_out(list(x.shape))
        with np.errstate(over="ignore"):  # the bisection probes the ends of the float32 range
            y = execute_onnx(small, {self.chain.sources[0]: x})[self.chain.output_quant.output[0]]
        return self.geometry.from_tensor(np.asarray(y))

    def _cut_out(self, shape):
        nodes = list(self.chain.nodes) + [self.chain.output_quant]
        source, output = self.chain.sources[0], self.chain.output_quant.output[0]
        graph = helper.make_graph(nodes, "quantized_function",
                                  [helper.make_tensor_value_info(source, TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)])
        small = ModelWrapper(qonnx_make_model(graph, opset_imports=list(self.model.model.opset_import)))
        for node in nodes:
            for tensor in node.input:
                value = self.index.constant(tensor)
                if value is not None:
                    small.set_initializer(tensor, value)
        small = small.transform(InferShapes())
        for tensor in [source] + [t for node in nodes for t in list(node.input) + list(node.output)]:
            if tensor:
                small.set_tensor_datatype(tensor, self.model.get_tensor_datatype(tensor))
        return small


class _Lowering:
    """One chain's lowering: its report line and (when it is lowered) its replacement nodes."""

    def __init__(self, model, index, chain, mode):
        self.model, self.index, self.chain, self.mode = model, index, chain, mode
        node = chain.function_node
        self.where = f"{node.op_type} node '{chain.name}'"
        self.report = ChainLowering(node=chain.name, form=LEFT_IN_PLACE, reason="",
                                    ops=[n.op_type for n in chain.nodes], nodes=[n.name for n in chain.nodes])
        self.nodes = None

    def plan(self):
        chain = self.chain
        try:
            if len(chain.sources) != 1:
                raise _LeftInPlace(f"S reads {len(chain.sources)} different variable tensors "
                                   f"({', '.join(self._describe(t) for t in chain.sources)}); the lowering needs an "
                                   f"elementwise function of one quantized tensor")
            if chain.input_quant is None and chain.finn_native:
                self.report.form = LEFT_TO_FINN
                self.report.reason = "ReLU and affine maps of an accumulator: FINN's QONNX conversion makes the " \
                                     "thresholds"
                return self
            self.geometry = _geometry(self.model, self.index, chain, self.where)
            self.report.channels = self.geometry.channels
            self.report.channel_axis = self.geometry.axis
            self.qout = read_quant_params(self.model, chain.output_quant, self.where, self.geometry.shape,
                                          self.geometry.axis)
            self.report.output_datatype = self.qout.datatype.name
            self.tabulator = _Tabulator(self.model, self.index, chain, self.geometry)
            if chain.input_quant is None:
                self._plan_accumulator()
            else:
                self._plan_codes()
        except _LeftInPlace as reason:
            self.report.form, self.report.reason = LEFT_IN_PLACE, str(reason)
        return self

    def _describe(self, tensor):
        producer = self.index.producer.get(tensor)
        return f"'{tensor}' from {producer.op_type} '{producer.name}'" if producer is not None else \
            f"graph input '{tensor}'"

    # -- chains with an input quantizer: tables over every input code ------------------------------------------

    def _plan_codes(self):
        geometry, chain = self.geometry, self.chain
        qin = read_quant_params(self.model, chain.input_quant, self.where, geometry.shape, geometry.axis)
        self.qin = qin
        self.report.input_datatype = qin.datatype.name
        if qin.bits > MAX_TABULATED_INPUT_BITS:
            self._refuse(f"its input has {qin.bits}-bit codes; tabulating more than {MAX_TABULATED_INPUT_BITS} bits "
                         f"is too large")
        codes_in = np.arange(qin.datatype.min(), qin.datatype.max() + 2)  # every code plus one past the end
        inputs = qin.dequantize(np.broadcast_to(codes_in[:, None], (codes_in.size, geometry.channels)))
        codes = self.qout.codes(self.tabulator.outputs(inputs)).T  # [C, 2^b + 1]
        first, last = qin.code_min - qin.datatype.min(), qin.code_max - qin.datatype.min() + 1
        if np.isnan(codes[:, first:last]).any():
            channel, code = np.argwhere(np.isnan(codes[:, first:last]))[0]
            raise _LeftInPlace(f"S gives NaN at input code {code + qin.code_min} of channel {channel}; the "
                               f"quantized graph has no integer output there")
        codes = _fill_unreachable(codes, first, last).astype(np.int64)
        reachable = codes[:, first:last]
        steps = np.diff(reachable, axis=1)
        rising = np.all(steps >= 0, axis=1)
        falling = np.all(steps <= 0, axis=1) & ~rising
        self.report.monotone = bool(np.all(rising | falling))
        self.report.rising_channels, self.report.falling_channels = int(rising.sum()), int(falling.sum())
        full = codes[:, :-1]
        if LERP64_MIN_INPUT_BITS <= qin.bits <= MAX_LUT_INPUT_BITS:
            error = np.abs(lerp64_decode(lerp64_table(full, codes[:, -1])) - full)[:, first:last]
            self.report.lerp64_max_abs_error = int(error.max())
            self.report.lerp64_mean_abs_error = float(error.mean())
        if self.mode in ("auto", "threshold") and rising.all():
            base, thresholds = _code_thresholds(reachable, qin, geometry.channels)
            self._set_form(MULTITHRESHOLD, "every channel's output codes are non-decreasing in its input codes",
                           thresholds.shape[1])
            self.nodes = _threshold_nodes(self, base, thresholds)
            return
        if self.mode == "threshold":
            bad = np.flatnonzero(~rising)
            raise ValueError(f"{self.where}: mode threshold needs every channel's output codes non-decreasing, but "
                             f"{bad.size} channel(s) fall or are not monotone (first: {bad[:8].tolist()}); a falling "
                             f"channel would need a per-channel sign Mul, which FINN's streamlining loops on; use "
                             f"mode auto, full or lerp64")
        form = "full" if self.mode == "auto" else self.mode
        if qin.bits > MAX_LUT_INPUT_BITS:
            self._refuse(f"a {form} table for {qin.bits}-bit input codes is too wide (at most {MAX_LUT_INPUT_BITS} "
                         f"bits); quantize the input to fewer bits")
        try:
            entries = table_entries(form, qin.bits)
        except ValueError as err:
            raise ValueError(f"{self.where}: {err}") from err
        self._set_form(f"{PER_CHANNEL_LUT_OP} {form}", self._table_reason(rising, falling), entries)
        table = full if form == "full" else lerp64_table(full, codes[:, -1])
        self.nodes = _table_nodes(self, form, table)

    def _table_reason(self, rising, falling):
        if self.mode != "auto":
            return f"mode {self.mode} requested"
        not_monotone = np.flatnonzero(~(rising | falling))
        if not_monotone.size:
            return f"{not_monotone.size} channel(s) not monotone (first: {not_monotone[:8].tolist()})"
        down = np.flatnonzero(falling)
        return (f"{down.size} channel(s) fall (first: {down[:8].tolist()}): a MultiThreshold only counts upward, "
                f"and a per-channel sign Mul after it is a pattern FINN's streamlining loops on "
                f"(FactorOutMulSignMagnitude against CollapseRepeatedMul)")

    def _refuse(self, reason):
        if self.mode == "auto":
            raise _LeftInPlace(reason)
        raise ValueError(f"{self.where}: {reason}")

    def _set_form(self, form, reason, entries=None):
        self.report.form, self.report.reason = form, reason
        self.report.entries_per_channel = entries

    # -- chains reading an accumulator: thresholds by inverting S -------------------------------------------------

    def _plan_accumulator(self):
        if self.mode in ("full", "lerp64"):
            raise ValueError(f"{self.where}: mode {self.mode} tabulates input codes, but it reads the unquantized "
                             f"tensor {self._describe(self.chain.sources[0])}; add an input quantizer (e.g. a "
                             f"QuantIdentity) before it")
        direction = self._direction()
        if np.isnan(direction).any() or (direction < 0).any():
            shape = "not monotone" if np.isnan(direction).any() else "decreasing"
            raise ValueError(f"{self.where} reads the unquantized tensor {self._describe(self.chain.sources[0])} "
                             f"and is {shape} by its ops ({'->'.join(self.report.ops)}): thresholds need a "
                             f"non-decreasing function there; add an input quantizer (e.g. a QuantIdentity) before "
                             f"it so that it is tabulated on its input codes")
        base, thresholds = _inverted_thresholds(self.tabulator, self.qout, self.geometry.channels)
        self.report.monotone = True
        self.report.rising_channels, self.report.falling_channels = self.geometry.channels, 0
        self._set_form(MULTITHRESHOLD, "non-decreasing by its ops: S inverted at the output levels",
                       thresholds.shape[1])
        self.nodes = _threshold_nodes(self, base, thresholds)

    def _direction(self):
        geometry, index = self.geometry, self.index
        directions = {self.chain.sources[0]: np.float64(1.0)}

        def lerp_psa_direction(node):
            steps = np.diff(index.constant(node.input[1]), axis=1)
            table = np.where(np.all(steps >= 0, axis=1), 1.0, np.where(np.all(steps <= 0, axis=1), -1.0, np.nan))
            if len(node.input) == 4:
                table = table * np.sign(index.constant(node.input[2]).reshape(-1))
            return table

        for node in self.chain.nodes:
            values = [index.constant(tensor) for tensor in node.input]
            inputs = [np.float64(0.0) if value is not None else directions[tensor]
                      for tensor, value in zip(node.input, values)]
            constant = (lambda i, values=values: None if values[i] is None else geometry.per_channel(values[i]))
            directions[node.output[0]] = monotone_direction(node, inputs, constant, lerp_psa_direction)
        return np.atleast_1d(directions[self.chain.output])


def _fill_unreachable(codes, first, last):
    """Codes [C, K] with NaN outside the reachable columns first:last replaced by the nearest reachable code."""
    filled = codes.copy()
    filled[:, :first] = np.where(np.isnan(filled[:, :first]), codes[:, first:first + 1], filled[:, :first])
    filled[:, last:] = np.where(np.isnan(filled[:, last:]), codes[:, last - 1:last], filled[:, last:])
    return filled


def _code_thresholds(reachable, qin, channels):
    """(base, thresholds [C, L]): level base + j is reached halfway below the first input code reaching it (one
    level even for a constant function, whose threshold lies past the last input)."""
    base = int(reachable.min())
    top = max(int(reachable.max()), base + 1)
    codes = np.arange(qin.code_min, qin.code_max + 1)
    inputs = qin.dequantize(np.broadcast_to(codes[:, None], (codes.size, channels))).T.astype(np.float64)
    edges = np.concatenate([inputs[:, :1] - (inputs[:, 1:2] - inputs[:, :1]) / 2,
                            (inputs[:, :-1] + inputs[:, 1:]) / 2,
                            inputs[:, -1:] + (inputs[:, -1:] - inputs[:, -2:-1]) / 2], axis=1)
    levels = np.arange(base + 1, top + 1)
    thresholds = np.stack([edges[c, np.searchsorted(reachable[c], levels, side="left")] for c in range(channels)])
    return base, thresholds.astype(np.float32)


def _float32_key(values):
    """Order-preserving int64 keys of float32 values (adjacent floats have adjacent keys)."""
    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF) - 1)


def _float32_of_key(keys):
    bits = np.where(keys >= 0, keys, (-keys - 1) | 0x80000000)
    return bits.astype(np.uint32).view(np.float32)


def _inverted_thresholds(tabulator, qout, channels):
    """(base, thresholds [C, L]) for a non-decreasing S: the smallest float32 input of each output level."""
    ends = tabulator.outputs(np.array([[-_FLOAT32_MAX], [_FLOAT32_MAX]], dtype=np.float32).repeat(channels, 1))
    low, high = qout.codes(ends)
    if np.isnan(ends).any():
        raise _LeftInPlace("S gives NaN at the ends of the float32 range; the quantized graph has no integer "
                           "output there")
    base = int(low.min())
    top = max(int(high.max()), base + 1)  # one level even for a constant function: its threshold is +inf
    levels = np.arange(base + 1, top + 1, dtype=np.float64)[:, None]
    always, never = low[None, :] >= levels, high[None, :] < levels
    lo = np.broadcast_to(_float32_key(-_FLOAT32_MAX), always.shape).copy()
    hi = np.broadcast_to(_float32_key(_FLOAT32_MAX), always.shape).copy()
    for _ in range(64):  # the keys of the finite float32 values span 2^32: 32 halvings close every interval
        open_ = ~always & ~never & (hi - lo > 1)
        if not open_.any():
            break
        mid = (lo + hi) // 2
        codes = qout.codes(tabulator.outputs(_float32_of_key(mid)))
        if np.isnan(codes[open_]).any():
            raise _LeftInPlace("S gives NaN for some float32 inputs; the quantized graph has no integer output "
                               "there")
        reached = codes >= levels
        hi = np.where(open_ & reached, mid, hi)
        lo = np.where(open_ & ~reached, mid, lo)
    thresholds = np.where(always, -np.inf, np.where(never, np.inf, _float32_of_key(hi)))
    return base, thresholds.T.astype(np.float32)


def _uniform(values) -> bool:
    values = np.asarray(values)
    return bool(np.all(values == values.reshape(-1)[0]))


def _threshold_nodes(lowering, base, thresholds):
    """MultiThreshold counting n = k - base, [Add base - z], Mul s: (n + base - z) * s = the output Quant's value."""
    geometry, qout = lowering.geometry, lowering.qout
    chain = _NodeChain(lowering.model, lowering.chain, geometry)
    levels = thresholds.shape[1]
    offsets = base - qout.zeropt
    folded = _uniform(offsets) and qout.datatype.min() <= offsets.flat[0] and \
        offsets.flat[0] + levels <= qout.datatype.max()
    out_dtype = qout.datatype if folded else DataType.get_smallest_possible(levels)
    if folded and out_dtype.signed() and offsets.flat[0] >= 0:
        # no negative output code (e.g. a rising function behind a signed quantizer that never goes below 0): FINN's
        # Thresholding refuses a signed output without a negative bias, so the codes are typed unsigned
        out_dtype = DataType.get_smallest_possible(offsets.flat[0] + levels)
    layout = {} if geometry.axis is None else {"data_layout": geometry.data_layout()}
    chain.add("MultiThreshold", thresholds, domain="qonnx.custom_op.general", out_dtype=out_dtype.name,
              out_bias=float(offsets.flat[0]) if folded else 0.0, **layout)
    if not folded:
        chain.add("Add", geometry.parameter(offsets))
    chain.add("Mul", geometry.parameter(qout.scale))
    return chain.finish()


def _table_nodes(lowering, form, table):
    """Mul(1/s_in) -> [Add z_in] -> PerChannelLUT -> [Add -z_out] -> [Mul s_out]."""
    geometry, qin, qout = lowering.geometry, lowering.qin, lowering.qout
    chain = _NodeChain(lowering.model, lowering.chain, geometry)
    chain.add("Mul", geometry.parameter((1.0 / qin.scale.astype(np.float64)).astype(np.float32)))
    chain.add("Add", geometry.parameter(qin.zeropt))
    axis = {} if geometry.axis is None else {CHANNEL_AXIS_ATTR: geometry.axis}
    chain.add(PER_CHANNEL_LUT_OP, table, domain=OPS_DOMAIN, param_datatype=qout.datatype, mode=form,
              inputDataType=qin.datatype.name, outputDataType=qout.datatype.name, **axis)
    chain.add("Add", geometry.parameter(-qout.zeropt))
    chain.add("Mul", geometry.parameter(qout.scale))
    return chain.finish()


class _NodeChain:
    """A linear chain of new nodes from the chain's source to its output Quant's output tensor (intermediate
    tensors get the chain's shape), skipping identity Adds and Muls."""

    def __init__(self, model, quantized_chain, geometry):
        self.model, self.geometry = model, geometry
        self.name, self.first = quantized_chain.name, quantized_chain.sources[0]
        self.last = quantized_chain.output_quant.output[0]
        self.steps = []

    def add(self, op_type, param, domain="", param_datatype=None, **attributes):
        param = np.asarray(param, dtype=np.float32)
        if (op_type == "Add" and np.all(param == 0)) or (op_type == "Mul" and np.all(param == 1)):
            return
        if op_type in ("Add", "Mul") and _uniform(param):
            param = param.reshape(-1)[:1].reshape(())
        self.steps.append((op_type, param, param_datatype, domain, attributes))

    def finish(self):
        """The nodes, with their parameters set as initializers of the model."""
        nodes, current = [], self.first
        for index, (op_type, param, param_datatype, domain, attributes) in enumerate(self.steps):
            param_name = self.model.make_new_valueinfo_name()
            self.model.set_initializer(param_name, param)
            if param_datatype is not None:
                self.model.set_tensor_datatype(param_name, param_datatype)
            output = self.last
            if index < len(self.steps) - 1:
                output = self.model.make_new_valueinfo_name()
                self.model.set_tensor_shape(output, self.geometry.shape)
            nodes.append(helper.make_node(op_type, [current, param_name], [output], domain=domain,
                                          name=f"{self.name}_{op_type}_{index}", **attributes))
            current = output
        return nodes


def _stray_report(node):
    return ChainLowering(node=node.name or node.output[0], form=LEFT_IN_PLACE, ops=[node.op_type], nodes=[node.name],
                         reason="no Quant reads its output through elementwise nodes only; give it an output "
                                "quantizer")


def _replace(model, index, lowering):
    """Put the lowering's nodes where the output Quant was; drop S, the output Quant and what only they used."""
    chain = lowering.chain
    removed = {node.output[0] for node in chain.nodes} | {chain.output_quant.output[0]}
    graph = model.graph
    position = next(i for i, node in enumerate(graph.node) if node.output[0] == chain.output_quant.output[0])
    for offset, node in enumerate(lowering.nodes):
        graph.node.insert(position + offset, node)
    inputs = {tensor for node in list(chain.nodes) + [chain.output_quant] for tensor in node.input}
    for node in [n for n in graph.node if n.output[0] in removed and n not in lowering.nodes]:
        graph.node.remove(node)
    still_read = {tensor for node in graph.node for tensor in node.input}
    for tensor in inputs - still_read:
        producer = index.producer.get(tensor)
        if producer is not None and producer.op_type == "Constant":
            graph.node.remove(producer)
        initializer = next((init for init in graph.initializer if init.name == tensor), None)
        if initializer is not None:
            graph.initializer.remove(initializer)


def lower_quantized_functions(model, mode: str = "auto"):
    """Lower every chain of `model` in place; returns (model, report: list of ChainLowering in graph order)."""
    if mode not in LOWERING_MODES:
        raise ValueError(f"unknown lowering mode {mode!r}; use one of {LOWERING_MODES}")
    RequantizeAfterShapeOps().apply(model)
    apply_until_fixed(model, FanOutAsMatMul())
    index = GraphIndex(model)
    chains = find_quantized_function_chains(model, index)
    lowerings = [_Lowering(model, index, chain, mode).plan() for chain in chains]
    for lowering in lowerings:
        if lowering.nodes is not None:
            _replace(model, index, lowering)
    return model, [lowering.report for lowering in lowerings] + \
        [_stray_report(node) for node in stray_function_nodes(model, chains)]


class LowerQuantizedFunctions(Transformation):
    """Lower every `Quant -> S -> Quant` to MultiThreshold or PerChannelLUT (mode auto|threshold|full|lerp64);
    see the module docstring. Reaches its fixed point in one pass (what stays cannot be lowered)."""

    def __init__(self, mode: str = "auto"):
        super().__init__()
        if mode not in LOWERING_MODES:
            raise ValueError(f"unknown lowering mode {mode!r}; use one of {LOWERING_MODES}")
        self.mode = mode

    def apply(self, model):
        report = lower_quantized_functions(model, self.mode)[1]
        return model, any(entry.form not in KEPT_FORMS for entry in report)
