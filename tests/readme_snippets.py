"""README.md's sections and their Python snippets, for the tests that run them as written."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_section(title: str) -> str:
    """The README section headed `title` (e.g. "## KANs"), up to the next "## " heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(title):]
    end = section.find("\n## ", 1)
    return section if end < 0 else section[:end]


def readme_snippet(title: str) -> str:
    """The first ```python block of the README section headed `title`."""
    return re.search(r"```python\n(.*?)```", readme_section(title), re.S).group(1)


def public_api_snippet(title: str, layer_import: str) -> str:
    """The section's snippet, checked to import `layer_import`, call export_qonnx and compile."""
    snippet = readme_snippet(title)
    assert layer_import in snippet and "export_qonnx(" in snippet
    compile(snippet, f"README snippet of {title}", "exec")
    return snippet


def snippet_test_accuracy(title: str, cwd) -> float:
    """Run the section's snippet in a fresh interpreter in folder `cwd` (at most 15 minutes); it must succeed and
    print "test accuracy N%": returns N."""
    run = subprocess.run([sys.executable, "-c", readme_snippet(title)], cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return float(re.search(r"test accuracy ([0-9.]+)%", run.stdout).group(1))
