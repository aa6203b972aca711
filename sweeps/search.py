"""Which trial to run next: the full grid, or Optuna's NSGA-II (multi-objective) for spaces too large for a grid.

Both give `ask() -> (point, spec) | None` (None: nothing more to start now), `tell(point, spec, record)` and
`finished()`. Trials already finished ok in the sweep folder are not asked again: the grid skips them, NSGA-II gets
them as completed trials of its study (so a rerun continues the search where it stopped). Failed trials of the same
space are asked first on a rerun.
"""

from psa_finn.common.cli_errors import EnvironmentFailure
from psa_finn.sweeps.results import result_row
from psa_finn.sweeps.space import trial_id


def objective_values(record: dict, objectives: dict):
    """The record's objective values in `objectives` order, or None when it failed or lacks one."""
    if record.get("status") != "ok":
        return None
    row = result_row(record)  # metrics and the record's own wall_s / cpu_s, as the results table has them
    values = [row.get(column) for column in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values]


def records_of_space(space, records: dict) -> dict:
    """{trial id: record} of the records (ok or failed) whose stored point lies on the axes of `space` and gives the
    same trial there (same fixed settings). A point on the axes builds its spec as the grid does, so nothing is
    caught here: a spec that cannot be built fails the grid too."""
    found = {}
    for tid, record in records.items():
        point = record.get("point")
        if isinstance(point, dict) and set(point) == set(space.axes) \
                and all(value in space.axes[name] for name, value in point.items()) \
                and trial_id(space.spec(point)) == tid:
            found[tid] = record
    return found


class GridSearch:
    """Every distinct point of the space, in axis order, skipping those already finished ok."""

    def __init__(self, space, records: dict):
        points = space.grid_points()
        self.total = len(points)
        done = {tid for tid, r in records.items() if r.get("status") == "ok"}
        self.queue = [(point, spec) for point, spec in points if trial_id(spec) not in done]
        self.reused = self.total - len(self.queue)

    def ask(self):
        return self.queue.pop(0) if self.queue else None

    def tell(self, point, spec, record):
        """Nothing to learn: the grid is fixed."""

    def finished(self) -> bool:
        return not self.queue


class NSGA2Search:
    """Optuna's NSGA-II over the space's axes (categorical), for `space.trials` distinct trials in all.

    Asked points that normalise to a trial already run are answered from its record without running it again; the
    number of asks is capped (ASK_LIMIT_FACTOR x trials) so a small space cannot make it loop.
    """

    ASK_LIMIT_FACTOR = 20

    def __init__(self, space, records: dict):
        try:
            import optuna
        except ImportError as err:
            raise EnvironmentFailure(f"search.method nsga2 needs Optuna, which is not installed ({err}): "
                                     f"`python -m pip install optuna` or rerun scripts/setup.sh") from err
        from optuna.distributions import CategoricalDistribution
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._fail, self._create_trial = TrialState.FAIL, create_trial
        self.space = space
        self.distributions = {name: CategoricalDistribution(list(values)) for name, values in space.axes.items()}
        directions = ["maximize" if sense == "max" else "minimize" for sense in space.objectives.values()]
        sampler = optuna.samplers.NSGAIISampler(population_size=space.population, seed=space.search_seed)
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        self.target = min(space.trials, len(space.grid_points()) if space.grid_size() <= 10_000 else space.trials)
        self.values, self.waiting, self.asks = {}, {}, 0
        in_space = records_of_space(space, records)
        for tid, record in in_space.items():
            values = objective_values(record, space.objectives)
            if values is not None:
                self._add_completed(record["point"], values)
                self.values[tid] = values
        self.reused = len(self.values)
        self.retry = [(r["point"], space.spec(r["point"])) for r in in_space.values() if r["status"] != "ok"]
        self.total = self.target

    def _started(self) -> int:
        return len(self.values) + len(self.waiting)

    def ask(self):
        while self._started() < self.target and self.asks < self.ASK_LIMIT_FACTOR * self.target:
            if self.retry:
                point, spec = self.retry.pop(0)
                self.waiting[trial_id(spec)] = []      # a retry: not asked of the sampler, added when done
                return point, spec
            trial = self.study.ask(self.distributions)
            self.asks += 1
            point = dict(trial.params)
            spec = self.space.spec(point)
            tid = trial_id(spec)
            if tid in self.values:
                self._tell(trial, self.values[tid])
            elif tid in self.waiting:
                self.waiting[tid].append(trial)
            else:
                self.waiting[tid] = [trial]
                return point, spec
        return None

    def _add_completed(self, point, values):
        self.study.add_trial(self._create_trial(params=point, distributions=self.distributions, values=values))

    def _tell(self, trial, values):
        if values is None:
            self.study.tell(trial, state=self._fail)
        else:
            self.study.tell(trial, values)

    def tell(self, point, spec, record):
        tid = trial_id(spec)
        values = objective_values(record, self.space.objectives)
        asked = self.waiting.pop(tid, [])
        for trial in asked:
            self._tell(trial, values)
        if not asked and values is not None:
            self._add_completed(point, values)
        self.values[tid] = values

    def finished(self) -> bool:
        return not self.waiting and (self._started() >= self.target
                                     or self.asks >= self.ASK_LIMIT_FACTOR * self.target)


def make_search(space, records: dict):
    """The space's search (`search.method`), told about the records already in the sweep folder."""
    return GridSearch(space, records) if space.method == "grid" else NSGA2Search(space, records)
