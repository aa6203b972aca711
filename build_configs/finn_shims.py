"""The one place where psa-finn works around finn-plus expecting Vivado (and its own `finn` launcher).

finn-plus 1.6.1 assumes it was started by `finn run` on a machine with Vivado: its settings object must exist before
`finn.builder` can be imported, `finn.builder.build_dataflow_steps` imports `finn.xsi.SimEngine` at module level
(which tries to build the Vivado simulator binding), code generation needs FINN_BUILD_DIR to exist, and the
builder's last act (`exit_buildflow`) calls `get_vivado_root()`, which raises when XILINX_VIVADO is unset.

`boot_finn(out_dir)` does what `finn run` would (settings, build directory) and, only when XILINX_VIVADO is unset,
binds the xsi names to stubs that fail with a clear message if a simulation is ever requested.
`vivado_less_steps(steps)` removes the steps that need Vivado/Vitis tools and says why for each; the one with a
Vivado-less counterpart (step_set_fifo_depths -> our step_size_fifos_by_simulation) is replaced by it.
`contained_vivado_root()` keeps the builder's final `get_vivado_root()` from failing a finished estimate build.
With XILINX_VIVADO set, none of the workarounds apply: the stock steps run to stitched IP, synthesis and bitstream.
"""

import contextlib
import os
from pathlib import Path

from psa_finn.build_configs.config_check import step_name

# Stock finn-plus steps that run Vivado, Vitis HLS or xsim, with the tool each needs. Everything before them
# (streamlining, conversion, folding, estimate reports, step_hw_codegen) is pure Python.
VIVADO_STEPS = {
    "step_hw_ipgen": "Vitis HLS synthesis and Vivado IP packaging of every layer",
    "step_set_fifo_depths": "FIFO sizing by xsim RTL simulation of the stitched design",
    "step_generate_hardware": "Vitis HLS / Vivado IP generation of every layer",
    "step_create_stitched_ip": "Vivado IP integrator",
    "step_measure_rtlsim_performance": "xsim RTL simulation of the stitched IP",
    "step_out_of_context_synthesis": "Vivado out-of-context synthesis",
    "step_prepare_synthesis": "Vivado/Vitis shell integration",
    "step_synthesize_bitfile": "Vivado/Vitis place and route",
    "step_vivado_power_estimation": "Vivado power analysis",
    "step_make_driver": "needs the stitched IP and bitfile of the skipped steps",
    "step_deployment_package": "needs the bitfile of the skipped steps",
}

# Vivado-less counterparts of VIVADO_STEPS (a config that names the counterpart itself uses it with Vivado too)
VIVADO_LESS_SUBSTITUTES = {
    "step_set_fifo_depths": "psa_finn.build_configs.steps.step_size_fifos_by_simulation",
}

NO_VIVADO_REASON = "XILINX_VIVADO is not set"
# Environment variable holding the FINN_BUILD_DIR that boot_finn chose itself (inherited by child processes)
OWN_BUILD_DIR_MARK = "PSA_FINN_OWN_BUILD_DIR"


def vivado_available() -> bool:
    """True when XILINX_VIVADO names a Vivado installation (then no shim is applied)."""
    return bool(os.environ.get("XILINX_VIVADO"))


def _bind_xsi_stubs():
    """Bind finn.xsi's lazily loaded names so importing finn.builder does not try to build the Vivado simulator."""
    import finn.xsi

    def needs_vivado(*args, **kwargs):
        raise RuntimeError("finn.xsi RTL simulation needs Vivado's xsim: source Vivado's settings64.sh "
                           "(XILINX_VIVADO) and run `finn deps update`")

    for name in finn.xsi._LAZY_NAMES:
        if name not in vars(finn.xsi):
            setattr(finn.xsi, name, needs_vivado)


def boot_finn(out_dir) -> Path:
    """Set up finn-plus as `finn run` would: settings, FINN_BUILD_DIR (created), xsi. Returns FINN_BUILD_DIR.

    FINN_BUILD_DIR keeps a value set by the user; otherwise it is `<out_dir>/finn_tmp`, so that generated code
    lands beside the build outputs. A value that an earlier boot_finn set (in this process or a parent, marked by
    OWN_BUILD_DIR_MARK) is not the user's: it moves to the new out_dir. Call it before importing finn.builder.
    """
    import finn.util.settings as finn_settings

    current = os.environ.get("FINN_BUILD_DIR")
    if not current or current == os.environ.get(OWN_BUILD_DIR_MARK):
        current = str((Path(out_dir) / "finn_tmp").resolve())
        os.environ["FINN_BUILD_DIR"] = os.environ[OWN_BUILD_DIR_MARK] = current
    build_dir = Path(current)
    build_dir.mkdir(parents=True, exist_ok=True)
    if finn_settings._SETTINGS is None or Path(finn_settings._SETTINGS.finn_build_dir) != build_dir:
        finn_settings.initialize_dummy_settings()
    if vivado_available():
        import finn.xsi

        finn.xsi.ensure_available()
    else:
        _bind_xsi_stubs()
    return build_dir


def vivado_less_steps(steps):
    """Split a step list into (steps to run, [{"step", "reason"}] skipped). Without Vivado, the VIVADO_STEPS go;
    one with a VIVADO_LESS_SUBSTITUTES entry is replaced by it (its reason says so)."""
    if vivado_available():
        return list(steps), []
    kept, skipped = [], []
    for step in steps:
        name = step_name(step)
        if name in VIVADO_LESS_SUBSTITUTES:
            kept.append(VIVADO_LESS_SUBSTITUTES[name])
            skipped.append({"step": name, "reason": f"{NO_VIVADO_REASON}; {VIVADO_STEPS[name]}; replaced by "
                                                    f"{VIVADO_LESS_SUBSTITUTES[name]}"})
        elif name in VIVADO_STEPS:
            skipped.append({"step": name, "reason": f"{NO_VIVADO_REASON}; {VIVADO_STEPS[name]}"})
        else:
            kept.append(step)
    return kept, skipped


def vivado_less_stop_step(stop_step, skipped):
    """A --stop-step at a replaced step names its replacement (finn-plus matches the short step name)."""
    replaced = {entry["step"] for entry in skipped}
    if stop_step in replaced and stop_step in VIVADO_LESS_SUBSTITUTES:
        return VIVADO_LESS_SUBSTITUTES[stop_step].rsplit(".", 1)[-1]
    return stop_step


@contextlib.contextmanager
def contained_vivado_root():
    """Within the block, the builder's closing `get_vivado_root()` names the missing tool instead of raising.

    finn-plus writes `tool_version` into report/metadata_builder.json from it after every build, estimate-only or
    not; without Vivado it would turn a finished build into an exception. With XILINX_VIVADO set: no change.
    """
    if vivado_available():
        yield
        return
    import finn.builder.build_dataflow as build_dataflow

    stock = build_dataflow.get_vivado_root
    build_dataflow.get_vivado_root = lambda: f"none ({NO_VIVADO_REASON})"
    try:
        yield
    finally:
        build_dataflow.get_vivado_root = stock


@contextlib.contextmanager
def restored_console():
    """After the block, stdout, stderr and the root logger's handlers are what they were before it.

    finn-plus's build replaces sys.stdout/sys.stderr by loggers and adds a timestamped console handler to the root
    logger for the rest of the process; without this every later line of ours (the one error line included) would
    come out twice, boxed and with a timestamp.
    """
    import logging
    import sys

    streams, root = (sys.stdout, sys.stderr), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
