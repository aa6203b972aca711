"""A sweep's search space, read from YAML, and the trials it holds.

    dataset: digits                 # digits, mnist1d (built in) or cifar10 / svhn (from data_dir on every node)
    model: {family: resmlp, embed_dim: 32, depth: 2}  # or mlp, cnn (sweeps.families: what embed_dim, depth size)
    training: {epochs: 20, batch_size: 64, lr: 5.0e-3, qat_epochs: 5,
               qat_lr: {8: 1.0e-4, 4: 1.0e-3}}          # one rate, or one per bit width (default below)
    teacher: {hidden_factor: 4.0, epochs: 20}          # optional: every trial distils from this one ReLU teacher
    build: {stop_step: step_generate_estimate_reports}
    axes:                                              # a list of values each; the grid is their product
      variant: [relu, lerp_psa]                        # relu, lerp_psa, bspline (mlp, cnn: also gelu, silu)
      hidden_factor: [2.0, 1.0, 0.5]
      bits: [8, 4]
      grid_size: [64]                                  # LERP-PSA grid points (other variants ignore it)
      lowering: [auto]                                 # auto | threshold | full | lerp64 (relu has no table)
      build_config: [unrolled]                         # a psa_finn build config name or a YAML path
      target_fps: [null]                               # null: the build config's own
      seed: [0]
    search: {method: grid}                             # or {method: nsga2, trials: 40, population: 10, seed: 0,
                                                       #     objectives: {accuracy_lowered: max, luts_plus_dsp: min}}
    resources: {cpus_per_trial: 1, gpus_per_trial: auto}

`load_space(path)` checks every key and value and names the file and key of anything wrong (`BadInput`).
A `TrialSpec` is one point with every setting that decides its result; its `trial_id` (readable prefix + hash of
the whole spec) names its folder, so the same point in a later run of the same space finds its finished result.
Axes a variant does not use are normalised away (relu: no grid size, no lowering; bspline: its own 65 knots), so the
product holds each distinct trial once.
"""

import functools
import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

import psa_finn.build_configs
from psa_finn.common.bit_widths import MAX_BITS, MIN_BITS
from psa_finn.common.cli_errors import BadInput
from psa_finn.models.datasets import DATASET_GEOMETRY
from psa_finn.models.training import default_qat_lr
from psa_finn.sweeps.families import FAMILIES, model_family
from psa_finn.transforms.lower_quantized_functions import LOWERING_MODES

PACKAGED_BUILD_CONFIGS = ("unrolled", "folded")
BUILD_CONFIG_DIR = Path(psa_finn.build_configs.__file__).resolve().parent
SEARCH_METHODS = ("grid", "nsga2")
OBJECTIVE_SENSES = ("max", "min")
DEFAULT_OBJECTIVES = {"accuracy_lowered": "max", "luts_plus_dsp": "min"}
DEFAULT_STOP_STEP = "step_generate_estimate_reports"


@dataclass(frozen=True)
class TrialSpec:
    """Everything that decides one trial's result (what its id hashes)."""

    dataset: str
    family: str
    embed_dim: int
    depth: int
    variant: str
    hidden_factor: float
    bits: int
    grid_size: int | None
    lowering: str | None
    build_config: str          # as the space names it; its content is in build_config_sha
    build_config_sha: str
    target_fps: int | None
    seed: int
    epochs: int
    batch_size: int
    lr: float
    qat_epochs: int
    qat_lr: float
    teacher_id: str | None
    stop_step: str

    def label(self) -> str:
        """Readable part of the id: variant, hidden factor, bits, grid, lowering, build, target FPS, seed."""
        parts = [self.variant, f"h{self.hidden_factor:g}", f"b{self.bits}"]
        parts += [f"g{self.grid_size}"] if self.grid_size is not None else []
        parts += [self.lowering] if self.lowering is not None else []
        parts += [Path(self.build_config).stem] + ([f"fps{self.target_fps}"] if self.target_fps else [])
        return "-".join(parts + [f"s{self.seed}"])


def settings_digest(settings) -> str:
    """First 10 hex digits of the sha256 of settings (a dataclass or a dict) as sorted JSON: stable across runs and
    machines."""
    settings = settings if isinstance(settings, dict) else asdict(settings)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def trial_id(spec: TrialSpec) -> str:
    """`<label>-<settings_digest of the whole spec>`."""
    return f"{spec.label()}-{settings_digest(spec)}"


TRAINING_FIELDS = ("dataset", "family", "embed_dim", "depth", "variant", "hidden_factor", "bits", "grid_size", "seed",
                   "epochs", "batch_size", "lr", "qat_epochs", "qat_lr", "teacher_id")


def training_id(spec: TrialSpec) -> str:
    """Names the float and QAT models of a trial: equal for trials that differ only in lowering or build, which
    therefore train once (`<variant>-h<factor>-b<bits>[-g<grid>]-s<seed>-<digest of TRAINING_FIELDS>`)."""
    settings = {name: getattr(spec, name) for name in TRAINING_FIELDS}
    grid = [f"g{spec.grid_size}"] if spec.grid_size is not None else []
    return "-".join([spec.variant, f"h{spec.hidden_factor:g}", f"b{spec.bits}", *grid, f"s{spec.seed}",
                     settings_digest(settings)])


@dataclass(frozen=True)
class TeacherSpec:
    """The ReLU teacher every trial of a sweep distils from (trained once per sweep)."""

    dataset: str
    family: str
    embed_dim: int
    depth: int
    hidden_factor: float
    epochs: int
    batch_size: int
    lr: float
    seed: int

    variant = "relu"        # what a model family builds for it (class attributes: not part of the id)
    grid_size = None

    def teacher_id(self) -> str:
        """`relu-h<factor>-e<epochs>-<settings_digest>`: names the teacher's folder."""
        return f"relu-h{self.hidden_factor:g}-e{self.epochs}-{settings_digest(self)}"


@dataclass(frozen=True)
class SweepSpace:
    """A parsed space: the fixed settings, the axes (name -> tuple of values), the search and resources."""

    source: str
    dataset: str
    family: str
    embed_dim: int
    depth: int
    training: dict
    teacher: TeacherSpec | None
    stop_step: str
    axes: dict
    method: str
    trials: int | None
    population: int | None
    search_seed: int
    objectives: dict
    cpus_per_trial: float
    gpus_per_trial: object   # a number, or "auto": 1 where the cluster has a GPU, else 0
    keep_build: bool

    def qat_lr(self, bits: int) -> float:
        """The QAT learning rate of `bits`-bit trials: training.qat_lr (one rate, or by bit width) or the default."""
        rates = self.training["qat_lr"]
        if isinstance(rates, dict):
            return rates.get(bits, default_qat_lr(bits))
        return default_qat_lr(bits) if rates is None else rates

    def spec(self, point: dict) -> TrialSpec:
        """The normalised TrialSpec of one point (axis name -> value)."""
        training = dict(self.training, qat_lr=self.qat_lr(int(point["bits"])))
        spec = TrialSpec(dataset=self.dataset, family=self.family, embed_dim=self.embed_dim, depth=self.depth,
                         variant=point["variant"], hidden_factor=float(point["hidden_factor"]),
                         bits=int(point["bits"]), grid_size=point["grid_size"], lowering=point["lowering"],
                         build_config=point["build_config"],
                         build_config_sha=build_config_sha(point["build_config"], self.source),
                         target_fps=point["target_fps"], seed=int(point["seed"]),
                         teacher_id=self.teacher.teacher_id() if self.teacher else None, stop_step=self.stop_step,
                         **training)
        return normalise(spec)

    def build_config_path(self, spec: TrialSpec) -> Path:
        """The build config file of a trial (on this machine)."""
        return resolve_build_config(spec.build_config, self.source)

    def grid_points(self) -> list:
        """[(point, spec)] for every distinct trial of the full grid, in axis order (normalised duplicates dropped)."""
        names = list(self.axes)
        seen, found = set(), []
        for values in itertools.product(*(self.axes[n] for n in names)):
            point = dict(zip(names, values))
            spec = self.spec(point)
            if spec not in seen:
                seen.add(spec)
                found.append((point, spec))
        return found

    def grid_size(self) -> int:
        """The number of points of the full grid (before normalisation)."""
        return math.prod(len(values) for values in self.axes.values())


def normalise(spec: TrialSpec) -> TrialSpec:
    """Drop the settings a variant does not use, so equal trials compare equal."""
    if spec.variant == "relu":
        return replace(spec, grid_size=None, lowering=None)
    if spec.variant != "lerp_psa":
        return replace(spec, grid_size=None)
    return spec


@functools.lru_cache(maxsize=64)
def build_config_sha(value: str, source: str) -> str:
    """`file_sha` of the build config a space names (cached: a grid asks it for every point)."""
    return file_sha(resolve_build_config(value, source))


def file_sha(path: Path) -> str:
    """sha256 (first 12 hex digits) of a build config and of the folding file it names, if any."""
    digest = hashlib.sha256(path.read_bytes())
    folding = yaml.safe_load(path.read_text()).get("folding_config_file")
    if folding:
        digest.update((path.parent / folding).read_bytes())
    return digest.hexdigest()[:12]


def resolve_build_config(value: str, source) -> Path:
    """A packaged config name (unrolled, folded) or a YAML path (relative to the space file)."""
    if value in PACKAGED_BUILD_CONFIGS:
        return BUILD_CONFIG_DIR / f"{value}.yaml"
    path = Path(value)
    if not path.is_absolute():
        path = Path(source).resolve().parent / path
    if not path.is_file():
        raise BadInput(f"{source}: axes.build_config {value!r} is neither one of {list(PACKAGED_BUILD_CONFIGS)} nor "
                       f"an existing YAML file; name a build config")
    return path.resolve()


# ----------------------------------------------------------------------------------------------------------------
# Parsing and validation: every check names the file and the key.

AXIS_DEFAULTS = {"variant": None, "hidden_factor": None, "bits": [8], "grid_size": [64], "lowering": ["auto"],
                 "build_config": ["unrolled"], "target_fps": [None], "seed": [0]}
TRAINING_DEFAULTS = {"epochs": 20, "batch_size": 64, "lr": 5e-3, "qat_epochs": 5, "qat_lr": None}


TOP_KEYS = {"dataset", "model", "training", "teacher", "build", "axes", "search", "resources"}


_FROM_FILE = object()   # `value` not given: read the key from the mapping


class _Reader:
    """Typed access to one mapping of the YAML file, with errors that name the file and the key."""

    def __init__(self, source, data, where=""):
        self.source, self.where = source, where
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BadInput(f"{source}: {where or 'the file'} must be a mapping (key: value), got {data!r}")
        self.data = data

    def fail(self, key, message):
        raise BadInput(f"{self.source}: {self.where}{key}: {message}")

    def only(self, allowed):
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            self.fail(unknown[0], f"unknown key; allowed here: {sorted(allowed)}")

    def number(self, key, default, kind=int, low=None, value=_FROM_FILE):
        value = self.data.get(key, default) if value is _FROM_FILE else value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and kind is int:
            ok = float(value).is_integer()
        if not ok or (low is not None and not value >= low):
            bound = f" >= {low}" if low is not None else ""
            self.fail(key, f"must be {'an integer' if kind is int else 'a number'}{bound}, got {value!r}")
        return kind(value)

    def choice(self, key, default, choices, value=_FROM_FILE):
        value = self.data.get(key, default) if value is _FROM_FILE else value
        if value not in choices:
            self.fail(key, f"must be one of {list(choices)}, got {value!r}")
        return value

    def section(self, key):
        return _Reader(self.source, self.data.get(key), f"{self.where}{key}.")


def _axis_values(axes: _Reader, name, check):
    values = axes.data.get(name, AXIS_DEFAULTS[name])
    if values is None:
        axes.fail(name, "is required: a list of values")
    if not isinstance(values, list):
        values = [values]
    if not values:
        axes.fail(name, "needs at least one value")
    checked = tuple(check(v) for v in values)
    if len(set(checked)) != len(checked):
        axes.fail(name, f"lists a value twice: {values}")
    return checked


def _parse_axes(axes: _Reader, family: str) -> dict:
    axes.only(AXIS_DEFAULTS)
    variants = model_family(family).variants
    return {
        "variant": _axis_values(axes, "variant", lambda v: axes.choice("variant", None, variants, v)),
        "hidden_factor": _axis_values(axes, "hidden_factor", lambda v: axes.number("hidden_factor", None, float,
                                                                                    1e-6, v)),
        "bits": _axis_values(axes, "bits", lambda v: axes.choice("bits", None, range(MIN_BITS, MAX_BITS + 1), v)),
        "grid_size": _axis_values(axes, "grid_size", lambda v: axes.number("grid_size", None, int, 2, v)),
        "lowering": _axis_values(axes, "lowering", lambda v: axes.choice("lowering", None, LOWERING_MODES, v)),
        "build_config": _axis_values(axes, "build_config", lambda v: _build_config_value(axes, v)),
        "target_fps": _axis_values(axes, "target_fps",
                                   lambda v: None if v is None else axes.number("target_fps", None, int, 1, v)),
        "seed": _axis_values(axes, "seed", lambda v: axes.number("seed", None, int, 0, v)),
    }


def _build_config_value(axes: _Reader, value):
    if not isinstance(value, str):
        axes.fail("build_config", f"must be a config name or a YAML path, got {value!r}")
    resolve_build_config(value, axes.source)
    return value


def _parse_training(training: _Reader) -> dict:
    training.only(TRAINING_DEFAULTS)
    qat_lr = training.data.get("qat_lr")
    if isinstance(qat_lr, dict):
        qat_lr = {training.choice("qat_lr", None, range(MIN_BITS, MAX_BITS + 1), bits):
                  training.number("qat_lr", None, float, 0, lr) for bits, lr in qat_lr.items()}
    elif qat_lr is not None:
        qat_lr = training.number("qat_lr", None, float, 0)
    return {"epochs": training.number("epochs", TRAINING_DEFAULTS["epochs"], int, 1),
            "batch_size": training.number("batch_size", TRAINING_DEFAULTS["batch_size"], int, 1),
            "lr": training.number("lr", TRAINING_DEFAULTS["lr"], float, 0),
            "qat_epochs": training.number("qat_epochs", TRAINING_DEFAULTS["qat_epochs"], int, 0),
            "qat_lr": qat_lr}


def _parse_teacher(root: _Reader, dataset, family, embed_dim, depth, training) -> TeacherSpec | None:
    if root.data.get("teacher") is None:
        return None
    teacher = root.section("teacher")
    teacher.only({"hidden_factor", "epochs", "seed"})
    return TeacherSpec(dataset=dataset, family=family, embed_dim=embed_dim, depth=depth,
                       hidden_factor=teacher.number("hidden_factor", 4.0, float, 1e-6),
                       epochs=teacher.number("epochs", training["epochs"], int, 1),
                       batch_size=training["batch_size"], lr=training["lr"],
                       seed=teacher.number("seed", 2023, int, 0))


def _parse_objectives(search: _Reader) -> dict:
    objectives = search.data.get("objectives", DEFAULT_OBJECTIVES)
    if not isinstance(objectives, dict) or not objectives:
        search.fail("objectives", f"must map result columns to max or min, e.g. {DEFAULT_OBJECTIVES}")
    from psa_finn.sweeps.results import NUMERIC_COLUMNS

    for column, sense in objectives.items():
        if column not in NUMERIC_COLUMNS:
            search.fail("objectives", f"{column!r} is not a numeric result column; one of {list(NUMERIC_COLUMNS)}")
        if sense not in OBJECTIVE_SENSES:
            search.fail("objectives", f"{column}: must be max or min, got {sense!r}")
    return dict(objectives)


def parse_space(data, source="<space>") -> SweepSpace:
    """A `SweepSpace` from the YAML document `data` (a dict); BadInput naming `source` and the key otherwise."""
    root = _Reader(source, data)
    root.only(TOP_KEYS)
    dataset = root.choice("dataset", None, tuple(DATASET_GEOMETRY))
    model = root.section("model")
    model.only({"family", "embed_dim", "depth"})
    family = model.choice("family", "resmlp", tuple(FAMILIES))
    embed_dim, depth = model.number("embed_dim", 32, int, 1), model.number("depth", 2, int, 1)
    check_input = model_family(family).check_input
    if check_input is not None:
        try:
            check_input(DATASET_GEOMETRY[dataset].input_shape, depth)
        except ValueError as err:
            model.fail("depth", f"{err} (dataset {dataset})")
    training = _parse_training(root.section("training"))
    build = root.section("build")
    build.only({"stop_step", "keep"})
    stop_step = build.data.get("stop_step", DEFAULT_STOP_STEP)
    if not isinstance(stop_step, str) or not stop_step.startswith("step_"):
        build.fail("stop_step", f"must name a build step such as {DEFAULT_STOP_STEP}, got {stop_step!r}")
    search = root.section("search")
    search.only({"method", "trials", "population", "seed", "objectives"})
    method = search.choice("method", "grid", SEARCH_METHODS)
    trials = search.number("trials", None, int, 1) if method == "nsga2" else None
    population = search.number("population", max(4, min(50, trials // 4)), int, 2) if method == "nsga2" else None
    resources = root.section("resources")
    resources.only({"cpus_per_trial", "gpus_per_trial"})
    gpus = resources.data.get("gpus_per_trial", "auto")
    if gpus != "auto":
        gpus = resources.number("gpus_per_trial", 0, float, 0)
    return SweepSpace(source=str(source), dataset=dataset, family=family, embed_dim=embed_dim, depth=depth,
                      training=training,
                      teacher=_parse_teacher(root, dataset, family, embed_dim, depth, training),
                      stop_step=stop_step, axes=_parse_axes(root.section("axes"), family), method=method,
                      trials=trials, population=population, search_seed=search.number("seed", 0, int, 0),
                      objectives=_parse_objectives(search),
                      cpus_per_trial=resources.number("cpus_per_trial", 1, float, 0.01), gpus_per_trial=gpus,
                      keep_build=bool(build.data.get("keep", False)))


def load_space(path) -> SweepSpace:
    """Read and check a space YAML file (BadInput naming the file and key of any problem)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--space {path}: no such file; write a space YAML (see sweeps/spaces/ for examples)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BadInput(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    return parse_space(data, path)
