"""The notebooks: committed without outputs, and (slow) executed with nbclient on the outputs of the quick demo.

The quick demo runs into the session's base temp folder under the same name as in tests/test_demo.py, so when both
files run in one session the second finds every stage done and only re-writes the report.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import build

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("resource_report.ipynb", "psa_functions.ipynb", "accuracy_vs_hidden.ipynb")
QUICK_DEMO_DIR = "quick_demo"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), \
        f"{name} has stored outputs; clear them before committing (Kernel > Restart & Clear Output)"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The quick demo's output folder (the demo reuses what another test module already ran)."""
    out = tmp_path_factory.getbasetemp() / QUICK_DEMO_DIR
    assert build.main(["demo", "--quick", "--out", str(out)]) == 0, f"quick demo failed; logs in {out / 'logs'}"
    return out


def execute(name, demo_dir, monkeypatch):
    """Run notebook `name` in a fresh kernel (cwd notebooks/) on `demo_dir`; return the executed notebook."""
    monkeypatch.setenv("PSA_FINN_DEMO_DIR", str(demo_dir))
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    return notebook


def outputs_of(notebook, kind):
    """All outputs of one MIME type (e.g. image/png) or stream text ("stream") of an executed notebook."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.output_type == "stream":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output.data[kind])
    return found


@pytest.mark.slow
def test_resource_report_notebook_on_demo_builds(demo_dir, monkeypatch):
    notebook = execute("resource_report.ipynb", demo_dir, monkeypatch)
    tables = "".join(outputs_of(notebook, "text/markdown"))
    assert "| relu/unrolled | unrolled |" in tables and "| lerp_psa/unrolled | unrolled |" in tables
    assert len(outputs_of(notebook, "image/png")) == 3


@pytest.mark.slow
def test_psa_functions_notebook_on_demo_checkpoint(demo_dir, monkeypatch):
    notebook = execute("psa_functions.ipynb", demo_dir, monkeypatch)
    printed = "".join(outputs_of(notebook, "stream"))
    assert "full            differs from the exported graph at     0 of" in printed
    assert "lerp64" in printed
    assert len(outputs_of(notebook, "image/png")) >= 2


@pytest.mark.slow
def test_accuracy_notebook_on_demo_benchmark(demo_dir, monkeypatch):
    notebook = execute("accuracy_vs_hidden.ipynb", demo_dir, monkeypatch)
    html = "".join(outputs_of(notebook, "text/html"))
    assert "relu" in html and "lerp_psa" in html
    assert len(outputs_of(notebook, "image/png")) == 1
