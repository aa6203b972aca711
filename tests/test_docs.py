"""The documentation: `make docs`'s Sphinx build passes with warnings as errors and every internal link of the built
site resolves (file and anchor); ARCHITECTURE.md names only files that exist; README.md stays within 250 lines and
its layout map names the folders there are.

The build writes the site into the test's own folder; the API pages it generates from the package
(docs/api/generated/, ignored by git) are rewritten in the checkout as at every `make docs`.
"""

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGE_FOLDERS = ("common", "custom_ops", "models", "nn", "export", "transforms", "analysis", "build_configs",
                 "hardware_checks", "reports", "sweeps")
PATH_SUFFIXES = (".py", ".md", ".yaml", ".ipynb", ".sh", ".hpp")


class LinksAndIds(HTMLParser):
    """The hrefs/srcs and the element ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def parse(page: Path) -> LinksAndIds:
    parser = LinksAndIds()
    parser.feed(page.read_text(errors="replace"))
    return parser


def broken_internal_links(site: Path) -> list:
    """"page: link" for every relative link of the site whose file or anchor does not exist."""
    pages = {page: parse(page) for page in site.rglob("*.html")}
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    return broken


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here"><a href="b.html#gone">x</a> <a href="#here">y</a> '
                                     '<a href="missing.html">z</a> <a href="https://example.org/">w</a></p>')
    (tmp_path / "b.html").write_text('<h1 id="there">b</h1><a href="a.html#here">back</a>')
    assert broken_internal_links(tmp_path) == ["a.html: b.html#gone (no such anchor)",
                                               "a.html: missing.html (no such file)"]


@pytest.mark.slow
def test_make_docs_builds_without_warnings_and_every_internal_link_resolves(tmp_path):
    site = tmp_path / "html"
    build = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                            str(ROOT / "docs"), str(site)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-5000:]
    for page in ("index", "getting_started", "cli", "api", "results", "hardware_numbers", "architecture",
                 "tutorials/own_network", "tutorials/build_configs", "tutorials/sweeps_ray"):
        assert (site / f"{page}.html").is_file(), page
    cli = (site / "cli.html").read_text()
    assert all(f'id="psa-finn-{command}"' in cli for command in ("train", "lower", "build", "sweep", "synth-check"))
    assert "psa_finn.transforms.lower_and_report.lower_and_report" in (site / "api" / "generated" /
                                                                     "05_transforms.html").read_text()
    assert broken_internal_links(site) == []


def architecture_paths() -> list:
    """Every `path` in ARCHITECTURE.md that names a file of the repository (by its suffix) or a folder (x/)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    tokens = re.findall(r"`([^`\s]+)`", text) + re.findall(r"(?<![\w/.`])((?:[a-z_]+/)+[a-z_]+\.(?:py|md|yaml))", text)
    return sorted({t for t in tokens if ("/" in t or t.endswith(PATH_SUFFIXES)) and not re.search(r"[<>A-Z*]", t)
                   and (t.endswith(PATH_SUFFIXES) or t.endswith("/"))})


def test_architecture_names_only_files_that_exist():
    paths = architecture_paths()
    assert "common/grid.py" in paths and "tests/test_stage_imports.py" in paths
    # a path may be written relative to its stage or to a folder of it (hls/ of custom_ops/fpgadataflow/)
    roots = [ROOT, *(folder for stage in STAGE_FOLDERS for folder in [ROOT / stage, *(ROOT / stage).rglob("*")]
                     if folder.is_dir())]
    missing = [p for p in paths if not any((root / p).exists() for root in roots)]
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_readme_is_short_and_its_layout_map_is_true():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    layout = text[text.index("## Layout"):]
    block = re.search(r"```\n(.*?)```", layout, re.S).group(1)
    listed = [line.split()[0] for line in block.splitlines() if line and not line.startswith(" ")]
    assert all((ROOT / name.rstrip("/")).exists() for name in listed), listed
    assert {f"{stage}/" for stage in STAGE_FOLDERS} <= set(listed)
