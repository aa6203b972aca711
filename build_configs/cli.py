"""`python build.py build`: finn-plus dataflow build + DIR/summary.json.

    python build.py build --model model.onnx --config build_configs/unrolled.yaml --out DIR

runs the config's steps through finn-plus's `build_dataflow_cfg` (an exported model is lowered by the first step),
leaving finn-plus's DIR/report/*.json, DIR/intermediate_models/ and build log, then checks the hardware model in
python mode against the lowered QONNX model (build_configs.verify) and writes DIR/summary.json. Without Vivado the
steps that need it are skipped and listed. Exit status: 0 when every node but host-side pre/post-processing is on
the hardware and computes what the QONNX model computes, 1 when some node stays off it (they are named) or the
hardware model differs, 2 when the build itself fails.
"""

import shutil
import time
from pathlib import Path

from psa_finn.build_configs import finn_shims

SUMMARY = "summary.json"
EXIT_OFF_HW = 1
EXIT_BUILD_FAILED = 2


def add_arguments(parser, command):
    parser.add_argument("--model", required=True, type=Path, help="exported (QONNX) or lowered ONNX model")
    parser.add_argument("--config", required=True, type=Path,
                        help="finn-plus build config (build_configs/unrolled.yaml or folded.yaml)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output directory (new, empty, or an earlier build directory, which is replaced)")
    parser.add_argument("--stop-step", default=None,
                        help="last step to run, e.g. step_generate_estimate_reports to skip code generation")


def _print(msg=""):
    print(msg, flush=True)


def _load_config(config_path, out_dir, stop_step):
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    cfg = DataflowBuildConfig.construct_from(config_path.resolve())
    cfg.output_dir = str(out_dir)
    if stop_step is not None:
        cfg.stop_step = stop_step
    return cfg


def _report_failure(out_dir):
    """After a failed build: the nodes the last saved model left off the hardware, once HW conversion has run."""
    from qonnx.core.modelwrapper import ModelWrapper

    from psa_finn.build_configs.summary import partition_nodes

    models = out_dir / "intermediate_models"
    if not any(models.glob("step_convert_to_hw*.onnx")):
        return []
    saved = sorted(models.glob("*.onnx"), key=lambda p: p.stat().st_mtime)
    return partition_nodes(ModelWrapper(str(saved[-1])))[1]


def run_build(model_path, config_path, out_dir, stop_step=None):
    """Build; return (exit status, summary dict or None)."""
    model_path, config_path, out_dir = Path(model_path).resolve(), Path(config_path), Path(out_dir).resolve()
    if not model_path.is_file():
        _print(f"error: model {model_path} does not exist (export one with `python build.py export`)")
        return EXIT_BUILD_FAILED, None
    if not config_path.is_file():
        _print(f"error: build config {config_path} does not exist (see build_configs/*.yaml)")
        return EXIT_BUILD_FAILED, None
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / "build_dataflow.log").exists():
            _print(f"error: {out_dir} exists and is not a build directory; choose a new --out")
            return EXIT_BUILD_FAILED, None
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    finn_shims.boot_finn(out_dir)
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import default_build_dataflow_steps

    from psa_finn.build_configs.summary import build_summary
    from psa_finn.build_configs.verify import PARENT_MODEL, verify_build
    from psa_finn.common.cli_errors import NotOnHardware
    from psa_finn.common.atomic_files import write_json_atomic

    cfg = _load_config(config_path, out_dir, stop_step)
    cfg.steps, skipped = finn_shims.vivado_less_steps(cfg.steps or default_build_dataflow_steps)
    for entry in skipped:
        _print(f"skipping {entry['step']}: {entry['reason']}")
    with finn_shims.contained_vivado_root():
        status = build_dataflow_cfg(str(model_path), cfg)
    if status != 0:
        off_hw = _report_failure(out_dir)
        if off_hw:
            _print(f"error: nodes left off the hardware: {', '.join(off_hw)}")
            return EXIT_OFF_HW, None
        _print(f"error: finn-plus build failed (status {status}); see {out_dir / 'build_dataflow.log'}")
        return EXIT_BUILD_FAILED, None
    summary = build_summary(out_dir, model_path=model_path, config_path=config_path, cfg=cfg,
                            skipped_steps=skipped, build_time_s=time.time() - started)
    if summary["all_nodes_on_hw"] and (out_dir / "intermediate_models" / PARENT_MODEL).is_file():
        summary["verification"] = verify_build(out_dir, model_path)
    write_json_atomic(out_dir / SUMMARY, summary)
    verification = summary["verification"]
    if verification is not None:
        _print(f"verification: {verification['hw_model']} vs {verification['reference_model']} on "
               f"{verification['samples']} random inputs: max abs diff {verification['max_abs_diff']}")
    if summary["fps"] is None:
        _print(f"summary: {out_dir / SUMMARY} (no estimate reports: the build stopped before "
               f"step_generate_estimate_reports)")
        return 0, summary
    _print(f"{summary['config_name']}: {summary['fps']:.0f} FPS, latency {summary['latency_ns'] / 1e3:.1f} us, "
           f"LUT {summary['lut']}, DSP {summary['dsp']}, BRAM18 {summary['bram18']}, URAM {summary['uram']} "
           f"(bottleneck {summary['max_cycles_node']}: {summary['max_cycles']} cycles)")
    if summary["zero_estimate_ops"]:
        _print(f"note: stock estimates are zero for {', '.join(summary['zero_estimate_ops'])}; FIFOs are not "
               f"counted: the totals undercount")
    _print(f"summary: {out_dir / SUMMARY} ({summary['build_time_s']} s)")
    if not summary["all_nodes_on_hw"]:
        _print(f"error: nodes left off the hardware: {', '.join(summary['off_hw_nodes'])}")
        return EXIT_OFF_HW, summary
    if verification is not None and verification["max_abs_diff"] != 0:
        raise NotOnHardware(f"the hardware model ({verification['hw_model']}) differs from the lowered QONNX model "
                            f"by up to {verification['max_abs_diff']} output codes on random inputs; see "
                            f"{out_dir / SUMMARY} and the build's intermediate models")
    return 0, summary


def run(args, command):
    status, _ = run_build(args.model, args.config, args.out, args.stop_step)
    return status
