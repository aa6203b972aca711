"""Reading and checking a finn-plus build config (YAML or JSON) before a build touches any output.

`load_build_config(path)` returns finn-plus's `DataflowBuildConfig` or raises BadInput with one line naming the file
and the key: a missing file, invalid YAML, a file that is not a mapping, an unknown key (with the nearest known one,
`target_fsp` -> `target_fps`), a value of the wrong type, a number out of range (`target_fps: -5`, a NaN clock), an
empty `steps` list, a key that the command line owns (`output_dir`: --out), an FPGA part or board that finn-plus
does not know (device, package, speed grade and temperature suffix). `check_stop_step(cfg, path, stop_step)` checks
--stop-step against the config's steps at once (with the nearest name); `check_steps(cfg, path, stop_step)` (after
finn-plus is booted) resolves every step name.
"""

import difflib
import math
import re
import types
import typing
from dataclasses import fields
from pathlib import Path

import yaml

from psa_finn.common.cli_errors import BadInput
from psa_finn.common.output_paths import require_input_file

CONFIG_HINT = "compare build_configs/unrolled.yaml"
# Numeric keys that must be > 0 (finn-plus divides by them or sizes folding with them); every number must be finite.
POSITIVE_KEYS = ("target_fps", "synth_clk_period_ns", "hls_clk_period_ns", "mvau_wwidth_max",
                 "max_multithreshold_bit_width")
# Keys the command line sets: a value in the config would be silently replaced.
COMMAND_LINE_KEYS = {"output_dir": "--out"}
# The part-name tail after device and package: speed grade (e.g. 2, 2L, 2LV, 2MP), temperature, optional -S.
PART_SUFFIX = re.compile(r"[1-3](?:L|LV|H|HV|LP|MP|MHP)?-[ceiqm](?:-[sS])?")


def _suggestion(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else ""


def _read_mapping(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError as err:
        raise BadInput(f"--config {path}: not a text file (byte {err.start} is not UTF-8); pass a YAML or JSON build "
                       f"config ({CONFIG_HINT})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise BadInput(f"--config {path}{where}: not valid YAML ({problem}); fix the syntax ({CONFIG_HINT})") from err
    if not isinstance(data, dict):
        raise BadInput(f"--config {path}: a build config is a mapping of finn-plus DataflowBuildConfig keys "
                       f"(e.g. 'target_fps: 32051'), this file holds a {type(data).__name__}; {CONFIG_HINT}")
    return data


def _type_name(kind) -> str:
    """'int' for Optional[int], 'int or str' for a union, the class name otherwise."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(kind) if arg is not type(None))
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _device(part: str) -> str:
    return part.split("-", 1)[0].lower()


def _package(part: str) -> str:
    pieces = part.lower().split("-")
    return pieces[1] if len(pieces) > 1 else ""


def check_fpga_part(cfg, path) -> None:
    """BadInput unless the config's board is in finn-plus's part map, and its fpga_part is a part of that map or
    another package/speed grade of one of its devices (e.g. xcu50-fsvh2104-2-e beside xcu50-fsvh2104-2L-e); a
    package one typo away from the device's known one (fsvh2014 for fsvh2104) is refused with the known part."""
    from finn.util.basic import part_map

    if cfg.board is not None and cfg.board not in part_map:
        hint = _suggestion(cfg.board, part_map) or f"known boards: {', '.join(sorted(part_map))}"
        raise BadInput(f"--config {path}: board '{cfg.board}' is not in finn-plus's part map; {hint}")
    if cfg.fpga_part is None:
        return
    devices = {_device(part) for part in part_map.values()}
    if _device(cfg.fpga_part) not in devices:
        close = difflib.get_close_matches(_device(cfg.fpga_part), sorted(devices), n=1)
        rest = cfg.fpga_part.split("-", 1)[1:]
        hint = (f"did you mean '{'-'.join([close[0], *rest])}'?" if close
                else f"known devices: {', '.join(sorted(devices))}")
        raise BadInput(f"--config {path}: fpga_part '{cfg.fpga_part}' is not a device finn-plus knows "
                       f"(finn.util.basic.part_map); {hint}")
    known = {_package(part): part for part in part_map.values() if _device(part) == _device(cfg.fpga_part)}
    typo = difflib.get_close_matches(_package(cfg.fpga_part), [k for k in known if k], n=1, cutoff=0.75)
    if _package(cfg.fpga_part) not in known and typo:
        raise BadInput(f"--config {path}: fpga_part '{cfg.fpga_part}': package '{_package(cfg.fpga_part)}' is not "
                       f"one finn-plus knows for {_device(cfg.fpga_part)}; did you mean '{known[typo[0]]}'?")
    pieces = cfg.fpga_part.split("-")
    if len(pieces) >= 3 and not PART_SUFFIX.fullmatch("-".join(pieces[2:])):
        raise BadInput(f"--config {path}: fpga_part '{cfg.fpga_part}': '{'-'.join(pieces[2:])}' is not a speed grade "
                       f"and temperature (e.g. '2-e' in xcu50-fsvh2104-2-e, '2L-e'); fix the part name")


def check_values(data: dict, path) -> None:
    """BadInput naming the key for a non-finite number, a number <= 0 where finn-plus needs a positive one, an
    empty step list, or a key that a command-line flag owns."""
    for key, flag in COMMAND_LINE_KEYS.items():
        if key in data:
            raise BadInput(f"--config {path}: '{key}' is set by {flag} on the command line; remove the key")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise BadInput(f"--config {path}: {key}: {value} is not a finite number; {CONFIG_HINT}")
        if key in POSITIVE_KEYS and value <= 0:
            raise BadInput(f"--config {path}: {key}: {value} must be > 0; {CONFIG_HINT}")
    if "steps" in data and isinstance(data["steps"], list) and not data["steps"]:
        raise BadInput(f"--config {path}: 'steps' is an empty list (nothing would be built); list the steps or "
                       f"remove the key for finn-plus's default steps")


def load_build_config(path):
    """The DataflowBuildConfig of `path`, checked; BadInput naming the file and key otherwise."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.util.exception import FINNConfigurationError
    from mashumaro.exceptions import InvalidFieldValue, MissingField

    path = require_input_file(path, "--config", "build config")
    data = _read_mapping(path)
    check_values(data, path)
    known = {field.name for field in fields(DataflowBuildConfig)}
    for key in data:
        if key not in known:
            hint = _suggestion(str(key), known) or "see finn.builder.build_dataflow_config.DataflowBuildConfig"
            raise BadInput(f"--config {path}: unknown key '{key}'; {hint}")
    try:
        cfg = DataflowBuildConfig.construct_from(path.resolve())
    except InvalidFieldValue as err:
        raise BadInput(f"--config {path}: {err.field_name}: {err.field_value!r} is not a valid "
                       f"{_type_name(err.field_type)}; "
                       f"{CONFIG_HINT}") from err
    except MissingField as err:
        raise BadInput(f"--config {path}: the key '{err.field_name}' is missing; {CONFIG_HINT}") from err
    except FINNConfigurationError as err:
        raise BadInput(f"--config {path}: {' '.join(str(err).split())}") from err
    check_fpga_part(cfg, path)
    return cfg


def step_name(step) -> str:
    """The short name of a build step given by name, dotted path or function (`pkg.mod.step_x` -> `step_x`)."""
    return (step if isinstance(step, str) else step.__name__).rsplit(".", 1)[-1]


def fpga_part_of(cfg) -> str:
    """The FPGA part a config builds for: its fpga_part, else its board's part in finn-plus's part map."""
    from finn.util.basic import part_map

    return cfg.fpga_part if cfg.fpga_part is not None else part_map[cfg.board]


def target_cycles_per_frame(cfg):
    """Clock cycles per frame that the config's target_fps leaves at its synth_clk_period_ns (None without a
    target), as finn-plus's folding computes it."""
    if cfg.target_fps is None:
        return None
    return int(10**9 / cfg.synth_clk_period_ns / cfg.target_fps)


def check_steps(cfg, path, stop_step=None, skipped=()) -> None:
    """BadInput naming the first step of the config that finn-plus cannot resolve, or a --stop-step that is not one
    of the config's steps (listing them). Needs finn-plus booted (`finn_shims.boot_finn`)."""
    from finn.builder.build_dataflow import resolve_build_steps
    from finn.builder.build_dataflow_config import default_build_dataflow_steps
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

    steps = cfg.steps or default_build_dataflow_steps
    for step in steps:
        try:
            resolve_build_steps(cfg, partial=False, list_as_input=[step])
        except Exception as err:
            names = [*map(step_name, default_build_dataflow_steps), *build_dataflow_step_lookup]  # ours registered
            hint = _suggestion(step_name(step), names) if isinstance(step, str) else ""
            raise BadInput(f"--config {path}: step '{step}' cannot be resolved ({type(err).__name__}); "
                           f"{hint or 'use a finn-plus step name or an importable module.function'}") from err
    if stop_step is None:
        return
    names = [step_name(step) for step in steps]
    skipped_names = [entry["step"] for entry in skipped]
    if stop_step in skipped_names:
        raise BadInput(f"--stop-step {stop_step}: the step is skipped without Vivado; stop at one of "
                       f"{', '.join(n for n in names if n not in skipped_names)}")
    check_stop_step(cfg, path, stop_step)


def check_stop_step(cfg, path, stop_step) -> None:
    """BadInput (before any build work) when --stop-step is not one of the config's steps (finn-plus's default list
    when it has none), naming the nearest step."""
    from finn.builder.build_dataflow_config import default_build_dataflow_steps

    if stop_step is None:
        return
    names = [step_name(step) for step in (cfg.steps or default_build_dataflow_steps)]
    if stop_step not in names:
        hint = _suggestion(stop_step, names)
        raise BadInput(f"--stop-step {stop_step} is not a step of {path}; " + (f"{hint} " if hint else "")
                       + f"valid steps: {', '.join(names)}")
