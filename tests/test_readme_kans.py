"""README.md's "KANs" snippet runs as written: it trains a 4-bit digits KAN past 90 % and exports a QONNX file of two
KANLinear nodes that builds entirely on the hardware."""

import json
import subprocess
import sys

import pytest
from qonnx.core.modelwrapper import ModelWrapper
from readme_snippets import ROOT, public_api_snippet, readme_section, snippet_test_accuracy

from psa_finn.custom_ops.domain import KAN_LINEAR_OP, is_op

SECTION = "## KANs"


def test_the_section_is_short_and_the_snippet_uses_the_public_layer():
    assert len(readme_section(SECTION).strip().splitlines()) <= 25
    public_api_snippet(SECTION, "from psa_finn.nn import QuantKANLinear")


@pytest.mark.slow
def test_the_snippet_trains_exports_and_builds(tmp_path):
    assert snippet_test_accuracy(SECTION, tmp_path) > 90.0
    model = ModelWrapper(str(tmp_path / "digits_kan.onnx"))
    assert sum(is_op(n, KAN_LINEAR_OP) for n in model.graph.node) == 2
    built = subprocess.run([sys.executable, str(ROOT / "build.py"), "build", "--model", "digits_kan.onnx",
                            "--config", str(ROOT / "build_configs" / "folded.yaml"), "--out", "build",
                            "--stop-step", "step_generate_estimate_reports"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=900)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    summary = json.loads((tmp_path / "build" / "summary.json").read_text())
    assert summary["all_nodes_on_hw"] and summary["verification"]["max_abs_diff"] == 0
