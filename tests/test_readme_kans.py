"""README.md's "KANs" snippet runs as written: it trains a 4-bit digits KAN past 90 % and exports a QONNX file of two
KANLinear nodes that builds entirely on the hardware."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from qonnx.core.modelwrapper import ModelWrapper

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, is_op

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## KANs"


def readme_snippet() -> str:
    """The first ```python block of the README section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_section_is_short_and_the_snippet_uses_the_public_layer():
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    assert len(section.strip().splitlines()) <= 25
    snippet = readme_snippet()
    assert "from psa_finn.nn import QuantKANLinear" in snippet and "export_qonnx(" in snippet
    compile(snippet, "README KAN snippet", "exec")


@pytest.mark.slow
def test_the_snippet_trains_exports_and_builds(tmp_path):
    run = subprocess.run([sys.executable, "-c", readme_snippet()], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert float(re.search(r"test accuracy ([0-9.]+)%", run.stdout).group(1)) > 90.0
    model = ModelWrapper(str(tmp_path / "digits_kan.onnx"))
    assert sum(is_op(n, KAN_LINEAR_OP) for n in model.graph.node) == 2
    built = subprocess.run([sys.executable, str(ROOT / "build.py"), "build", "--model", "digits_kan.onnx",
                            "--config", str(ROOT / "build_configs" / "folded.yaml"), "--out", "build",
                            "--stop-step", "step_generate_estimate_reports"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=900)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    assert summary["all_nodes_on_hw"] and summary["verification"]["max_abs_diff"] == 0
