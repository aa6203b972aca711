"""One finn-plus dataflow build, checked and committed whole: `run_build` (used by `build.py build` and the sweeps).

`run_build(model, config, out)` checks the model (transforms/model_file.py), the config and the stop step
(config_check.py) first, then runs the config's steps through finn-plus's `build_dataflow_cfg` (an exported model is
lowered by the first step) in a temporary sibling of `out`, leaving finn-plus's report/*.json, intermediate_models/
and build log, checks the hardware model in python mode against the lowered QONNX model (build_configs.verify) and
writes summary.json. Only a complete build replaces `out`: after bad input, a failed build, Ctrl-C or kill -9 the
previous build there is as it was (a failed build's files go to `out`.failed/ beside it, or to `out` when there was
none; a rejected build never replaces a finished one). Without Vivado the steps that need it are skipped and listed.
`rejection` says why a finished build is rejected (nodes off the hardware, a hardware model that differs) and
`check_summary` turns that into an error (exit 1).
"""

import shutil
import time
from pathlib import Path

from psa_finn.build_configs import finn_shims
from psa_finn.build_configs.build_files import BUILD_LOG, MODELS_DIR, SUMMARY, parent_model_path
from psa_finn.common.atomic_files import disk_full, failed_for_disk_space, no_space_error, write_json_atomic
from psa_finn.common.cli_errors import BadInput, NotOnHardware, PsaFinnError, raise_if_interrupted
from psa_finn.common.output_paths import commit_directory, discard_directory, staging_directory

FAILED_SUFFIX = ".failed"


def _print(msg=""):
    print(msg, flush=True)


def _report_failure(out_dir):
    """After a failed build: the nodes the last saved model left off the hardware, once HW conversion has run."""
    from qonnx.core.modelwrapper import ModelWrapper

    from psa_finn.build_configs.summary import partition_nodes

    models = out_dir / MODELS_DIR
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


def failed_build_target(out_dir: Path) -> Path:
    """Where a failed or rejected build goes: DIR when it holds no finished build, else DIR.failed beside it."""
    return out_dir if not is_finished_build(out_dir) else out_dir.with_name(out_dir.name + FAILED_SUFFIX)


def _keep_failed(staging: Path, out_dir: Path) -> str:
    """Put the files of a failed build in DIR when it holds no finished build, else in DIR.failed beside it (not
    over a folder of other files); returns where its log is, and that the previous build is kept."""
    target = failed_build_target(out_dir)
    previous = "" if target == out_dir else f"; the previous build in {out_dir} is kept"
    if target.exists() and any(target.iterdir()) and not (target / BUILD_LOG).is_file():
        discard_directory(staging)
        return f"its log is not kept: {target} holds other files{previous}"
    return f"log {commit_directory(staging, target) / BUILD_LOG}{previous}"


def _remove_failed_sibling(out_dir: Path) -> None:
    """After a build that replaced DIR: the DIR.failed of an earlier failed build is out of date."""
    failed = out_dir.with_name(out_dir.name + FAILED_SUFFIX)
    if failed.is_dir() and (failed / BUILD_LOG).is_file():
        shutil.rmtree(failed, ignore_errors=True)


def repoint_saved_models(staging: Path, out_dir: Path) -> None:
    """The saved models name files of the build by absolute path (a dataflow partition's model, generated code):
    make those name the final DIR instead of the temporary folder the build ran in."""
    import onnx

    old, new = str(staging), str(out_dir)
    for path in (staging / MODELS_DIR).rglob("*.onnx"):
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

    import psa_finn.build_configs.steps  # noqa: F401  (registers our steps, so configs may name them briefly)
    from psa_finn.build_configs.config_check import check_steps

    cfg.output_dir = str(staging)
    cfg.steps, skipped = finn_shims.vivado_less_steps(cfg.steps or default_build_dataflow_steps)
    stop_step = finn_shims.vivado_less_stop_step(stop_step, skipped)
    if stop_step is not None:
        cfg.stop_step = stop_step
    check_steps(cfg, config_path, stop_step, skipped)
    for entry in skipped:
        _print(f"skipping {entry['step']}: {entry['reason']}")
    with finn_shims.contained_vivado_root(), finn_shims.restored_console():
        return build_dataflow_cfg(str(model_path), cfg), skipped


def run_build(model_path, config_path, out_dir, stop_step=None, target_fps=None, verify_data=None) -> dict:
    """Check everything, build, and put the build in place of `out_dir`; returns the summary dict (which may
    record nodes left off the hardware or a verification mismatch: `check_summary` turns those into errors).
    `target_fps` (when given) replaces the config's own; `verify_data` (a .npy file) gives the verification inputs.

    Raises BadInput (bad model, config, --stop-step or --out; a build finn-plus cannot complete), NotOnHardware
    (a failed build that left nodes off the hardware) or EnvironmentFailure (--out cannot be written)."""
    from psa_finn.build_configs.config_check import check_stop_step, load_build_config
    from psa_finn.transforms.model_file import check_functions_not_read_through_reshapes, check_single_sample_input, \
        read_model_file

    model_path, config_path, out_dir = Path(model_path).resolve(), Path(config_path), Path(out_dir).resolve()
    model = read_model_file(model_path)
    check_single_sample_input(model, model_path)
    check_functions_not_read_through_reshapes(model, model_path)
    cfg = load_build_config(config_path)
    verify_inputs = None
    if verify_data is not None:
        from psa_finn.build_configs.verify import read_verify_data
        from psa_finn.common.output_paths import require_input_file

        verify_inputs = read_verify_data(require_input_file(verify_data, "--verify-data", "numpy .npy"), model_path)
    if target_fps is not None:
        cfg.target_fps = int(target_fps)
    check_stop_step(cfg, config_path, stop_step)
    check_replaceable(out_dir)
    staging = staging_directory(out_dir)
    started = time.time()
    try:
        status, skipped = _run_finn(model_path, config_path, cfg, staging, stop_step)
        if status != 0:
            raise_if_interrupted()  # finn-plus turns Ctrl-C / SIGTERM into a failed status
            if disk_full(staging.parent):  # finn-plus turns a full disk into a failed status too: not the model's
                raise no_space_error(out_dir)
            off_hw, cause = _report_failure(staging), failure_cause(staging / BUILD_LOG)
            kept = _keep_failed(staging, out_dir)
            if off_hw:
                raise NotOnHardware(f"nodes left off the hardware: {', '.join(off_hw)} ({kept})")
            raise BadInput(f"finn-plus could not build {model_path}" + (f": {cause}" if cause else "")
                           + f" (status {status}; {kept})")
        from psa_finn.build_configs.summary import build_summary
        from psa_finn.build_configs.verify import verify_build

        summary = build_summary(staging, model_path=model_path, config_path=config_path, cfg=cfg,
                                skipped_steps=skipped, build_time_s=time.time() - started)
        if summary["all_nodes_on_hw"] and parent_model_path(staging).is_file():
            try:
                summary["verification"] = verify_build(staging, model_path, inputs=verify_inputs)
            except PsaFinnError:
                raise
            except Exception as err:  # qonnx cannot run a saved model (it raises plain Exceptions)
                raise NotOnHardware(f"the build finished but its verification could not run the models "
                                    f"({' '.join(str(err).split())[:200]}); {_keep_failed(staging, out_dir)}") from err
        write_json_atomic(staging / SUMMARY, summary)
        rejected = rejection(summary)
        target = failed_build_target(out_dir) if rejected else out_dir
        repoint_saved_models(staging, target)
        if target != out_dir:  # a rejected build never replaces a finished one
            _print_summary(summary, target)
            raise NotOnHardware(f"{rejected} ({_keep_failed(staging, out_dir)}; the rejected build is in {target})")
        commit_directory(staging, out_dir)
        _remove_failed_sibling(out_dir)
    except BaseException as error:
        full = failed_for_disk_space(error, staging.parent)  # before the discard frees the space
        discard_directory(staging)
        if full:  # finn-plus's log handler loops (RecursionError) or a step writes without a file name
            raise no_space_error(out_dir) from error
        raise
    _print_summary(summary, out_dir)
    return summary


def rejection(summary: dict):
    """Why a finished build is rejected (exit 1), as one line without its location; None when it is not: nodes
    left off the hardware, or a hardware model that differs from the lowered QONNX model (a build stopped before
    the estimates converted nothing: no rejection)."""
    if summary["fps"] is not None and not summary["all_nodes_on_hw"]:
        return f"nodes left off the hardware: {', '.join(summary['off_hw_nodes'])}"
    verification = summary["verification"]
    if verification is not None and verification.get("mismatch"):
        return f"the hardware model ({verification['hw_model']}) differs from the lowered QONNX model: " \
               f"{verification['mismatch']}"
    return None


def check_summary(summary: dict, out_dir: Path) -> None:
    """NotOnHardware (exit 1) for a finished build that `rejection` rejects, naming where it is."""
    rejected = rejection(summary)
    if rejected:
        raise NotOnHardware(f"{rejected} (the build is in {out_dir}; see {out_dir / SUMMARY})")


def _print_summary(summary: dict, out_dir: Path) -> None:
    verification = summary["verification"]
    if verification is not None:
        found = verification["mismatch"] or (f"{verification['compared']} agree" + (
            f" (within {verification['tolerance']:.3g})" if verification["tolerance"] else " exactly"))
        _print(f"verification: {verification['hw_model']} vs {verification['reference_model']} on "
               f"{verification['samples']} inputs ({verification['inputs_kind']}): {found}")
    if summary["fps"] is None:
        _print(f"summary: {out_dir / SUMMARY} (no estimate reports: the build stopped before "
               f"step_generate_estimate_reports)")
        return
    finn = summary["finn_totals"]
    _print(f"{summary['config_name']}: {summary['fps']:.0f} FPS (finn-plus estimate), latency "
           f"{summary['latency_ns'] / 1e3:.1f} us, estimates (psa-finn model, docs/hardware_numbers.md): "
           f"LUT {summary['lut']}, DSP {summary['dsp']}, BRAM18 {summary['bram18']}, URAM {summary['uram']}; "
           f"finn-plus's own: LUT {finn['lut']}, DSP {finn['dsp']}, BRAM18 {finn['bram18']}, URAM {finn['uram']} "
           f"(bottleneck {summary['max_cycles_node']}: {summary['max_cycles']} cycles)")
    fifos = summary.get("fifos") or []
    if fifos:
        fifo = {key: sum(f[key] for f in fifos) for key in ("lut", "bram18", "uram")}
        _print(f"FIFOs: {len(fifos)} (in the totals: LUT {fifo['lut']}, BRAM18 {fifo['bram18']}, URAM "
               f"{fifo['uram']}; finn-plus estimates)" + _sizing_note(summary.get("fifo_sizing")))
    if summary["target_fps_met"] is False:
        _print(f"note: {summary['fps']:.0f} FPS misses the config's target_fps {summary['target_fps']} (limited by "
               f"{summary['max_cycles_node']}: {summary['max_cycles']} cycles per sample at the most parallel folding "
               f"finn-plus's SetFolding reached; it stops at mvau_wwidth_max and at each layer's dimensions; raise "
               f"mvau_wwidth_max or give a folding_config_file)")
    if summary["zero_estimate_ops"]:
        _print(f"note: no resource model for {', '.join(summary['zero_estimate_ops'])} (finn-plus reports 0): "
               f"the totals undercount")
    _print(f"summary: {out_dir / SUMMARY} ({summary['build_time_s']} s)")


def _sizing_note(sizing) -> str:
    """`, sized by cycle simulation: N FPS simulated, deadlock-free (S s)` from summary["fifo_sizing"], or ""."""
    if not sizing:
        return ""
    verdict = "deadlock-free" if sizing["deadlock_free"] else "DEADLOCK"
    fps = "no" if sizing["simulated_fps"] is None else f"{sizing['simulated_fps']:.0f}"
    return f", sized by {sizing['method']}: {fps} FPS simulated over {sizing['frames']} frames, {verdict} " \
           f"({sizing['seconds']} s)"
