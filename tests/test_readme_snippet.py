"""README.md's "Use psa-finn in your own network" snippet runs as written: it trains, exports a QONNX file that
`build.py eval` scores as the snippet printed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Use psa-finn in your own network"


def readme_snippet() -> str:
    """The first ```python block of the README section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_snippet_is_about_twenty_lines_of_public_api():
    snippet = readme_snippet()
    assert 15 <= len(snippet.splitlines()) <= 30
    assert "from psa_finn.nn import QuantLerpPSA" in snippet and "export_qonnx(" in snippet
    compile(snippet, "README snippet", "exec")


@pytest.mark.slow
def test_the_readme_snippet_trains_exports_and_scores(tmp_path):
    run = subprocess.run([sys.executable, "-c", readme_snippet()], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = float(re.search(r"test accuracy ([0-9.]+)%", run.stdout).group(1))
    assert printed > 90.0
    scored = subprocess.run([sys.executable, str(ROOT / "build.py"), "eval", "--checkpoint", "digits_cnn.onnx",
                             "--dataset", "digits"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert float(re.search(r"accuracy ([0-9.]+)%", scored.stdout).group(1)) == pytest.approx(printed, abs=0.05)
