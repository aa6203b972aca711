"""The stage import order of ARCHITECTURE.md, read from every module's imports (ast), and the torch-free core.

A module imports only its own stage and earlier ones (build.py, the dispatcher, imports all); custom_ops/,
transforms/ and build_configs/ import neither torch (nor brevitas) nor psa_finn.models/nn/export; importing
psa_finn.custom_ops and every transforms module that does not use finn-plus (finn imports torch itself) leaves
torch unloaded.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("common", "custom_ops", "analysis", "models", "nn", "export", "transforms", "dataflow_sim",
          "build_configs", "hardware_checks", "reports", "sweeps")
TORCH_FREE_STAGES = ("custom_ops", "transforms", "analysis", "dataflow_sim", "build_configs")
TORCH_STACK = ("torch", "brevitas")
TORCH_STAGES = ("models", "nn", "export")


def stage_modules():
    """{module name: path} of every module of the package's stage folders."""
    modules = {}
    for stage in STAGES:
        for path in sorted((ROOT / stage).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            modules[".".join(("psa_finn",) + parts)] = path
    return modules


def _nodes(tree, on_import_only: bool):
    """Every ast node of `tree`; with `on_import_only`, not those inside functions (they run when called)."""
    if not on_import_only:
        yield from ast.walk(tree)
        return
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(child for child in ast.iter_child_nodes(node)
                       if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def imports_of(name: str, path: Path, on_import_only: bool = False) -> set:
    """Absolute names of every module `path` imports, anywhere in it (relative imports resolved against `name`); with
    `on_import_only`, only the imports that run when the module is imported (not those inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in _nodes(ast.parse(path.read_text(), str(path)), on_import_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = stage_modules()
IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}
IMPORTS_ON_IMPORT = {name: imports_of(name, path, on_import_only=True) for name, path in MODULES.items()}


def stage_of(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "psa_finn" and parts[1] in STAGES else None


def test_every_stage_folder_is_read():
    assert {stage_of(name) for name in MODULES} >= {s for s in STAGES if (ROOT / s).is_dir()}
    assert "psa_finn.nn.quant_lerp_psa" in MODULES and "psa_finn.custom_ops.fpgadataflow.hls" in MODULES


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_import_only_their_own_and_earlier_stages(name):
    own = STAGES.index(stage_of(name))
    later = sorted(module for module in IMPORTS[name] if stage_of(module) and STAGES.index(stage_of(module)) > own)
    assert not later, f"{MODULES[name].relative_to(ROOT)} ({stage_of(name)}) imports later stages: {later}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if stage_of(n) in TORCH_FREE_STAGES))
def test_ops_transforms_and_build_configs_import_no_torch_and_no_torch_stage(name):
    banned = sorted(module for module in IMPORTS[name]
                    if module.split(".")[0] in TORCH_STACK or stage_of(module) in TORCH_STAGES)
    assert not banned, f"{MODULES[name].relative_to(ROOT)} imports {banned}"


def uses_finn(name, seen=None) -> bool:
    """Whether importing module `name` imports finn-plus (directly or through other psa_finn modules)."""
    seen = set() if seen is None else seen
    if name in seen or name not in IMPORTS_ON_IMPORT:
        return False
    seen.add(name)
    return any(module.split(".")[0] == "finn" or uses_finn(module, seen) for module in IMPORTS_ON_IMPORT[name])


def test_custom_ops_and_transforms_load_without_torch():
    lean = ["psa_finn.custom_ops"] + sorted(n for n in MODULES if stage_of(n) == "transforms" and not uses_finn(n))
    assert "psa_finn.transforms.lower_quantized_functions" in lean
    script = f"import importlib, sys\nfor name in {lean!r}:\n    importlib.import_module(name)\n" \
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'brevitas', 'finn')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"
