"""`build.py demo [--out DIR] [--quick]`: the whole flow on the built-in digits data, end to end.

Trains a small ReLU ResMLP and a small LERP-PSA ResMLP (the paper's comparison: the PSA model with half the hidden
width), fine-tunes both with quantization-aware training, exports them to QONNX, lowers the LerpPSA nodes (auto, and
lerp64 as the paper's hardware), builds them with finn-plus (fully unrolled and folded; every step that runs
without Vivado, FIFOs sized by simulation), synthesises the LUT layers with yosys when it is installed, measures
accuracy against hidden size, and writes the report (report.md, builds.csv, plots) into DIR. Every stage is a `build.py` subcommand run by `reports.stage_runner`, so a second run
skips what is already done. `--quick` (tiny epochs and models, auto lowering, unrolled builds) is what the tests run."""

import json
import shutil
import time

import psutil
from dataclasses import dataclass
from pathlib import Path

from psa_finn.build_configs.build_files import SUMMARY, saved_model_path
from psa_finn.common.atomic_files import write_text_atomic
from psa_finn.common.cli_args import positive_int
from psa_finn.common.output_paths import check_output_folder, check_own_folder
from psa_finn.reports.build_report import write_report
from psa_finn.reports.build_summary import build_labels, load_build_summary
from psa_finn.reports.onnx_accuracy import onnx_accuracies
from psa_finn.reports.stage_runner import LOG_DIR, REPO_ROOT, Stage, idle_wall_estimate_s, run_stages
from psa_finn.reports.tables import comparison_rows, markdown_table

DEFAULT_OUT = "out/demo"
ACCURACY_JSON = "accuracy_vs_hidden.json"
STAGES_JSON = "demo_stages.json"
SYNTH_CHECK_STEP = "step_generate_estimate_reports"
ONNX_ACCURACY_JSON = "onnx_accuracy.json"
IDLE_CORES = 2  # the machine the README's times are for


@dataclass(frozen=True)
class DemoModel:
    """One network of the demo: its variant, MLP hidden factor (hidden width = embed_dim * factor) and the
    `build.py lower --mode` forms it is built in ("auto": MultiThreshold where monotone, else the full table)."""

    variant: str
    hidden_factor: float
    lowerings: tuple = ("auto",)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and epochs of a demo run; `quick()` is the reduced run of the tests."""

    embed_dim: int = 32
    depth: int = 2
    epochs: int = 30
    batch_size: int = 64
    qat_epochs: int = 5
    qat_lr: float = None  # None: `train --qat`'s default (models.training.default_qat_lr)
    build_configs: tuple = ("unrolled", "folded")
    # None: every step that runs without Vivado, so the totals hold the width converters and the FIFOs sized by
    # simulation (a build stopped at step_generate_estimate_reports has neither; its report says so).
    build_stop_step: str | None = None
    # yosys figures of the LUT layers for these configs' builds (the folded builds' layers take longer to
    # synthesise and show the same estimate model at another PE).
    synth_check_configs: tuple = ("unrolled",)
    bench_seeds: int = 2
    bench_epochs: int = 15
    models: tuple = (DemoModel("relu", 2.0), DemoModel("lerp_psa", 1.0, ("auto", "lerp64")))

    @classmethod
    def quick(cls):
        return cls(embed_dim=16, depth=1, epochs=2, qat_epochs=1, build_configs=("unrolled",), bench_seeds=1,
                   bench_epochs=1,
                   models=(DemoModel("relu", 2.0), DemoModel("lerp_psa", 1.0)))


def model_paths(out_dir: Path, model: DemoModel) -> dict:
    """Where the demo puts the trained and exported files of one model (one folder per variant)."""
    base = out_dir / model.variant
    return dict(float=base / "float" / "model.pt", qat=base / "qat" / "model.pt", onnx=base / "model.onnx")


def lowering_folder(out_dir: Path, model: DemoModel, lowering: str) -> Path:
    """The folder of one lowered form of a model and its builds: the variant's own for "auto", else variant_mode."""
    return out_dir / (model.variant if lowering == "auto" else f"{model.variant}_{lowering}")


def demo_stages(out_dir: Path, settings: DemoSettings) -> list:
    """The stages of the demo in order, each a `build.py` command with its input and output files."""
    size = ["--dataset", "digits", "--embed-dim", str(settings.embed_dim), "--depth", str(settings.depth)]
    # First, as the longest stage: it then runs beside the two model chains instead of after them.
    stages = [Stage("bench_accuracy", ("bench", "accuracy", "--seeds", str(settings.bench_seeds), "--epochs",
                                       str(settings.bench_epochs), "--teacher-epochs", "0", *size[2:],
                                       "--json", str(out_dir / ACCURACY_JSON)),
                    outputs=(out_dir / ACCURACY_JSON,))]
    for model in settings.models:
        p = model_paths(out_dir, model)
        name = model.variant
        stages.append(Stage(f"train_{name}", ("train", *size, "--variant", model.variant, "--hidden-factor",
                                              str(model.hidden_factor), "--epochs", str(settings.epochs),
                                              "--batch-size", str(settings.batch_size),
                                              "--out", str(p["float"].parent), "--force"), outputs=(p["float"],)))
        stages.append(Stage(f"qat_{name}", ("train", "--dataset", "digits", "--qat", "--init", str(p["float"]),
                                            "--epochs", str(settings.qat_epochs),
                                            *(() if settings.qat_lr is None else ("--lr", str(settings.qat_lr))),
                                            "--batch-size", str(settings.batch_size),
                                            "--out", str(p["qat"].parent), "--force"),
                            inputs=(p["float"],), outputs=(p["qat"],), after=(f"train_{name}",)))
        stages.append(Stage(f"export_{name}", ("export", "--checkpoint", str(p["qat"]), "--out", str(p["onnx"])),
                            inputs=(p["qat"],), outputs=(p["onnx"],), after=(f"qat_{name}",)))
        for lowering in model.lowerings:
            folder = lowering_folder(out_dir, model, lowering)
            lowered = folder / "lowered.onnx"
            stages.append(Stage(f"lower_{folder.name}", ("lower", "--model", str(p["onnx"]), "--mode", lowering,
                                                         "--out", str(lowered)),
                                inputs=(p["onnx"],), outputs=(lowered,), after=(f"export_{name}",)))
            for config in settings.build_configs:
                build_dir, config_file = folder / config, REPO_ROOT / "build_configs" / f"{config}.yaml"
                config_files = tuple(sorted(config_file.parent.glob(f"{config}*")))  # e.g. folded_folding.json
                stop = ("--stop-step", settings.build_stop_step) if settings.build_stop_step else ()
                stages.append(Stage(f"build_{folder.name}_{config}",
                                    ("build", "--model", str(lowered), "--config", str(config_file),
                                     "--out", str(build_dir), *stop),
                                    inputs=(lowered, *config_files), outputs=(build_dir / SUMMARY,),
                                    after=(f"lower_{folder.name}",)))
    return stages


def _lut_free_reason(summary: Path) -> str:
    """Why a build needs no synthesis check ("" when it does): it holds no PerChannelLUT layer (a LerpPSA whose
    tables are all monotone became a MultiThreshold; a ReLU model has none)."""
    layers = json.loads(summary.read_text())["layers"] if summary.is_file() else []
    return "" if any(layer["op_type"].startswith("PerChannelLUT") for layer in layers) else "no PerChannelLUT layer"


def synth_check_stages(out_dir: Path, settings: DemoSettings) -> list:
    """yosys synthesis of the LUT layers (`build.py synth-check`) of the builds in `synth_check_configs` of every
    model with learnable functions; a build without LUT layers is settled as not needed once it has run."""
    stages = []
    for model in settings.models:
        if model.variant == "relu":
            continue
        for lowering in model.lowerings:
            folder = lowering_folder(out_dir, model, lowering)
            for config in (c for c in settings.build_configs if c in settings.synth_check_configs):
                build_dir = folder / config
                summary, onnx = build_dir / SUMMARY, saved_model_path(build_dir, SYNTH_CHECK_STEP)
                stages.append(Stage(f"synth_check_{folder.name}_{config}",
                                    ("synth-check", "--model", str(onnx), "--out", str(build_dir)),
                                    inputs=(onnx,), outputs=(build_dir / "synth_check",),
                                    after=(f"build_{folder.name}_{config}",),
                                    skip_reason=lambda summary=summary: _lut_free_reason(summary)))
    return stages


def build_directories(out_dir: Path, settings: DemoSettings) -> list:
    """The demo's build directories in report order: per config, the ReLU baseline first, then each LERP-PSA form."""
    return [lowering_folder(out_dir, m, lowering) / c for c in settings.build_configs for m in settings.models
            for lowering in m.lowerings]


def _final_accuracy(checkpoint: Path):
    """Test accuracy of the last epoch stored in a training checkpoint (float or QAT); None when the stage has not
    written it yet or it records no training history. A file that cannot be read is an error naming it."""
    from psa_finn.models.checkpoint import read_torch_file

    if not Path(checkpoint).is_file():
        return None
    history = (read_torch_file(checkpoint).get("training") or {}).get("history") or []
    return history[-1]["test_accuracy"] if history else None


def report_intro(out_dir: Path, settings: DemoSettings) -> str:
    """The demo's opening of report.md: the models' test accuracies (float, after QAT, exported) and those of the
    lowered forms that went into the builds."""
    lowered = {lowering_folder(out_dir, m, lowering) / "lowered.onnx": (m, lowering)
               for m in settings.models for lowering in m.lowerings}
    onnx = onnx_accuracies([*(model_paths(out_dir, m)["onnx"] for m in settings.models), *lowered],
                           out_dir / ONNX_ACCURACY_JSON)

    def cell(accuracy):
        return "-" if accuracy is None else f"{accuracy:.2f}"

    lines = [f"ResMLPs on scikit-learn digits (8x8, patch 2): embed_dim {settings.embed_dim}, depth {settings.depth}, "
             f"{settings.epochs} float + {settings.qat_epochs} QAT epochs, 8-bit. Test accuracy (%, 360 digits):", "",
             "| model | hidden factor | float | QAT | exported QONNX |", "|---|---|---|---|---|"]
    for model in settings.models:
        p = model_paths(out_dir, model)
        lines.append(f"| {model.variant} | {model.hidden_factor:g} | {cell(_final_accuracy(p['float']))} "
                     f"| {cell(_final_accuracy(p['qat']))} | {cell(onnx.get(str(p['onnx'])))} |")
    lines += ["", "| lowered form (builds) | `build.py lower --mode` | test accuracy |", "|---|---|---|"]
    for path, (model, lowering) in lowered.items():
        lines.append(f"| {path.parent.name} | {lowering} | {cell(onnx.get(str(path)))} |")
    lines += ["", "auto: MultiThreshold where every channel's table is monotone, else the full 2^b-entry table; "
              "lerp64: every 4th entry plus 2 interpolated fraction bits, as the paper's hardware."]
    return "\n".join(lines) + "\n"


def report_appendix(results, stages_s: float, idle_s: float) -> str:
    """The demo's closing of report.md: what each stage did this run and how long it took."""
    lines = ["## Demo stages", "", f"This run's stages: {stages_s:.0f} s wall time. All stages from scratch, each for "
             f"its CPU time on 2 idle cores: about {idle_s:.0f} s. A skipped stage was up to date; its times are "
             f"those of the run that made its outputs. Logs: `logs/<stage>.log`.", "",
             "| stage | this run | wall s | CPU s |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} | {r.cpu_s:.0f} |" for r in results]
    return "\n".join(lines) + "\n"


def add_arguments(parser, command):
    """Arguments of `build.py demo`."""
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true",
                        help="tiny epochs and models, unrolled builds only (a few minutes; what the tests run)")
    parser.add_argument("--jobs", type=positive_int, default=2, help="stages run at once (default 2, one per core)")
    parser.add_argument("--force", action="store_true",
                        help="run every stage again, also those whose outputs are up to date (after a code change)")


def _write_demo_report(out_dir: Path, settings: DemoSettings, results, stages_s: float, idle_s: float):
    """report.md, builds.csv and the plots over the builds that finished (None when none did); prints the tables."""
    builds = [d for d in build_directories(out_dir, settings) if (d / SUMMARY).is_file()]
    if not builds:
        return None
    intro = report_intro(out_dir, settings)
    files = write_report(builds, out_dir, title="psa-finn demo: ReLU against LERP-PSA ResMLP", intro=intro,
                         appendix=report_appendix(results, stages_s, idle_s))
    if files.warnings:
        print(f"{len(files.warnings)} warning(s) about the estimates (totals that undercount, nodes off hardware): "
              f"see the Warnings section of {files.report}")
    summaries = [load_build_summary(d) for d in builds]
    print("\n" + intro)
    print(markdown_table(comparison_rows(summaries, build_labels(summaries))))
    return files


def _shown(path) -> str:
    """A path as the user typed it: relative to the working directory when inside it."""
    path = Path(path)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _print_locations(out_dir: Path, settings: DemoSettings, report_files) -> None:
    print(f"\nWhere everything is (under {_shown(out_dir)}/):")
    if report_files is not None:
        print(f"  {report_files.report.name} (start here), {report_files.csv.name}, plots "
              f"{', '.join(plot.name for plot in report_files.plots)}")
    for model in settings.models:
        print(f"  {model.variant}/: float/model.pt, qat/model.pt (checkpoints), model.onnx (QONNX)")
        for lowering in model.lowerings:
            folder = lowering_folder(out_dir, model, lowering)
            print(f"  {folder.name}/: lowered.onnx + lowered.json ({lowering}), finn-plus builds "
                  f"{', '.join(f'{c}/' for c in settings.build_configs)}")
    print(f"  {ACCURACY_JSON} (bench accuracy), {ONNX_ACCURACY_JSON}, {STAGES_JSON}, {LOG_DIR}/<stage>.log")
    default = (REPO_ROOT / DEFAULT_OUT).resolve()
    hint = "" if out_dir == default else f" with PSA_FINN_DEMO_DIR={out_dir}"
    print(f"Notebooks over these outputs: {_shown(REPO_ROOT / 'notebooks')}/*.ipynb{hint}")


def _run_counts(results) -> str:
    """What this run did with its stages, e.g. "3 run, 17 reused (up to date), 1 not needed"."""
    counts = {status: sum(r.status == status for r in results) for status in
              ("done", "skipped", "not needed", "failed", "blocked")}
    words = {"done": "run", "skipped": "reused (up to date)", "not needed": "not needed", "failed": "failed",
             "blocked": "blocked"}
    return ", ".join(f"{n} {words[status]}" for status, n in counts.items() if n)


def run(args, command) -> int:
    """Run the demo; exit status 0 when every stage finished (or was already done), 1 otherwise."""
    out_dir = check_output_folder(check_own_folder(Path(args.out).resolve(), (STAGES_JSON, LOG_DIR), "demo"))
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    start = time.monotonic()
    print(f"psa-finn demo -> {out_dir} ({'quick' if args.quick else 'full'} run; "
          f"stages already done are skipped)", flush=True)
    stages = demo_stages(out_dir, settings)
    if shutil.which("yosys"):
        stages += synth_check_stages(out_dir, settings)
    else:
        print("yosys not found: no synthesis check of the LUT layers (install yosys to get one)")
    results = run_stages(stages, out_dir, jobs=args.jobs, force=args.force)
    stages_s = time.monotonic() - start
    idle_s = idle_wall_estimate_s(stages, results, IDLE_CORES)
    report_files = _write_demo_report(out_dir, settings, results, stages_s, idle_s)
    wall_s = time.time() - psutil.Process().create_time()  # the whole command, start-up and imports included
    write_text_atomic(out_dir / STAGES_JSON, json.dumps(
        {"quick": args.quick, "wall_s": round(wall_s, 1), "stages_s": round(stages_s, 1),
         "idle_estimate_s": round(idle_s, 1),
         "stages": [dict(name=r.name, status=r.status, seconds=round(r.seconds, 1), cpu_s=round(r.cpu_s, 1),
                         detail=r.detail) for r in results]}, indent=2))
    _print_locations(out_dir, settings, report_files)
    failed = [r for r in results if r.status in ("failed", "blocked")]
    for r in failed:
        print(f"stage {r.name} {r.status}: {r.detail}" + (f" (log {r.log})" if r.log else ""))
    print(f"demo {'finished' if not failed else 'incomplete'} in {wall_s:.0f} s (this command, report included; "
          f"stages: {_run_counts(results)}). From scratch on {IDLE_CORES} idle cores it takes about {idle_s:.0f} s "
          f"(each stage's CPU time, scheduled as the demo does)")
    return 1 if failed else 0
