"""`python build.py synth-check --model M --out DIR`: yosys synthesis of every LUT layer's RTL beside its estimate.

For each PerChannelLUT or KANLinear layer of a lowered or HW model (lowered nodes become the HW layer unfolded; layers inside
a StreamingDataflowPartition are found too), the RTL backend's Verilog is generated into DIR/synth_check/<layer>/
and synthesised with yosys `synth_xilinx -family <family of the part>` + `stat`. The cell counts (LUT, LUTRAM,
FF, BRAM18, URAM, DSP, CARRY) go into DIR/summary.json under `synth_check`, beside the layer's FINN-style estimate;
an existing summary.json (from `build.py build`) keeps all its other keys. Yosys figures are relative: it maps
more LUTs than Vivado and counts CARRY4 cells.
"""

import json
import time
from pathlib import Path

import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from psa_finn.common.atomic_files import write_json_atomic, write_text_atomic
from psa_finn.common.cli_errors import BadInput, EnvironmentFailure
from psa_finn.common.output_paths import check_output_folder, require_input_file
from psa_finn.hardware_checks.yosys_synth import (
    CATEGORIES,
    synth_family_for_part,
    synthesize,
    yosys_available,
    yosys_version,
)

SUMMARY = "summary.json"
YOSYS_MISSING = "yosys is not installed: install Debian's yosys (scripts/setup.sh does so as root)"
DEFAULT_FPGA_PART = "xcu50-fsvh2104-2-e"
RTL_DOMAIN = "finn.custom_op.fpgadataflow.rtl"
ESTIMATE_KEYS = {"lut": "LUT", "bram18": "BRAM_18K", "uram": "URAM", "dsp": "DSP"}
YOSYS_KEYS = {"LUT": "lut", "LUTRAM": "lutram", "FF": "ff", "BRAM": "bram18", "URAM": "uram", "DSP": "dsp",
              "CARRY": "carry"}
LAYER_ATTRIBUTES = ("NumChannels", "PE", "inputDataType", "outputDataType", "mode", "ram_style", "numInputVectors")
KAN_LAYER_ATTRIBUTES = ("MW", "MH", "SIMD", "PE", "inputDataType", "tableDataType", "outputDataType", "ram_style",
                        "numInputVectors")


def _layer_base(node):
    """"PerChannelLUT" or "KANLinear" for a HW node of one of psa-finn's layers, else None."""
    from psa_finn.custom_ops.fpgadataflow.kan_linear import KANLinear
    from psa_finn.custom_ops.fpgadataflow.per_channel_lut import PerChannelLUT

    if not node.domain.startswith("finn.custom_op.fpgadataflow"):
        return None
    layer = getCustomOp(node)
    return "PerChannelLUT" if isinstance(layer, PerChannelLUT) else "KANLinear" if isinstance(layer, KANLinear) \
        else None


def lut_layers(model: ModelWrapper) -> list:
    """(model, node) of every PerChannelLUT and KANLinear HW layer, lowered nodes converted first, partitions
    searched."""
    from psa_finn.custom_ops.domain import KAN_LUT_OP, PER_CHANNEL_LUT_OP, is_op
    from psa_finn.transforms.convert_to_hw_kan_linear import InferKANLinearLayer
    from psa_finn.transforms.convert_to_hw_per_channel_lut import InferPerChannelLUTLayer

    if any(is_op(n, PER_CHANNEL_LUT_OP) for n in model.graph.node):
        model = model.transform(InferPerChannelLUTLayer())
    if any(is_op(n, KAN_LUT_OP) for n in model.graph.node):
        model = model.transform(InferKANLinearLayer())
    found = []
    for node in model.graph.node:
        if node.op_type == "StreamingDataflowPartition":
            found += lut_layers(ModelWrapper(getCustomOp(node).get_nodeattr("model")))
        elif _layer_base(node) is not None:
            found.append((model, node))
    return found


def _rtl_instance(node):
    """The RTL backend's view of `node` (a PerChannelLUT or KANLinear HW node), same attributes and name."""
    rtl_node = helper.make_node(f"{_layer_base(node)}_rtl", list(node.input), list(node.output), domain=RTL_DOMAIN,
                                name=node.name)
    rtl_node.attribute.extend(a for a in node.attribute if a.name not in ("code_gen_dir_ipgen", "gen_top_module"))
    return getCustomOp(rtl_node)


def synth_check_layer(model: ModelWrapper, node, fpga_part: str, work_dir) -> dict:
    """Generate the RTL of one LUT layer into work_dir, synthesise it, and return its summary entry."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    layer = _rtl_instance(node)
    layer.set_nodeattr("code_gen_dir_ipgen", str(work.resolve()))
    layer.generate_hdl(model, fpga_part, 5.0)
    start = time.monotonic()
    figures = synthesize(layer.get_rtl_file_list(abspath=True), layer.get_nodeattr("gen_top_module"),
                         synth_family_for_part(fpga_part), work)
    estimate = layer.node_res_estimation(fpga_part)
    entry = {"name": node.name, "op_type": node.op_type}
    entry.update({YOSYS_KEYS[c]: figures[c] for c in CATEGORIES})
    entry["estimate"] = {key: estimate[finn_key] for key, finn_key in ESTIMATE_KEYS.items()}
    names = KAN_LAYER_ATTRIBUTES if _layer_base(node) == "KANLinear" else LAYER_ATTRIBUTES
    entry["attributes"] = {a: layer.get_nodeattr(a) for a in names}
    entry["attributes"]["resolved_ram_style"] = layer.get_resolved_ram_style()
    entry["cells"] = figures["cells"]
    entry["synth_s"] = round(time.monotonic() - start, 1)
    return entry


def _fpga_part(out_dir: Path, fpga_part):
    if fpga_part:
        return fpga_part
    summary = out_dir / SUMMARY
    if summary.is_file():
        return json.loads(summary.read_text()).get("fpga_part") or DEFAULT_FPGA_PART
    return DEFAULT_FPGA_PART


def run_synth_check(model_path, out_dir, fpga_part=None) -> dict:
    """Synthesise every LUT layer of the model with yosys; merge `synth_check` into out_dir/summary.json.

    fpga_part: defaults to summary.json's `fpga_part`, else the U50. Returns the `synth_check` record.
    """
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the HW layer and its backends)

    if not yosys_available():
        raise EnvironmentFailure(YOSYS_MISSING)
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"synth-check: model {model_path} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    part = _fpga_part(out_dir, fpga_part)
    family = synth_family_for_part(part)
    layers = lut_layers(ModelWrapper(str(model_path)))
    if not layers:
        raise ValueError(f"synth-check: {model_path} has no PerChannelLUT or KANLinear layer (lowered "
                         "custom_ops.PerChannelLUT / KANLUT or their HW layers); lower the model with `build.py lower` "
                         "first")
    entries = [synth_check_layer(m, node, part, out_dir / "synth_check" / node.name) for m, node in layers]
    record = {
        "tool": yosys_version(),
        "fpga_part": part,
        "family": family,
        "model": str(model_path),
        "note": "yosys synth_xilinx cell counts (relative: yosys maps more LUTs than Vivado; CARRY counts CARRY4); "
                "lutram in LUT6 sites, bram18 in 18 Kb blocks; estimate = the layer's FINN-style resource model",
        "layers": entries,
        "totals": {
            "yosys": {key: sum(e[key] for e in entries) for key in YOSYS_KEYS.values()},
            "estimate": {key: sum(e["estimate"][key] for e in entries) for key in ESTIMATE_KEYS},
        },
    }
    summary_path = out_dir / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["synth_check"] = record
    write_json_atomic(summary_path, summary)
    return record


def sweep_lut_layers(out_dir, channels=(96, 192), pes=(1, 4, 16), modes=("full", "lerp64"), bits=8,
                     fpga_part=DEFAULT_FPGA_PART) -> list:
    """Entries of synth_check_layer for one-layer models (random INT<bits> tables) over channels x PE x mode."""
    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the HW layer and its backends)
    from psa_finn.hardware_checks.lut_layer_models import make_lut_layer_model

    entries = []
    for num_channels in channels:
        for pe in pes:
            for mode in modes:
                model = make_lut_layer_model(num_channels, pe, f"INT{bits}", f"INT{bits}", mode, num_vectors=(64,))
                node = model.graph.node[0]
                name = f"C{num_channels}_PE{pe}_{mode}"
                entries.append(synth_check_layer(model, node, fpga_part, Path(out_dir) / "synth_sweep" / name))
    return entries


def sweep_table_markdown(entries) -> str:
    """Markdown table: estimate vs yosys per layer configuration (LUT, LUTRAM, FF, BRAM18, DSP, CARRY4)."""
    lines = ["| C | PE | mode | ROM style | LUT est | LUT yosys | BRAM18 est | BRAM18 yosys | LUTRAM yosys | FF yosys "
             "| DSP est/yosys | CARRY4 yosys |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        a, est = e["attributes"], e["estimate"]
        lines.append(f"| {a['NumChannels']} | {a['PE']} | {a['mode']} | {a['resolved_ram_style']} | {est['lut']} | "
                     f"{e['lut']} | {est['bram18']} | {e['bram18']} | {e['lutram']} | {e['ff']} | "
                     f"{est['dsp']}/{e['dsp']} | {e['carry']} |")
    return "\n".join(lines) + "\n"


def check_onnx_file(path) -> None:
    """BadInput naming `--model` when the file does not parse as ONNX (truncated, or another kind of file)."""
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise BadInput(f"--model {path} is not an ONNX model or is truncated ({type(err).__name__}); pass the "
                       f"lowered.onnx of `build.py lower` or a build's HW model") from err


def add_arguments(parser, command):
    """Options of `build.py synth-check`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="lowered or HW ONNX model with PerChannelLUT layers")
    source.add_argument("--sweep", action="store_true",
                        help="instead of a model: one 8-bit LUT layer per C in {96, 192}, PE in {1, 4, 16}, mode in "
                             "{full, lerp64}; writes OUT/synth_sweep.md (estimate vs yosys)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output directory: synth_check/<layer>/ and summary.json (merged if it exists)")
    parser.add_argument("--part", default=None,
                        help=f"FPGA part (default: fpga_part of OUT/summary.json, else {DEFAULT_FPGA_PART})")


def run(args, command) -> int:
    """Run the check and print one line per layer; errors go to build.py (one line, exit 2 for a bad model, 3 when
    yosys is missing, fails, or --out cannot be written)."""
    if args.model is not None:
        check_onnx_file(require_input_file(args.model, "--model", "ONNX model"))
    check_output_folder(args.out)
    if args.sweep:
        if not yosys_available():
            raise EnvironmentFailure(YOSYS_MISSING)
        table = sweep_table_markdown(sweep_lut_layers(args.out, fpga_part=args.part or DEFAULT_FPGA_PART))
        write_text_atomic(Path(args.out) / "synth_sweep.md", table)
        print(table, end="")
        print(f"table: {Path(args.out) / 'synth_sweep.md'}")
        return 0
    record = run_synth_check(args.model, args.out, args.part)
    print(f"yosys synth_xilinx -family {record['family']} ({record['fpga_part']}), {record['tool']}")
    for e in record["layers"]:
        est = e["estimate"]
        print(f"  {e['name']}: LUT {e['lut']} (estimate {est['lut']}), LUTRAM {e['lutram']}, FF {e['ff']}, "
              f"BRAM18 {e['bram18']} (estimate {est['bram18']}), DSP {e['dsp']}, CARRY4 {e['carry']}")
    print(f"summary: {Path(args.out) / SUMMARY}")
    return 0
