"""Tests of the demo: the stage runner (skip what is done, block what depends on a failure) and, slow, the quick
demo end to end (`build.py demo --quick`): every stage runs, the report lands in DIR, a second run reuses it all.

The stage-runner tests use `build.py report` over a synthetic build directory as a real, cheap subcommand.
"""

import csv
import json
import os
import re
import shutil
import time

import pytest

import build
from psa_finn.reports.demo import ONNX_ACCURACY_JSON, STAGES_JSON, DemoSettings, build_directories, demo_stages
from psa_finn.reports.stage_runner import (LOG_DIR, REPO_ROOT, Stage, StageResult, idle_wall_estimate_s,
                                           is_up_to_date, run_stages)

QUICK_DEMO_DIR = "quick_demo"


def synthetic_build(path):
    """A build directory with a one-layer summary.json."""
    path.mkdir(parents=True)
    layer = dict(name="MVAU_hls_0", op_type="MVAU_hls", cycles=100, lut=50, dsp=2, bram18=1, uram=0)
    (path / "summary.json").write_text(json.dumps(dict(
        fps=1000.0, latency_ns=500.0, lut=50, dsp=2, bram18=1, uram=0, all_nodes_on_hw=True, layers=[layer],
        zero_estimate_ops=[])))
    return path


def report_stage(name, build_dir, out, after=()):
    return Stage(name, ("report", str(build_dir), "--out", str(out)), inputs=(build_dir / "summary.json",),
                 outputs=(out / "report.md",), after=after)


def test_stage_runs_then_is_skipped_until_its_input_or_command_changes(tmp_path):
    build_dir = synthetic_build(tmp_path / "b")
    stage = report_stage("report_b", build_dir, tmp_path / "r")
    assert [r.status for r in run_stages([stage], tmp_path, jobs=1)] == ["done"]
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / LOG_DIR / "report_b.log").is_file()
    assert [r.status for r in run_stages([stage], tmp_path, jobs=1)] == ["skipped"]
    assert [r.status for r in run_stages([stage], tmp_path, jobs=1, force=True)] == ["done"]
    later = time.time() + 10
    os.utime(build_dir / "summary.json", (later, later))
    assert not is_up_to_date(tmp_path, stage)
    assert [r.status for r in run_stages([stage], tmp_path, jobs=1)] == ["done"]
    retitled = Stage(stage.name, (*stage.command, "--title", "other"), stage.inputs, stage.outputs)
    assert not is_up_to_date(tmp_path, retitled)


def test_failed_stage_blocks_its_dependants_only(tmp_path, capsys):
    good = synthetic_build(tmp_path / "good")
    stages = [report_stage("broken", tmp_path / "missing", tmp_path / "r1"),
              report_stage("needs_broken", good, tmp_path / "r2", after=("broken",)),
              report_stage("independent", good, tmp_path / "r3")]
    results = {r.name: r for r in run_stages(stages, tmp_path, jobs=2)}
    assert {n: r.status for n, r in results.items()} == {"broken": "failed", "needs_broken": "blocked",
                                                         "independent": "done"}
    assert results["broken"].detail == "exit status 2"
    assert "no such build directory" in results["broken"].log.read_text()
    printed = capsys.readouterr().out
    assert "  [broken] build.py report: error:" in printed and "needs_broken: blocked" in printed
    assert not (tmp_path / LOG_DIR / "broken.done.json").exists()


def test_stage_graph_errors_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown: \\['nowhere'\\]"):
        run_stages([Stage("a", ("report",), after=("nowhere",))], tmp_path)
    with pytest.raises(ValueError, match="cycle: \\['a', 'b'\\]"):
        run_stages([Stage("a", ("report",), after=("b",)), Stage("b", ("report",), after=("a",))], tmp_path)


def test_demo_stages_chain_each_model_from_training_to_builds(tmp_path):
    settings = DemoSettings()
    stages = {s.name: s for s in demo_stages(tmp_path, settings)}
    forms = {"relu": "relu", "lerp_psa": "lerp_psa", "lerp_psa_lerp64": "lerp_psa"}
    for folder, variant in forms.items():
        for config in settings.build_configs:
            build_stage = stages[f"build_{folder}_{config}"]
            assert build_stage.outputs == (tmp_path / folder / config / "summary.json",)
            chain = [build_stage]
            while chain[-1].after:
                chain.append(stages[chain[-1].after[0]])
            assert [s.name for s in chain][::-1] == [f"train_{variant}", f"qat_{variant}", f"export_{variant}",
                                                     f"lower_{folder}", build_stage.name]
            for later, earlier in zip(chain, chain[1:]):
                assert set(earlier.outputs) <= set(later.inputs)
            assert REPO_ROOT / "build_configs" / f"{config}.yaml" in build_stage.inputs
    assert stages["lower_lerp_psa_lerp64"].command[-4:] == ("--mode", "lerp64", "--out",
                                                              str(tmp_path / "lerp_psa_lerp64" / "lowered.onnx"))
    assert build_directories(tmp_path, settings) == [tmp_path / f / c for c in ("unrolled", "folded") for f in forms]
    assert len(stages) == 1 + 2 * 3 + 3 * 3, "bench, train/qat/export per model, lower + 2 builds per form"
    assert REPO_ROOT / "build_configs" / "folded_folding.json" in stages["build_relu_folded"].inputs


def test_demo_rejects_zero_jobs(capsys):
    assert build.main(["demo", "--jobs", "0"]) == 2
    assert "argument --jobs: must be at least 1, got 0" in capsys.readouterr().err


def test_progress_counts_over_all_stages_and_settles_stages_not_needed(tmp_path, capsys):
    """One count [k/N] over every stage (no restart for late stages); a stage whose need is known only once the
    stages before it ran is settled as "not needed" with its reason; CPU time is measured per stage."""
    good = synthetic_build(tmp_path / "good")
    stages = [report_stage("first", good, tmp_path / "r1"),
              Stage("late", ("report", str(good), "--out", str(tmp_path / "r2")), after=("first",),
                    skip_reason=lambda: "" if (tmp_path / "r1" / "report.md").is_file() else "no report"),
              Stage("unneeded", ("report", str(good)), after=("first",), skip_reason=lambda: "nothing to do")]
    results = {r.name: r for r in run_stages(stages, tmp_path, jobs=1)}
    assert {n: r.status for n, r in results.items()} == {"first": "done", "late": "done", "unneeded": "not needed"}
    assert results["unneeded"].detail == "nothing to do"
    assert results["first"].cpu_s > 0   # measured (a child process's CPU time), not bounded: no timing assert
    counts = re.findall(r"^\[(\d+)/(\d+)\]", capsys.readouterr().out, flags=re.M)
    assert counts == [("1", "3"), ("2", "3"), ("3", "3")]
    rerun = run_stages(stages, tmp_path, jobs=1)
    assert [r.status for r in rerun] == ["skipped", "skipped", "not needed"]
    assert rerun[0].cpu_s == pytest.approx(results["first"].cpu_s, abs=0.1), "a reused stage keeps its times"


def test_idle_wall_estimate_schedules_cpu_times_as_the_runner_does():
    stages = [Stage("a", ()), Stage("b", ()), Stage("c", (), after=("a",)), Stage("d", (), after=("c", "b"))]
    results = [StageResult(n, "done", cpu_s=t) for n, t in (("a", 10.0), ("b", 30.0), ("c", 5.0), ("d", 1.0))]
    assert idle_wall_estimate_s(stages, results, jobs=2) == 31.0  # a+c on one core while b runs, then d
    assert idle_wall_estimate_s(stages, results, jobs=1) == 46.0


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """Run `build.py demo --quick` (shared with tests/test_notebooks.py through the session's base temp folder)."""
    out = tmp_path_factory.getbasetemp() / QUICK_DEMO_DIR
    start = time.monotonic()
    status = build.main(["demo", "--quick", "--out", str(out)])
    return out, status, time.monotonic() - start


@pytest.mark.slow
def test_quick_demo_writes_report_and_every_stage_output(quick_demo):
    out, status, _ = quick_demo
    stages = json.loads((out / STAGES_JSON).read_text())["stages"]
    assert status == 0, f"stages: {stages}"
    assert {s["status"] for s in stages} <= {"done", "skipped", "not needed"}
    for stage in demo_stages(out, DemoSettings.quick()):
        for path in stage.outputs:
            assert path.exists(), f"{stage.name} did not write {path}"
    with open(out / "builds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["build"] for r in rows] == ["relu/unrolled", "lerp_psa/unrolled"]
    assert all(float(r["fps"]) > 0 and float(r["lut"]) > 0 for r in rows)
    report = (out / "report.md").read_text()
    assert re.search(r"\| relu \| 2 \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d \|", report), "float, QAT, QONNX accuracy"
    assert re.search(r"\| lerp_psa \| auto \| \d+\.\d\d \|", report), "accuracy of the lowered model"
    cached = json.loads((out / ONNX_ACCURACY_JSON).read_text())
    assert set(cached) == {str(out / v / f) for v in ("relu", "lerp_psa") for f in ("model.onnx", "lowered.onnx")}
    for plot in ("resources_by_layer.png", "cycles_by_layer.png", "baseline_vs_psa.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    for variant in ("relu", "lerp_psa"):  # complete totals: the width converters and sized FIFOs are in them
        assert json.loads((out / variant / "unrolled" / "summary.json").read_text())["fifo_sizing"]["deadlock_free"]
    assert "totals hold no FIFO" not in report
    if shutil.which("yosys"):
        assert "lerp_psa/unrolled: yosys synthesis of the LUT layers beside the estimates" in report
        assert "synth_check_lerp_psa_unrolled" in [s["name"] for s in stages]


@pytest.mark.slow
def test_quick_demo_rerun_reuses_every_stage(quick_demo, capsys):
    out, _, _ = quick_demo
    cached = (out / ONNX_ACCURACY_JSON).read_text()
    assert build.main(["demo", "--quick", "--out", str(out)]) == 0
    stages = json.loads((out / STAGES_JSON).read_text())["stages"]
    assert {s["status"] for s in stages} <= {"skipped", "not needed"} and stages[0]["status"] == "skipped"
    assert (out / ONNX_ACCURACY_JSON).read_text() == cached, "unchanged models are not evaluated again"
    printed = capsys.readouterr().out
    assert f"Where everything is (under {out}/):" in printed and "report.md (start here)" in printed
    reused = sum(s["status"] == "skipped" for s in stages)
    assert re.search(rf"demo finished in \d+ s \(this command, report included; stages: {reused} reused \(up to date\)",
                     printed)
