"""Runs a sweep: every trial a Ray task (`sweeps.trial.run_trial`), the teacher trained once, results kept safe.

Ray: a local instance on this machine's cores by default (`cpus` limits it; no dashboard, no usage statistics, a
small object store), or an existing cluster at `address` / RAY_ADDRESS (psa-finn installed on every node; trials
return their files to this process, so no shared file system is needed). Each trial declares
`resources.cpus_per_trial` CPUs and, where the cluster has GPUs, `gpus_per_trial` GPUs (training then runs on
CUDA). A trial runs in a fresh worker process (`max_calls=1`), so finn-plus and torch state never leak between trials,
and is never retried by Ray: a crashed worker is recorded as a failed trial and the sweep goes on; the next run of
the same sweep retries it.

At most as many trials are in flight as the cluster can run at once, so "running" in the progress bar is what runs.
Ctrl-C or SIGTERM cancels the running tasks, shuts a local Ray down (no worker is left behind), writes the results
of what finished and ends with KeyboardInterrupt (exit 130). DIR/results.{csv,json}, report.md and pareto.png are
rewritten after every run, from every committed trial of this space.
"""

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psa_finn.common.cli_errors import BadInput, EnvironmentFailure, interrupts_as_exceptions, one_line
from psa_finn.common.output_paths import check_own_folder
from psa_finn.sweeps import store
from psa_finn.sweeps.search import make_search, records_of_space
from psa_finn.sweeps.space import PACKAGED_BUILD_CONFIGS, training_id, trial_id
from psa_finn.sweeps.trial import TRAINED_FILES, run_trial, train_teacher

OBJECT_STORE_BYTES = 256 * 1024 ** 2   # trial files are a few MB at most; Ray's default would take 30 % of memory
WAIT_S = 5.0
PARETO_PLOT = "pareto.png"


@dataclass
class SweepOutcome:
    """What one run of a sweep did."""

    ran: int
    failed: int
    reused: int
    wall_s: float
    rows: list


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """EnvironmentFailure naming --address unless something listens at its host:port (Ray's own connection
    attempt retries for minutes and prints a page); "auto" and ray:// addresses are left to Ray."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise EnvironmentFailure(f"--address {address}: no Ray cluster answers there ({reason}); start one with "
                                 f"`ray start --head` and pass its address, or leave --address out for a local "
                                 f"instance") from err


@contextmanager
def ray_cluster(address=None, cpus=None):
    """Ray for the block: connect to `address` (or RAY_ADDRESS), else start a local instance on `cpus` cores (all by
    default). Yields a one-line description; shuts Ray down afterwards (a local instance with all its workers)."""
    import logging

    try:
        import ray
    except ImportError as err:
        raise EnvironmentFailure(f"build.py sweep runs its trials on Ray, which is not installed ({err}): "
                                 f"`python -m pip install ray optuna` or rerun scripts/setup.sh") from err
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address and cpus:
        raise BadInput("--cpus sizes a local Ray instance; with --address (or RAY_ADDRESS) the cluster has its own")
    if address:
        check_reachable(address)
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, object_store_memory=OBJECT_STORE_BYTES)
    try:
        resources = ray.cluster_resources()
        where = f"Ray at {address}" if address else "local Ray"
        gpus = f", {resources['GPU']:g} GPUs" if resources.get("GPU") else ""
        yield f"{where}, {resources.get('CPU', 0):g} CPUs{gpus}"
    finally:
        ray.shutdown()


def _trial_task(spec, tid, config, teacher_checkpoint, device, threads, keep_build, trained):
    """The Ray task of one trial (resolves a packaged build config on the node that runs it)."""
    from psa_finn.sweeps.space import file_sha, resolve_build_config

    path = resolve_build_config(config, ".")
    if file_sha(path) != spec.build_config_sha:
        raise BadInput(f"build config {path} differs on this node from the one the sweep hashed; install the same "
                       f"psa-finn everywhere")
    return run_trial(spec, tid, path, teacher_checkpoint, device, threads, keep_build, trained)


def _resources(space):
    """(cpus, gpus per trial, device, trials that fit at once) on the connected cluster; BadInput when none fits."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = space.cpus_per_trial, space.gpus_per_trial
    if gpus == "auto":
        gpus = 1 if total.get("GPU", 0) >= 1 else 0
    if cpus > total.get("CPU", 0):
        raise BadInput(f"{space.source}: resources.cpus_per_trial {cpus:g} exceeds the cluster's "
                       f"{total.get('CPU', 0):g} CPUs; lower it or pass more --cpus")
    if gpus > total.get("GPU", 0):
        raise BadInput(f"{space.source}: resources.gpus_per_trial {gpus:g} but the cluster has "
                       f"{total.get('GPU', 0):g} GPUs; set it to 0 or auto")
    fit = math.floor(total["CPU"] / cpus + 1e-9)
    if gpus:
        fit = min(fit, math.floor(total["GPU"] / gpus + 1e-9))
    return cpus, gpus, ("cuda" if gpus else "cpu"), max(1, fit)


def _config_for_task(space, spec) -> str:
    return spec.build_config if spec.build_config in PACKAGED_BUILD_CONFIGS else str(space.build_config_path(spec))


def _teacher_checkpoint(space, out_dir: Path, options: dict, device):
    """The teacher's model.pt bytes, trained (as a Ray task) only when the sweep folder has none yet."""
    import ray

    if space.teacher is None:
        return None
    tid = space.teacher.teacher_id()
    folder = out_dir / store.TEACHER / tid
    record = store.read_record(folder)
    if record is None or record["status"] != "ok":
        print(f"training the teacher (relu, hidden factor {space.teacher.hidden_factor:g}, "
              f"{space.teacher.epochs} epochs) -> {folder}", flush=True)
        task = ray.remote(max_calls=1, max_retries=0)(train_teacher).options(**options)
        result = ray.get(task.remote(space.teacher, device, max(1, int(options["num_cpus"]))))
        store.commit(out_dir / store.TEACHER, tid, result["record"], result["files"])
        if result["record"]["status"] != "ok":
            raise RuntimeError(f"the sweep's teacher failed in {result['record']['failed_stage']}: "
                               f"{result['record']['error']} (log: {folder / 'trial.log'})")
        print(f"teacher: {result['record']['metrics']['accuracy_float']:.2f}% test accuracy", flush=True)
    return (folder / "model.pt").read_bytes()


def _crashed_record(spec, tid, error) -> dict:
    from dataclasses import asdict

    return {"id": tid, "status": "failed", "spec": asdict(spec), "metrics": {}, "failed_stage": "ray",
            "error": f"the trial's Ray task failed: {one_line(error)}", "traceback": None, "wall_s": None}


class _Progress:
    """tqdm bar of finished trials with done / running / failed counts."""

    def __init__(self, total, initial, enabled):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="trials", unit="trial", disable=not enabled,
                        dynamic_ncols=True)
        self.failed = 0

    def show(self, running):
        self.bar.set_postfix_str(f"done {self.bar.n - self.failed}, running {running}, failed {self.failed}")

    def finished(self, record, running):
        self.failed += record["status"] != "ok"
        self.bar.update(1)
        self.show(running)
        status = "ok" if record["status"] == "ok" else f"FAILED in {record['failed_stage']}: {record['error']}"
        self.bar.write(f"{record['id']}: {status}")

    def close(self):
        self.bar.close()


class _Trainings:
    """Trained models shared between trials (DIR/models/<training id>/): a trial whose training twin is running
    waits for it instead of training the same models again."""

    def __init__(self, folder: Path):
        self.folder, self.running, self.waiting = folder, set(), []

    def trained(self, spec):
        """{"float.pt", "qat.pt", "metrics"} of the spec's training when it is stored, else None."""
        folder = self.folder / training_id(spec)
        record = store.read_record(folder)
        if record is None or not all((folder / name).is_file() for name in TRAINED_FILES):
            return None
        return {"metrics": record["metrics"], **{name: (folder / name).read_bytes() for name in TRAINED_FILES}}

    def next(self, search):
        """The next (point, spec) to start: a waiting one whose twin finished, else a new one from the search whose
        training is not running (those wait); None when nothing can start now."""
        for index, (point, spec) in enumerate(self.waiting):
            if training_id(spec) not in self.running:
                return self.waiting.pop(index)
        while (item := search.ask()) is not None:
            if training_id(item[1]) not in self.running:
                return item
            self.waiting.append(item)
        return None

    def keep(self, spec, record, files):
        """Store the models of a trial that trained them (also when a later stage failed)."""
        self.running.discard(training_id(spec))
        metrics = record.get("metrics", {})
        if all(name in files for name in TRAINED_FILES) and "accuracy_qat" in metrics and not record.get("training"):
            store.commit(self.folder, training_id(spec), {"status": "ok", "trial": record["id"], "metrics": {
                k: metrics[k] for k in ("accuracy_float", "accuracy_qat")}}, {n: files[n] for n in TRAINED_FILES})


def _schedule(space, out_dir, search, teacher_ref, resources, counts: dict, progress) -> None:
    """Run the search's trials as Ray tasks until it is finished, counting them in `counts` ("ran", "failed")."""
    import ray

    cpus, gpus, device, fit = resources
    task = ray.remote(max_calls=1, max_retries=0)(_trial_task).options(num_cpus=cpus, num_gpus=gpus)
    trials_dir = out_dir / store.TRIALS
    trainings = _Trainings(out_dir / store.MODELS)
    in_flight = {}
    bar = _Progress(search.total, search.reused, progress)
    try:
        while True:
            while len(in_flight) < fit and (item := trainings.next(search)) is not None:
                point, spec = item
                tid, trained = trial_id(spec), trainings.trained(spec)
                if trained is None:
                    trainings.running.add(training_id(spec))
                ref = task.remote(spec, tid, _config_for_task(space, spec), teacher_ref, device, max(1, int(cpus)),
                                  space.keep_build, trained)
                in_flight[ref] = (point, spec, tid, trained is not None)
            bar.show(len(in_flight))
            if not in_flight:
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                point, spec, tid, reused = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    result = {"record": _crashed_record(spec, tid, error), "files": {}}
                record = dict(result["record"], point=point, training=training_id(spec) if reused else None)
                trainings.keep(spec, record, result["files"])
                files = {k: v for k, v in result["files"].items() if not (reused and k in TRAINED_FILES)}
                store.commit(trials_dir, tid, record, files)
                search.tell(point, spec, record)
                counts["ran"] += 1
                counts["failed"] += record["status"] != "ok"
                bar.finished(record, len(in_flight))
    except BaseException:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()


def write_outputs(space, out_dir: Path, summary: dict) -> list:
    """results.csv/json, pareto.png and report.md from every committed trial of `space`; returns the rows."""
    from psa_finn.reports.plots import save_figure_atomic
    from psa_finn.sweeps.plots import pareto_figure
    from psa_finn.sweeps.results import result_rows, write_report, write_results

    rows = result_rows(records_of_space(space, store.records(out_dir / store.TRIALS)).values(), space.objectives)
    write_results(out_dir, rows, summary)
    save_figure_atomic(pareto_figure(rows, f"{space.dataset}: {Path(space.source).name}"), out_dir / PARETO_PLOT)
    write_report(out_dir, rows, summary, PARETO_PLOT)
    return rows


def run_sweep(space, out_dir, address=None, cpus=None, progress=True) -> SweepOutcome:
    """Run (or continue) the sweep of `space` into `out_dir`; see the module docstring."""
    out_dir = check_own_folder(Path(out_dir), (store.TRIALS, store.LOCK, store.MODELS, store.TEACHER), "sweep")
    start = time.perf_counter()
    with store.sweep_lock(out_dir):
        for folder in (store.TRIALS, store.TEACHER, store.MODELS):
            store.clean_stale(out_dir / folder)
        search = make_search(space, store.records(out_dir / store.TRIALS))
        counts = {"ran": 0, "failed": 0}
        cluster = "no trial to run"
        connected = search.finished()  # outputs are written once Ray ran (not for a cluster that never answered)
        try:
            if not search.finished():
                with ray_cluster(address, cpus) as cluster, interrupts_as_exceptions():
                    import ray

                    connected = True
                    print(f"sweep {space.source}: {search.total} trial(s), {search.reused} already done; {cluster}",
                          flush=True)
                    resources = _resources(space)
                    options = {"num_cpus": resources[0], "num_gpus": resources[1]}
                    teacher = _teacher_checkpoint(space, out_dir, options, resources[2])
                    teacher_ref = None if teacher is None else ray.put(teacher)
                    _schedule(space, out_dir, search, teacher_ref, resources, counts, progress)
        finally:
            wall_s = time.perf_counter() - start
            if connected:
                summary = {"space": str(space.source), "dataset": space.dataset, "family": space.family,
                           "embed_dim": space.embed_dim, "depth": space.depth, "method": space.method,
                           "objectives": space.objectives, **counts, "skipped": search.reused,
                           "wall_s": round(wall_s, 1), "cluster": cluster,
                           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                rows = write_outputs(space, out_dir, summary)
    return SweepOutcome(ran=counts["ran"], failed=counts["failed"], reused=search.reused, wall_s=wall_s, rows=rows)
