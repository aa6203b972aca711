"""sweeps.space, sweeps.search and sweeps.store without Ray: the trials a space holds, their stable ids, clear errors
on bad space files, what a rerun skips and retries, NSGA-II's ask/tell, and trial folders written whole."""

import os
import subprocess
import sys

import pytest

from psa_finn.build import main
from psa_finn.common.cli_errors import EXIT_BAD_INPUT, BadInput
from psa_finn.models.training import default_qat_lr
from psa_finn.sweeps import store
from psa_finn.sweeps.search import GridSearch, NSGA2Search, records_of_space
from psa_finn.sweeps.space import load_space, parse_space, training_id, trial_id

TINY = {"dataset": "digits", "model": {"family": "resmlp", "embed_dim": 8, "depth": 1},
        "training": {"epochs": 1, "batch_size": 256, "qat_epochs": 0},
        "axes": {"variant": ["relu", "lerp_psa"], "hidden_factor": [1.0, 0.5]}}


def space_of(**changes):
    data = {**TINY, **changes}
    return parse_space(data, "space.yaml")


def test_grid_is_the_product_of_the_axes_without_settings_a_variant_ignores():
    space = space_of(axes={"variant": ["relu", "lerp_psa", "bspline"], "hidden_factor": [1.0, 0.5],
                           "grid_size": [32, 64], "lowering": ["auto", "lerp64"], "bits": [8, 4]})
    specs = [spec for _, spec in space.grid_points()]
    assert space.grid_size() == 3 * 2 * 2 * 2 * 2
    # relu: 2 h x 2 bits (no grid, no lowering); lerp_psa: 2 x 2 x 2 grids x 2 lowerings; bspline: 2 x 2 x 2 lowerings
    assert [sum(s.variant == v for s in specs) for v in ("relu", "lerp_psa", "bspline")] == [4, 16, 8]
    assert all(s.grid_size is None and s.lowering is None for s in specs if s.variant == "relu")
    assert all(s.grid_size is None for s in specs if s.variant == "bspline")
    assert len({trial_id(s) for s in specs}) == len(specs) == 28
    assert {s.qat_lr for s in specs if s.bits == 8} == {default_qat_lr(8)} != {s.qat_lr for s in specs if s.bits == 4}


def test_trial_ids_are_readable_and_change_with_any_setting_but_not_with_the_space_location(tmp_path):
    ids = [trial_id(spec) for _, spec in space_of().grid_points()]
    assert ids[0].startswith("relu-h1-b8-unrolled-s0-") and ids[2].startswith("lerp_psa-h1-b8-g64-auto-unrolled-s0-")
    for folder in ("a", "b/c"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "s.yaml").write_text(
            "dataset: digits\nmodel: {embed_dim: 8, depth: 1}\ntraining: {epochs: 1, batch_size: 256, qat_epochs: 0}"
            "\naxes: {variant: [relu, lerp_psa], hidden_factor: [1.0, 0.5]}\n")
        assert [trial_id(s) for _, s in load_space(tmp_path / folder / "s.yaml").grid_points()] == ids
    longer = space_of(training={**TINY["training"], "epochs": 2})
    assert not set(ids) & {trial_id(s) for _, s in longer.grid_points()}


def test_trials_that_differ_only_in_lowering_or_build_share_their_training():
    space = space_of(axes={"variant": ["lerp_psa"], "hidden_factor": [1.0], "bits": [8, 4],
                           "lowering": ["auto", "lerp64"], "build_config": ["unrolled", "folded"]})
    specs = [spec for _, spec in space.grid_points()]
    by_training = {}
    for spec in specs:
        by_training.setdefault(training_id(spec), set()).add((spec.lowering, spec.build_config))
    assert len(specs) == 8 and len(by_training) == 2
    assert all(len(shared) == 4 for shared in by_training.values())
    assert sorted(by_training)[0].startswith("lerp_psa-h1-b4-g64-s0-")


@pytest.mark.parametrize("change, message", [
    ({"dataset": "mnist"}, r"dataset: must be one of \['cifar10', 'svhn', 'digits', 'mnist1d'\], got 'mnist'"),
    ({"epochs": 3}, r"epochs: unknown key; allowed here"),
    ({"axes": {"variant": ["relu", "swish"], "hidden_factor": [1]}}, r"axes\.variant: must be one of"),
    ({"axes": {"variant": ["relu"], "hidden_factor": [1, 1.0]}}, r"axes\.hidden_factor: lists a value twice"),
    ({"axes": {"variant": ["relu"], "hidden_factor": [0]}}, r"axes\.hidden_factor: must be a number >= 1e-06"),
    ({"axes": {"variant": ["relu"], "hidden_factor": [1], "bits": [9]}}, r"axes\.bits: must be one of \[2, 3,"),
    ({"axes": {"variant": ["relu"]}}, r"axes\.hidden_factor: is required"),
    ({"axes": {"variant": ["relu"], "hidden_factor": [1], "build_config": ["nope.yaml"]}},
     r"axes\.build_config 'nope\.yaml' is neither one of \['unrolled', 'folded'\] nor an existing YAML file"),
    ({"search": {"method": "nsga2"}}, r"search\.trials: must be an integer >= 1, got None"),
    ({"search": {"objectives": {"latency": "min"}}}, r"search\.objectives: 'latency' is not a numeric result column"),
    ({"training": {"qat_lr": {12: 1e-3}}}, r"training\.qat_lr: must be one of"),
    ({"resources": {"cpus_per_trial": 0}}, r"resources\.cpus_per_trial: must be a number >= 0\.01"),
])
def test_bad_space_files_name_the_file_and_the_key(change, message):
    with pytest.raises(BadInput, match=r"space\.yaml: " + message):
        space_of(**change)


def test_cli_bad_space_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("dataset: digits\naxes: {variant: [relu], hidden_factor: 1\n")
    assert main(["sweep", "--space", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("psa-finn sweep: error: ") and "not valid YAML" in err
    assert main(["sweep", "--space", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def record(spec, point, status="ok", **metrics):
    from dataclasses import asdict

    return {"id": trial_id(spec), "status": status, "spec": asdict(spec), "point": point, "metrics": metrics,
            "error": None if status == "ok" else "boom", "failed_stage": None if status == "ok" else "train"}


def test_grid_search_skips_finished_trials_and_retries_failed_ones():
    space = space_of()
    points = space.grid_points()
    records = {trial_id(points[0][1]): record(points[0][1], points[0][0]),
               trial_id(points[1][1]): record(points[1][1], points[1][0], status="failed")}
    search = GridSearch(space, records)
    asked = []
    while (item := search.ask()) is not None:
        asked.append(trial_id(item[1]))
    assert (search.total, search.reused) == (4, 1)
    assert asked == [trial_id(s) for _, s in points[1:]] and search.finished()
    assert set(records_of_space(space, records)) == set(records)
    assert records_of_space(space_of(training={**TINY["training"], "epochs": 5}), records) == {}
    narrower = space_of(axes={"variant": ["relu", "lerp_psa"], "hidden_factor": [0.5]})
    assert set(records_of_space(narrower, records)) == {trial_id(points[1][1])}   # relu h0.5; relu h1 is off its axes


def fake_metrics(spec):
    """A made-up accuracy/cost trade-off: wider and more bits cost more and score more."""
    cost = spec.hidden_factor * 100 * spec.bits + (50 if spec.variant == "lerp_psa" else 0)
    return {"accuracy_lowered": 80 + 10 * spec.hidden_factor + spec.bits + (3 if spec.variant != "relu" else 0),
            "luts_plus_dsp": cost}


def test_nsga2_runs_the_asked_number_of_distinct_trials_and_resumes_from_finished_ones():
    axes = {"variant": ["relu", "lerp_psa"], "hidden_factor": [2.0, 1.0, 0.5, 0.25], "bits": [8, 6, 4],
            "grid_size": [32, 64]}
    space = space_of(axes=axes, search={"method": "nsga2", "trials": 12, "population": 4, "seed": 1})
    search = NSGA2Search(space, {})
    finished = {}
    while not search.finished():
        item = search.ask()
        assert item is not None
        point, spec = item
        finished[trial_id(spec)] = record(spec, point, **fake_metrics(spec))
        search.tell(point, spec, finished[trial_id(spec)])
    assert len(finished) == 12 and search.asks >= 12
    resumed = NSGA2Search(parse_space({**TINY, "axes": axes, "search": {"method": "nsga2", "trials": 15,
                                                                          "population": 4, "seed": 1}},
                                      "space.yaml"), finished)
    assert (resumed.reused, len(resumed.study.trials)) == (12, 12)
    more = []
    while (item := resumed.ask()) is not None:
        more.append(trial_id(item[1]))
        resumed.tell(*item, record(item[1], item[0], **fake_metrics(item[1])))
    assert len(more) == 3 and not set(more) & set(finished)


def test_nsga2_stops_when_the_space_has_fewer_distinct_trials_than_asked():
    space = space_of(axes={"variant": ["relu"], "hidden_factor": [1.0, 0.5], "grid_size": [16, 32, 64]},
                     search={"method": "nsga2", "trials": 10, "population": 2})
    search = NSGA2Search(space, {})
    seen = set()
    while (item := search.ask()) is not None:
        seen.add(trial_id(item[1]))
        search.tell(*item, record(item[1], item[0], **fake_metrics(item[1])))
    assert search.target == 2 and len(seen) == 2 and search.finished()


def test_commit_replaces_an_earlier_attempt_whole_and_clean_stale_repairs_a_killed_commit(tmp_path):
    first = store.commit(tmp_path, "t1", {"status": "failed", "error": "x"}, {"trial.log": b"old", "a/b.txt": b"1"})
    assert store.read_record(first)["status"] == "failed" and (first / "a" / "b.txt").read_bytes() == b"1"
    store.commit(tmp_path, "t1", {"status": "ok"}, {"trial.log": b"new"})
    assert store.read_record(first) == {"status": "ok"} and not (first / "a").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1"]
    with pytest.raises(ValueError, match="outside its folder"):
        store.commit(tmp_path, "t2", {"status": "ok"}, {"../escape": b""})
    # a kill between the two renames leaves .t1.old and no t1; one after writing files leaves .t3.partial
    os.replace(first, tmp_path / ".t1.old")
    (tmp_path / ".t3.partial").mkdir()
    (tmp_path / ".t3.partial" / "trial.log").write_text("half")
    store.clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1"] and store.records(tmp_path) == {"t1": {"status": "ok"}}


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom psa_finn.sweeps.store import sweep_lock\n"
        f"with sweep_lock({str(tmp_path)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BadInput, match=rf"--out {tmp_path}: another sweep \(pid {holder.pid}\) is running"):
            with store.sweep_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with store.sweep_lock(tmp_path):
        pass
