"""Sphinx configuration of psa-finn's documentation (`make docs`: HTML in docs/_build/html, warnings are errors).

Sphinx, as qonnx, finn-plus and Brevitas use it, with MyST-Parser so the pages are Markdown, autodoc + napoleon for
the API reference from the docstrings, and sphinx-argparse for the CLI reference from the argparse parsers that
`build.py` runs (`psa_finn.build.reference_parser`). The API pages (docs/api/generated/, not in git) are written
here at every build from the package's stage folders, so a new module is documented without editing anything.
"""

import importlib
import inspect
import sys
import tempfile
from inspect import Signature
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
STAGES = ("common", "custom_ops", "models", "nn", "export", "transforms", "analysis", "build_configs",
          "hardware_checks", "reports", "sweeps")
STAGE_TITLES = {
    "common": "common: shared infrastructure", "custom_ops": "custom_ops: qonnx ops and the HW layer",
    "models": "models: PyTorch modules and training", "nn": "nn: Brevitas layers", "export": "export: QONNX export",
    "transforms": "transforms: lowering and streamlining", "analysis": "analysis: resource models and exact counts",
    "build_configs": "build_configs: finn-plus builds",
    "hardware_checks": "hardware_checks: Vivado-less checks", "reports": "reports: tables, plots, the demo",
    "sweeps": "sweeps: design-space sweeps on Ray",
}

project = "psa-finn"
author = "psa-finn developers"
sys.path.insert(0, str(DOCS))
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinxarg.ext", "plain_docstrings"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
myst_heading_anchors = 3
html_theme = "sphinx_rtd_theme"
html_title = "psa-finn"
smartquotes = False  # option names such as --debug stay as typed
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True,
                           "ignore-module-all": True}
autodoc_inherit_docstrings = False  # torch's autograd Function docstrings are not ours
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False


def stage_modules(stage: str) -> list:
    """Module names of one stage folder, the package first, in path order."""
    names = []
    for path in sorted((ROOT / stage).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        names.append(".".join(("psa_finn",) + parts))
    return sorted(names, key=lambda name: (name.count("."), name) if name.endswith(stage) else (9, name))


def imported_names(module_name: str) -> list:
    """Public classes and functions that module `module_name` imports from elsewhere (documented where defined)."""
    module = importlib.import_module(module_name)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        defined_in = vars(value).get("__module__") if inspect.isclass(value) else value.__module__
        if defined_in != module_name:
            names.append(name)
    return sorted(names)


def write_api_pages() -> None:
    """docs/api/generated/<stage>.md: one automodule block per module of the stage (rewritten only when changed)."""
    folder = DOCS / "api" / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for index, stage in enumerate(STAGES):
        blocks = [f"# {STAGE_TITLES[stage]}\n"]
        for module in stage_modules(stage):
            imported = imported_names(module)
            exclude = f"\n   :exclude-members: {', '.join(imported)}" if imported else ""
            blocks.append(f"## `{module}`\n\n```{{eval-rst}}\n.. automodule:: {module}{exclude}\n```\n")
        page = folder / f"{index:02d}_{stage}.md"
        wanted.add(page.name)
        text = "\n".join(blocks)
        if not page.is_file() or page.read_text() != text:
            page.write_text(text)
    for stale in folder.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()


def boot_finn_for_autodoc() -> None:
    """finn-plus's builder imports need its settings (the build steps' module imports them): boot it once."""
    sys.path.insert(0, str(ROOT / "tests"))
    from psa_finn.build_configs import finn_shims

    finn_shims.boot_finn(Path(tempfile.mkdtemp(prefix="psa_finn_docs_")))


def _brevitas_injector_getattr(obj, name, *default):
    """getattr for Brevitas quantizer classes (dependency injectors): an attribute they cannot resolve raises
    (DependencyError, or whatever building the dependency raises), which autodoc must see as AttributeError."""
    try:
        return getattr(obj, name)
    except Exception as err:  # DependencyError, or the error of a dependency that cannot be built without arguments
        if default:
            return default[0]
        raise AttributeError(name) from err


def _signature_without_injectors(signature):
    """Sphinx's signature(), giving a Brevitas quantizer class (a dependency injector: its attribute lookups raise,
    and it is passed as a class, never called) an empty signature."""
    from brevitas.inject import _ExtendedInjectorType

    def patched(subject, *args, **kwargs):
        if isinstance(subject, _ExtendedInjectorType):
            return Signature()
        return signature(subject, *args, **kwargs)

    return patched


def setup(app):
    """Brevitas quantizer classes: an attribute getter for their members and an empty signature."""
    import sphinx.util.inspect
    from brevitas.inject import _ExtendedInjectorType

    app.add_autodoc_attrgetter(_ExtendedInjectorType, _brevitas_injector_getattr)
    sphinx.util.inspect.signature = _signature_without_injectors(sphinx.util.inspect.signature)


boot_finn_for_autodoc()
write_api_pages()
