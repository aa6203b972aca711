"""README.md's "Use psa-finn in your own network" snippet runs as written: it trains, exports a QONNX file that
`build.py eval` scores as the snippet printed."""

import re
import subprocess
import sys

import pytest
from readme_snippets import ROOT, public_api_snippet, snippet_test_accuracy

SECTION = "## Use psa-finn in your own network"


def test_the_snippet_is_about_twenty_lines_of_public_api():
    snippet = public_api_snippet(SECTION, "from psa_finn.nn import QuantLerpPSA")
    assert 15 <= len(snippet.splitlines()) <= 30


@pytest.mark.slow
def test_the_readme_snippet_trains_exports_and_scores(tmp_path):
    printed = snippet_test_accuracy(SECTION, tmp_path)
    assert printed > 90.0
    scored = subprocess.run([sys.executable, str(ROOT / "build.py"), "eval", "--checkpoint", "digits_cnn.onnx",
                             "--dataset", "digits"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert float(re.search(r"accuracy ([0-9.]+)%", scored.stdout).group(1)) == pytest.approx(printed, abs=0.05)
