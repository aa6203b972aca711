"""DIR/summary.json: one record of a finn-plus build, read from finn-plus's reports and the intermediate models.

Cycles and throughput come from what the stock `step_generate_estimate_reports` wrote (estimate_layer_cycles.json,
estimate_network_performance.json). Resources: each layer's `lut`/`dsp`/`bram18`/`uram` are psa-finn's figures
(`analysis.resources.layer_resources`, each with its `estimate_basis`), finn-plus's own (report/
estimate_layer_resources.json) stay beside them as `finn_estimate`, and `finn_totals` beside the totals; `exact`
holds counts (`analysis.exact_counts`). The StreamingFIFOs inserted after the estimate reports
(step_size_fifos_by_simulation, or finn-plus's step_set_fifo_depths) are layers like the others; `fifos` lists them
(dataflow_sim.fifo_table) and `fifo_sizing` is the sizing record (report/fifo_sizing_by_simulation.json).
Key list: `SUMMARY_KEYS` (described in docs/hardware_numbers.md and README.md,
"CLI reference"); `target_fps_met` says whether `fps` reaches the config's `target_fps` (the build prints a note
when it does not); `verification` (build_configs.verify) is None until the build command fills it in, and stays None
for a build that stopped before the dataflow partition.
"""

import json
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from psa_finn.analysis.exact_counts import exact_counts
from psa_finn.analysis.resources.layer_resources import BASIS_FINN, layer_resources
from psa_finn.build_configs.build_files import REPORT_DIR, parent_model_path, saved_model_path, steps_run, \
    time_per_step
from psa_finn.build_configs.config_check import fpga_part_of
from psa_finn.custom_ops.domain import is_hw_node
from psa_finn.dataflow_sim.fifo_sizing import FIFO_SIZING_REPORT
from psa_finn.dataflow_sim.fifo_table import fifo_table
from psa_finn.transforms.host_output_dequant import host_output_dequant_nodes

SUMMARY_KEYS = ("model", "config", "config_name", "fpga_part", "clk_ns", "target_fps", "fps", "target_fps_met",
                "latency_ns",
                "max_cycles", "max_cycles_node", "lut", "dsp", "bram18", "uram", "luts_plus_dsp", "finn_totals", "exact",
                "all_nodes_on_hw",
                "off_hw_nodes", "host_nodes", "layers", "resources_by_op_type", "zero_estimate_ops", "zero_lut_ops",
                "fifos", "fifo_sizing", "skipped_steps", "steps_run", "time_per_step_s", "build_time_s",
                "verification")
RESOURCE_KEYS = {"lut": "LUT", "dsp": "DSP", "bram18": "BRAM_18K", "uram": "URAM"}
FOLDING_ATTRS = ("PE", "SIMD", "ram_style", "ram_style_thresholds", "mem_mode", "resType", "mode")


def _describe(node):
    return f"{node.name} ({node.op_type})"


def host_input_preprocess_nodes(model):
    """Leading Mul/Add-by-constant and Transpose nodes fed (through each other) by a graph input: host-side
    pre-processing (finn-plus's default infer_shuffle_skip_first leaves an image input's first transpose there)."""
    inputs = {i.name for i in model.graph.input}
    found, frontier = [], set(inputs)
    for node in model.graph.node:
        if node.input and node.input[0] in frontier and (node.op_type == "Transpose" or (
                node.op_type in ("Mul", "Add") and model.get_initializer(node.input[1]) is not None)):
            found.append(node)
            frontier.add(node.output[0])
    return found


def partition_nodes(model):
    """(host_nodes, off_hw_nodes) as "name (op_type)": host-side pre/post-processing vs. anything else off HW.

    A model after step_create_dataflow_partition holds one StreamingDataflowPartition plus what stayed outside it;
    a model before it holds HW layers plus whatever the conversion could not map.
    """
    host = {n.name for n in host_output_dequant_nodes(model) + host_input_preprocess_nodes(model)}
    host_nodes, off_hw = [], []
    for node in model.graph.node:
        if is_hw_node(node) or node.op_type == "StreamingDataflowPartition":
            continue
        (host_nodes if node.name in host else off_hw).append(_describe(node))
    return host_nodes, off_hw


def _read_json(path, default=None):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else default


def layer_table(model, resources, cycles, figures=None):
    """Per-layer records in graph order: resources, cycles and folding attributes.

    `figures` ({node: {lut, dsp, bram18, uram, basis}}, from `layer_resources`) gives lut/dsp/bram18/uram and
    `estimate_basis`; `resources` (finn-plus's estimate_layer_resources.json) gives `finn_estimate`. Without
    `figures` the layer's figures are finn-plus's (basis "finn-plus").
    """
    layers = []
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        res = resources.get(node.name, {})
        finn = {key: int(round(float(res.get(src, 0)))) for key, src in RESOURCE_KEYS.items()}
        own = (figures or {}).get(node.name, {**finn, "basis": BASIS_FINN})
        entry = {"name": node.name, "op_type": node.op_type, "cycles": int(cycles.get(node.name, 0))}
        entry.update({key: int(own[key]) for key in RESOURCE_KEYS})
        entry["estimate_basis"] = own["basis"]
        entry["finn_estimate"] = finn
        op = getCustomOp(node)
        attrs = op.get_nodeattr_types()
        entry.update({a: op.get_nodeattr(a) for a in FOLDING_ATTRS if a in attrs})
        layers.append(entry)
    return layers


def resources_by_op_type(layers):
    """{op_type: {count, lut, dsp, bram18, uram, estimate_basis, finn_estimate}} summed over the layers
    (estimate_basis: the layers' bases, joined by ", " when they differ)."""
    by_type = {}
    for layer in layers:
        agg = by_type.setdefault(layer["op_type"], {"count": 0, **{k: 0 for k in RESOURCE_KEYS}, "estimate_basis": [],
                                                    "finn_estimate": {k: 0 for k in RESOURCE_KEYS}})
        agg["count"] += 1
        basis = layer.get("estimate_basis", BASIS_FINN)
        if basis not in agg["estimate_basis"]:
            agg["estimate_basis"].append(basis)
        for key in RESOURCE_KEYS:
            agg[key] += layer[key]
            agg["finn_estimate"][key] += layer.get("finn_estimate", layer)[key]
    for agg in by_type.values():
        agg["estimate_basis"] = ", ".join(agg["estimate_basis"])
    return by_type


def zero_estimate_ops(by_type):
    """Op types with no figure at all: every resource 0 and no psa-finn model behind the zero (a psa-finn model's 0,
    e.g. a Reshape between equal stream widths, is a result: the layer is wiring)."""
    return sorted(t for t, agg in by_type.items()
                  if not any(agg[k] for k in RESOURCE_KEYS) and agg["estimate_basis"] == BASIS_FINN)


def target_fps_met(target_fps, fps):
    """Whether the estimated `fps` reaches the config's `target_fps` (None without either: a config of fixed
    folding, or a build stopped before the estimate reports)."""
    if not target_fps or fps is None:
        return None
    return fps >= target_fps


def build_summary(out_dir, *, model_path, config_path, cfg, skipped_steps, build_time_s):
    """Collect the summary dict of a finished build in out_dir (see SUMMARY_KEYS)."""
    out_dir = Path(out_dir)
    report = out_dir / REPORT_DIR
    step_times = time_per_step(out_dir)
    ran = steps_run(out_dir)
    final_model = ModelWrapper(str(saved_model_path(out_dir, ran[-1])))
    resources = _read_json(report / "estimate_layer_resources.json", {})
    cycles = _read_json(report / "estimate_layer_cycles.json", {})
    perf = _read_json(report / "estimate_network_performance.json", {})
    parent_path = parent_model_path(out_dir)
    host_nodes, off_hw = partition_nodes(ModelWrapper(str(parent_path)) if parent_path.exists() else final_model)
    fpga_part = fpga_part_of(cfg)
    layers = layer_table(final_model, resources, cycles, layer_resources(final_model, fpga_part))
    by_type = resources_by_op_type(layers)
    total = {key: sum(layer[key] for layer in layers) for key in RESOURCE_KEYS}
    finn_totals = {key: sum(layer["finn_estimate"][key] for layer in layers) for key in RESOURCE_KEYS}
    summary = {
        "model": str(model_path),
        "config": str(config_path),
        "config_name": Path(config_path).stem,
        "fpga_part": fpga_part,
        "clk_ns": cfg.synth_clk_period_ns,
        "target_fps": cfg.target_fps,
        "fps": perf.get("estimated_throughput_fps"),
        "target_fps_met": target_fps_met(cfg.target_fps, perf.get("estimated_throughput_fps")),
        "latency_ns": perf.get("estimated_latency_ns"),
        "max_cycles": perf.get("max_cycles"),
        "max_cycles_node": perf.get("max_cycles_node_name"),
        **total,
        "luts_plus_dsp": total["lut"] + total["dsp"],
        "finn_totals": {**finn_totals, "luts_plus_dsp": finn_totals["lut"] + finn_totals["dsp"]},
        "exact": exact_counts(final_model, ModelWrapper(str(model_path))),
        "all_nodes_on_hw": not off_hw,
        "off_hw_nodes": off_hw,
        "host_nodes": host_nodes,
        "layers": layers,
        "resources_by_op_type": by_type,
        "zero_estimate_ops": zero_estimate_ops(by_type),
        "zero_lut_ops": sorted(t for t, agg in by_type.items() if agg["lut"] == 0),
        "fifos": fifo_table(final_model, fpga_part),
        "fifo_sizing": _read_json(report / FIFO_SIZING_REPORT),
        "skipped_steps": skipped_steps,
        "steps_run": ran,
        "time_per_step_s": step_times,
        "build_time_s": round(build_time_s, 1),
        "verification": None,
    }
    return summary
