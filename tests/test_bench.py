"""The two benchmarks at toy sizes: JSON layout, memory accounting and the accuracy plot (no timing assertions)."""

import json

import pytest
import torch

import build
from psa_finn.models import BSpline, LerpPSA, PSA
from psa_finn.models.deep_bspline import DeepBSpline
from psa_finn.models.bench_accuracy import AccuracyBenchConfig, run_accuracy_bench
from psa_finn.models.bench_kernels import (APPLICATIONS, CHANNELS, KERNEL_VARIANTS, build_kernel_model,
                                           run_kernel_bench)


def test_kernel_models_follow_the_reference_workload():
    for variant in KERNEL_VARIANTS:
        model = build_kernel_model(variant)
        assert len(model) == 2 * APPLICATIONS
        assert len(set(map(id, model))) == 2  # one activation and one Linear, each applied APPLICATIONS times
        first, second = model[0], model[1]
        if variant in ("relu", "gelu"):
            assert isinstance(first, torch.nn.Linear)
        else:
            assert isinstance(second, torch.nn.Linear) and first.num_channels == CHANNELS
    assert build_kernel_model("lerp_psa_save_memory")[0].save_memory
    assert not build_kernel_model("lerp_psa")[0].save_memory
    assert type(build_kernel_model("psa")[0]) is PSA
    assert type(build_kernel_model("bspline")[0]) is DeepBSpline           # the spec's baseline kernel
    assert type(build_kernel_model("bspline_lerp")[0]) is BSpline and build_kernel_model("bspline_lerp")[0].save_memory
    assert isinstance(build_kernel_model("lerp_psa")[0], LerpPSA)


def test_kernel_bench_json(tmp_path, capsys):
    path = tmp_path / "kernels.json"
    assert build.main(["bench", "kernels", "--scale", "0.004", "--repeats", "1", "--json", str(path),
                       "--device", "cpu", "--threads", str(torch.get_num_threads())]) == 0
    report = json.loads(path.read_text())
    assert report["rows"] == 33 and report["channels"] == CHANNELS
    for variant in KERNEL_VARIANTS:
        figures = report[variant]
        assert figures["median_ms"] > 0 and len(figures["times_ms"]) == 1
        # at least the Linear's weight and bias with AdamW's two moments, and the input
        assert figures["peak_mb"] * 2 ** 20 >= 4 * (3 * (CHANNELS * CHANNELS + CHANNELS) + 33 * CHANNELS)
    for baseline in ("bspline", "bspline_lerp"):
        assert report[baseline][f"time_vs_{baseline}"] == 1.0 and report[baseline][f"memory_vs_{baseline}"] == 1.0
    ratio = report["lerp_psa"]["median_ms"] / report["bspline_lerp"]["median_ms"]
    assert report["lerp_psa"]["time_vs_bspline_lerp"] == pytest.approx(ratio)
    assert "lerp_psa" in capsys.readouterr().out


def test_kernel_bench_variants_subset(tmp_path):
    path = tmp_path / "subset.json"
    assert build.main(["bench", "kernels", "--scale", "0.004", "--repeats", "1", "--variants", "relu, bspline_lerp",
                       "--json", str(path), "--device", "cpu"]) == 0
    report = json.loads(path.read_text())
    assert {k for k in report if k in KERNEL_VARIANTS} == {"relu", "bspline_lerp"}
    assert "time_vs_bspline_lerp" in report["relu"] and "time_vs_bspline" not in report["relu"]
    assert build.main(["bench", "kernels", "--variants", "relu,nope"]) == 2


def test_exact_psa_needs_more_memory_than_lerp_psa():
    # exact PSA keeps [rows, C, E] intermediates per application; LERP-PSA O(rows * C) plus a [G, C, E] table
    report = run_kernel_bench(scale=256 / 8192, repeats=1, variants=("psa", "lerp_psa", "relu"))
    assert report["psa"]["peak_mb"] > 2 * report["lerp_psa"]["peak_mb"]
    assert report["lerp_psa"]["peak_mb"] > report["relu"]["peak_mb"]


def test_kernel_bench_rejects_bad_options():
    with pytest.raises(ValueError, match="scale"):
        run_kernel_bench(scale=0)
    with pytest.raises(ValueError, match="repeats"):
        run_kernel_bench(repeats=0)
    with pytest.raises(ValueError, match="unknown foo; choose from lerp_psa, "):
        run_kernel_bench(variants=("lerp_psa", "foo"))
    with pytest.raises(ValueError, match="none given"):
        run_kernel_bench(variants=())


@pytest.mark.slow
def test_accuracy_bench_json_and_plot(tmp_path):
    config = AccuracyBenchConfig(seeds=2, epochs=1, teacher_epochs=1, embed_dim=8, depth=1, batch_size=256,
                                 hidden_factors={"relu": (1.0, 0.5), "lerp_psa": (0.5,)})
    report = run_accuracy_bench(config, json_path=tmp_path / "acc.json", plot_path=tmp_path / "acc.png")
    saved = json.loads((tmp_path / "acc.json").read_text())
    assert saved["results"].keys() == {"relu", "lerp_psa"}
    assert saved["results"]["relu"].keys() == {"1.0", "0.5"}
    entry = saved["results"]["lerp_psa"]["0.5"]
    assert len(entry["accuracies"]) == 2 and entry["hidden_dim"] == 4
    assert entry["mean"] == pytest.approx(sum(entry["accuracies"]) / 2)
    assert saved["teacher"]["hidden_dim"] == 32
    claim = saved["claim_lerp_psa_half_width_vs_relu"]
    assert [(c["relu_hidden_factor"], c["lerp_psa_hidden_factor"]) for c in claim] == [(1.0, 0.5)]
    assert claim[0]["reached"] == (entry["mean"] >= saved["results"]["relu"]["1.0"]["mean"])
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["wall_s"] > 0
