"""`python build.py build`: finn-plus dataflow build + DIR/summary.json.

    python build.py build --model model.onnx --config build_configs/unrolled.yaml --out DIR

checks the model (transforms/model_file.py), the config and --stop-step (config_check.py) first, then runs the
config's steps through finn-plus's `build_dataflow_cfg` (an exported model is lowered by the first step) in a
temporary sibling of DIR, leaving finn-plus's report/*.json, intermediate_models/ and build log, checks the hardware
model in python mode against the lowered QONNX model (build_configs.verify) and writes summary.json. Only a complete
build replaces DIR: after bad input, a failed build, Ctrl-C or kill -9 the previous build in DIR is as it was (a
failed build's files go to DIR.failed/ beside it, or to DIR when there was none). Without Vivado the steps that
need it are skipped and listed. Exit status (common/cli_errors.py): 0 when every node but host-side
pre/post-processing is on the hardware and computes what the QONNX model computes, 1 when some node stays off it
(they are named) or the hardware model differs, 2 on bad input or a build that finn-plus cannot complete, 3 when
DIR cannot be written.
"""

import time
from pathlib import Path

from psa_finn.build_configs import finn_shims
from psa_finn.common.cli_errors import BadInput, NotOnHardware, PsaFinnError
from psa_finn.common.output_paths import commit_directory, discard_directory, staging_directory

SUMMARY = "summary.json"
BUILD_LOG = "build_dataflow.log"
FAILED_SUFFIX = ".failed"


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


def _report_failure(out_dir):
    """After a failed build: the nodes the last saved model left off the hardware, once HW conversion has run."""
    from qonnx.core.modelwrapper import ModelWrapper

    from psa_finn.build_configs.summary import partition_nodes

    models = out_dir / "intermediate_models"
    if not any(models.glob("step_convert_to_hw*.onnx")):
        return []
    saved = sorted(models.glob("*.onnx"), key=lambda p: p.stat().st_mtime)
    return partition_nodes(ModelWrapper(str(saved[-1])))[1]


def failure_cause(log_path: Path, limit: int = 800) -> str:
    """The exception that stopped a failed build, as one line: the text after the last traceback box of finn-plus's
    log (`Name: message`), else the log's last line; "" without a log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    box_ends = [i for i, line in enumerate(lines) if line.startswith("\u2570")]
    tail = lines[box_ends[-1] + 1:] if box_ends else [line for line in lines if line.strip()][-1:]
    cause = " ".join(" ".join(tail).split())
    return cause if len(cause) <= limit else cause[:limit] + " ..."


def is_finished_build(path: Path) -> bool:
    """Whether `path` holds a build that `build.py build` completed (its summary.json)."""
    return (path / SUMMARY).is_file()


def check_replaceable(out_dir: Path) -> None:
    """BadInput unless --out is new, empty, or a build directory (finished or failed) that a build may replace."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir} is a file; pass a folder for the build")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (is_finished_build(out_dir)
                                                             or (out_dir / BUILD_LOG).is_file()):
        raise BadInput(f"--out {out_dir} exists and is not a build directory (no {SUMMARY} or {BUILD_LOG}); "
                       f"choose a new or empty --out")


def _keep_failed(staging: Path, out_dir: Path) -> str:
    """Put the files of a failed build in DIR when it holds no finished build, else in DIR.failed beside it (not
    over a folder of other files); returns where its log is, and that the previous build is kept."""
    target = out_dir if not is_finished_build(out_dir) else out_dir.with_name(out_dir.name + FAILED_SUFFIX)
    previous = "" if target == out_dir else f"; the previous build in {out_dir} is kept"
    if target.exists() and any(target.iterdir()) and not (target / BUILD_LOG).is_file():
        discard_directory(staging)
        return f"its log is not kept: {target} holds other files{previous}"
    return f"log {commit_directory(staging, target) / BUILD_LOG}{previous}"


def repoint_saved_models(staging: Path, out_dir: Path) -> None:
    """The saved models name files of the build by absolute path (a dataflow partition's model, generated code):
    make those name the final DIR instead of the temporary folder the build ran in."""
    import onnx

    old, new = str(staging), str(out_dir)
    for path in (staging / "intermediate_models").rglob("*.onnx"):
        if old.encode() not in path.read_bytes():
            continue
        model = onnx.load(str(path), load_external_data=False)
        for node in model.graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.STRING and attribute.s.startswith(old.encode()):
                    attribute.s = new.encode() + attribute.s[len(old):]
        onnx.save(model, str(path))


def _run_finn(model_path, config_path, cfg, staging: Path, stop_step):
    """Boot finn-plus for `staging`, check the steps, run the build there; returns (status, skipped steps)."""
    finn_shims.boot_finn(staging)
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import default_build_dataflow_steps

    from psa_finn.build_configs.config_check import check_steps

    cfg.output_dir = str(staging)
    cfg.steps, skipped = finn_shims.vivado_less_steps(cfg.steps or default_build_dataflow_steps)
    stop_step = finn_shims.vivado_less_stop_step(stop_step, skipped)
    if stop_step is not None:
        cfg.stop_step = stop_step
    check_steps(cfg, config_path, stop_step, skipped)
    for entry in skipped:
        _print(f"skipping {entry['step']}: {entry['reason']}")
    with finn_shims.contained_vivado_root():
        return build_dataflow_cfg(str(model_path), cfg), skipped


def run_build(model_path, config_path, out_dir, stop_step=None, target_fps=None) -> dict:
    """Check everything, build, and put the build in place of `out_dir`; returns the summary dict (which may
    record nodes left off the hardware or a verification mismatch: `check_summary` turns those into errors).
    `target_fps` (when given) replaces the config's own.

    Raises BadInput (bad model, config, --stop-step or --out; a build finn-plus cannot complete), NotOnHardware
    (a failed build that left nodes off the hardware) or EnvironmentFailure (--out cannot be written)."""
    from psa_finn.build_configs.config_check import load_build_config
    from psa_finn.transforms.model_file import check_single_sample_input, read_model_file

    model_path, config_path, out_dir = Path(model_path).resolve(), Path(config_path), Path(out_dir).resolve()
    check_single_sample_input(read_model_file(model_path), model_path)
    cfg = load_build_config(config_path)
    if target_fps is not None:
        cfg.target_fps = int(target_fps)
    check_replaceable(out_dir)
    staging = staging_directory(out_dir)
    started = time.time()
    try:
        status, skipped = _run_finn(model_path, config_path, cfg, staging, stop_step)
        if status != 0:
            off_hw, cause = _report_failure(staging), failure_cause(staging / BUILD_LOG)
            kept = _keep_failed(staging, out_dir)
            if off_hw:
                raise NotOnHardware(f"nodes left off the hardware: {', '.join(off_hw)} ({kept})")
            raise BadInput(f"finn-plus could not build {model_path}" + (f": {cause}" if cause else "")
                           + f" (status {status}; {kept})")
        from psa_finn.build_configs.summary import build_summary
        from psa_finn.build_configs.verify import PARENT_MODEL, verify_build
        from psa_finn.common.atomic_files import write_json_atomic

        summary = build_summary(staging, model_path=model_path, config_path=config_path, cfg=cfg,
                                skipped_steps=skipped, build_time_s=time.time() - started)
        if summary["all_nodes_on_hw"] and (staging / "intermediate_models" / PARENT_MODEL).is_file():
            try:
                summary["verification"] = verify_build(staging, model_path)
            except PsaFinnError:
                raise
            except Exception as err:  # qonnx cannot run a saved model (it raises plain Exceptions)
                raise NotOnHardware(f"the build finished but its verification could not run the models "
                                    f"({' '.join(str(err).split())[:200]}); {_keep_failed(staging, out_dir)}") from err
        write_json_atomic(staging / SUMMARY, summary)
        repoint_saved_models(staging, out_dir)
        commit_directory(staging, out_dir)
    except BaseException:
        discard_directory(staging)
        raise
    _print_summary(summary, out_dir)
    return summary


def check_summary(summary: dict, out_dir: Path) -> None:
    """NotOnHardware (exit 1) for a finished build that left nodes off the hardware or whose hardware model differs
    from the lowered QONNX model (a build stopped before the estimates converted nothing: no error)."""
    if summary["fps"] is not None and not summary["all_nodes_on_hw"]:
        raise NotOnHardware(f"nodes left off the hardware: {', '.join(summary['off_hw_nodes'])} (the build is in "
                            f"{out_dir})")
    verification = summary["verification"]
    if verification is not None and verification["max_abs_diff"] != 0:
        raise NotOnHardware(f"the hardware model ({verification['hw_model']}) differs from the lowered QONNX model "
                            f"by up to {verification['max_abs_diff']} output codes on random inputs; see "
                            f"{out_dir / SUMMARY} and the build's intermediate models (a usual cause: an Add of a "
                            f"float-scaled tensor whose sum lands on rounding ties; README \"Use psa-finn in your own "
                            f"network\", residual adds)")


def _print_summary(summary: dict, out_dir: Path) -> None:
    verification = summary["verification"]
    if verification is not None:
        _print(f"verification: {verification['hw_model']} vs {verification['reference_model']} on "
               f"{verification['samples']} random inputs: max abs diff {verification['max_abs_diff']}")
    if summary["fps"] is None:
        _print(f"summary: {out_dir / SUMMARY} (no estimate reports: the build stopped before "
               f"step_generate_estimate_reports)")
        return
    _print(f"{summary['config_name']}: {summary['fps']:.0f} FPS, latency {summary['latency_ns'] / 1e3:.1f} us, "
           f"LUT {summary['lut']}, DSP {summary['dsp']}, BRAM18 {summary['bram18']}, URAM {summary['uram']} "
           f"(bottleneck {summary['max_cycles_node']}: {summary['max_cycles']} cycles)")
    if summary["fifos"]:
        fifo = {key: sum(f[key] for f in summary["fifos"]) for key in ("lut", "bram18", "uram")}
        _print(f"FIFOs: {len(summary['fifos'])} (in the totals: LUT {fifo['lut']}, BRAM18 {fifo['bram18']}, URAM "
               f"{fifo['uram']}; finn-plus estimates)" + _sizing_note(summary["fifo_sizing"]))
    if summary["zero_estimate_ops"]:
        fifos = "" if summary["fifos"] else "; FIFOs are not counted"
        _print(f"note: stock estimates are zero for {', '.join(summary['zero_estimate_ops'])}{fifos}: the totals "
               f"undercount")
    _print(f"summary: {out_dir / SUMMARY} ({summary['build_time_s']} s)")


def _sizing_note(sizing) -> str:
    """`, sized by cycle simulation: N FPS simulated, deadlock-free (S s)` from summary["fifo_sizing"], or ""."""
    if not sizing:
        return ""
    verdict = "deadlock-free" if sizing["deadlock_free"] else "DEADLOCK"
    fps = "no" if sizing["simulated_fps"] is None else f"{sizing['simulated_fps']:.0f}"
    return f", sized by {sizing['method']}: {fps} FPS simulated over {sizing['frames']} frames, {verdict} " \
           f"({sizing['seconds']} s)"


def run(args, command):
    """`build.py build`: errors go to build.py (one line, exit code by kind)."""
    check_summary(run_build(args.model, args.config, args.out, args.stop_step), Path(args.out).resolve())
    return 0
