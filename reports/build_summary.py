"""Loader of a build directory: its `summary.json` (written by `build.py build`) as a typed `BuildSummary`.

The keys are those of build_configs/summary.py; `synth_check` (yosys figures of the LUT layers) is optional, and so
are `finn_totals`, `exact` and the layers' `estimate_basis` / `finn_estimate` (summaries written before psa-finn's
resource model had only finn-plus's figures: their basis reads "finn-plus").
Bad input raises `BuildSummaryError` naming the directory or file and what to do about it.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from psa_finn.build_configs.build_files import SUMMARY as SUMMARY_FILE
RESOURCE_KEYS = ("lut", "dsp", "bram18", "uram")
REQUIRED_KEYS = ("fps", "latency_ns", *RESOURCE_KEYS, "all_nodes_on_hw", "layers", "zero_estimate_ops")
LAYER_KEYS = ("name", "op_type", "cycles", *RESOURCE_KEYS)


class BuildSummaryError(ValueError):
    """A build directory that cannot be reported: missing, without summary.json, or with a malformed one."""


@dataclass(frozen=True)
class LayerEstimate:
    """Estimated resources (and their basis) and cycles of one hardware layer; finn-plus's own figures beside."""

    name: str
    op_type: str
    cycles: int
    lut: float
    dsp: float
    bram18: float
    uram: float
    estimate_basis: str = "finn-plus"
    finn_estimate: dict | None = None  # {lut, dsp, bram18, uram} of finn-plus; None: the figures above are finn-plus's


@dataclass(frozen=True)
class BuildSummary:
    """The figures of one finn-plus build directory that the report compares."""

    path: Path
    fps: float
    latency_ns: float
    lut: float
    dsp: float
    bram18: float
    uram: float
    all_nodes_on_hw: bool
    layers: tuple
    zero_estimate_ops: tuple
    model: str = ""
    config_name: str = ""
    target_fps: float | None = None
    off_hw_nodes: tuple = ()
    skipped_steps: tuple = ()  # names of the steps not run (they need Vivado)
    synth_check: dict | None = None
    verification_max_abs_diff: float | None = None  # None: not verified (e.g. a build stopped early)
    fifos: tuple = ()  # summary.json `fifos` records (StreamingFIFO nodes, finn-plus estimates)
    fifo_sizing: dict | None = None  # summary.json `fifo_sizing` (None: the build sized no FIFOs)
    finn_totals: dict | None = None  # finn-plus's own totals {lut, dsp, bram18, uram}; None: the totals are finn's
    exact: dict | None = None  # summary.json `exact` (counts), None in older summaries
    verification_mismatch: str | None = None  # build_configs.verify: how the outputs differ; None when they agree

    @property
    def luts_plus_dsp(self) -> float:
        return self.lut + self.dsp

    @property
    def finn(self) -> dict:
        """finn-plus's own totals {lut, dsp, bram18, uram} (the totals themselves in older summaries)."""
        return self.finn_totals or {k: getattr(self, k) for k in RESOURCE_KEYS}


def _number(value, what: str, where: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BuildSummaryError(f"{where}: '{what}' must be a number, got {value!r}; rebuild with `build.py build`")
    if not math.isfinite(value) or value < 0:
        raise BuildSummaryError(f"{where}: '{what}' is {value!r}, not a finite count or rate; rebuild with "
                                f"`build.py build`")
    return value


def _optional_number(value, what: str, where: Path):
    """None, or a finite non-negative number (`_number`'s check): the optional figures a report prints."""
    return None if value is None else _number(value, what, where)


def _layer(entry, index: int, where: Path) -> LayerEstimate:
    if not isinstance(entry, dict) or any(k not in entry for k in LAYER_KEYS):
        raise BuildSummaryError(f"{where}: layers[{index}] must be an object with keys {', '.join(LAYER_KEYS)}; "
                                f"got {entry!r}")
    values = {k: _number(entry[k], f"layers[{index}].{k}", where) for k in ("cycles", *RESOURCE_KEYS)}
    finn = entry.get("finn_estimate")
    if finn is not None:
        if not isinstance(finn, dict) or any(k not in finn for k in RESOURCE_KEYS):
            raise BuildSummaryError(f"{where}: layers[{index}].finn_estimate must be an object with keys "
                                    f"{', '.join(RESOURCE_KEYS)}; got {finn!r}")
        finn = {k: _number(finn[k], f"layers[{index}].finn_estimate.{k}", where) for k in RESOURCE_KEYS}
    return LayerEstimate(name=str(entry["name"]), op_type=str(entry["op_type"]), **values,
                         estimate_basis=str(entry.get("estimate_basis", "finn-plus")), finn_estimate=finn)


def load_build_summary(build_dir) -> BuildSummary:
    """Read `build_dir/summary.json` into a BuildSummary; raise BuildSummaryError with the fix when it is unusable."""
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise BuildSummaryError(f"{build_dir}: no such build directory; pass the --out directory of `build.py build`")
    path = build_dir / SUMMARY_FILE
    if not path.is_file():
        raise BuildSummaryError(f"{build_dir}: no {SUMMARY_FILE} in it; is it the --out directory of a finished "
                                f"`build.py build`? (re-run the build if it stopped early)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BuildSummaryError(f"{path}: not valid JSON ({err}); re-run `build.py build`") from err
    if not isinstance(data, dict):
        raise BuildSummaryError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise BuildSummaryError(f"{path}: missing key(s) {', '.join(missing)}; re-run `build.py build` to rewrite it")
    if not isinstance(data["layers"], list):
        raise BuildSummaryError(f"{path}: 'layers' must be a list of per-layer objects")
    synth_check = data.get("synth_check")
    verification = data.get("verification") if isinstance(data.get("verification"), dict) else {}
    if synth_check is not None and not isinstance(synth_check, dict):
        raise BuildSummaryError(f"{path}: 'synth_check' must be an object, got {type(synth_check).__name__}")
    return BuildSummary(
        path=build_dir,
        fps=_number(data["fps"], "fps", path),
        latency_ns=_number(data["latency_ns"], "latency_ns", path),
        **{k: _number(data[k], k, path) for k in RESOURCE_KEYS},
        all_nodes_on_hw=bool(data["all_nodes_on_hw"]),
        layers=tuple(_layer(entry, i, path) for i, entry in enumerate(data["layers"])),
        zero_estimate_ops=tuple(data["zero_estimate_ops"]),
        model=str(data.get("model", "")),
        config_name=str(data.get("config_name", "")),
        target_fps=_optional_number(data.get("target_fps"), "target_fps", path),
        off_hw_nodes=tuple(data.get("off_hw_nodes", ())),
        skipped_steps=tuple(str(e.get("step", e)) if isinstance(e, dict) else str(e)
                            for e in data.get("skipped_steps", ())),
        synth_check=synth_check,
        verification_max_abs_diff=_optional_number(verification.get("max_abs_diff"), "verification.max_abs_diff",
                                                   path),
        fifos=tuple(f for f in data.get("fifos") or () if isinstance(f, dict)),
        fifo_sizing=data.get("fifo_sizing") if isinstance(data.get("fifo_sizing"), dict) else None,
        finn_totals=_finn_totals(data.get("finn_totals"), path),
        exact=data.get("exact") if isinstance(data.get("exact"), dict) else None,
        verification_mismatch=verification.get("mismatch"),
    )


def _finn_totals(totals, where: Path):
    if totals is None:
        return None
    if not isinstance(totals, dict) or any(k not in totals for k in RESOURCE_KEYS):
        raise BuildSummaryError(f"{where}: 'finn_totals' must be an object with keys {', '.join(RESOURCE_KEYS)}")
    return {k: _number(totals[k], f"finn_totals.{k}", where) for k in RESOURCE_KEYS}


def build_labels(summaries) -> list:
    """Short distinct names: each directory relative to the deepest folder all of them share."""
    paths = [s.path.resolve() for s in summaries]
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(os.path.commonpath(paths))
    return [str(p.relative_to(common)) if p != common else p.name for p in paths]
