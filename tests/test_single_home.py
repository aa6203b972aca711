"""One home per contract, enforced: finn-plus's hardware-layer domain and qonnx's quantizer op names are written
as string literals in custom_ops/domain.py only; every other module imports them (HW_DOMAIN, HLS_DOMAIN, RTL_DOMAIN,
is_hw_node; INTEGER_QUANT_OP_TYPES, QUANTIZER_OP_TYPES, is_quant_node, is_quantizer_node).

Read with ast over every package module (the stage folders and build.py) and every test module; docstrings are prose
and may name them.
"""

import ast
from pathlib import Path

from psa_finn.custom_ops import domain

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "custom_ops" / "domain.py"
STAGE_FOLDERS = ("common", "custom_ops", "models", "nn", "export", "transforms", "analysis", "build_configs",
                 "hardware_checks", "reports", "sweeps")
PACKAGE_MODULES = sorted([ROOT / "build.py"] + [p for folder in STAGE_FOLDERS for p in (ROOT / folder).rglob("*.py")])
TEST_MODULES = sorted(p for p in (ROOT / "tests").glob("*.py") if p != Path(__file__).resolve())


def string_literals(path: Path) -> list:
    """(line, value) of every str constant of `path` that is not a docstring."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def hw_domain_literals(path: Path) -> list:
    return [f"{_name(path)}:{line}: {value!r}" for line, value in string_literals(path)
            if value.startswith(domain.HW_DOMAIN)]


def quantizer_literals(path: Path) -> list:
    return [f"{_name(path)}:{line}: {value!r}" for line, value in string_literals(path)
            if value in domain.QUANTIZER_OP_TYPES]


def test_the_home_holds_both_contracts():
    assert hw_domain_literals(HOME) and quantizer_literals(HOME)
    assert set(domain.QUANTIZER_OP_TYPES) == {"Quant", "IntQuant", "BipolarQuant", "FloatQuant", "Trunc"}
    assert (domain.HLS_DOMAIN, domain.RTL_DOMAIN) == (domain.HW_DOMAIN + ".hls", domain.HW_DOMAIN + ".rtl")


def test_a_second_home_is_found(tmp_path):
    """The scan sees a literal outside a docstring, and only there."""
    module = tmp_path / "second_home.py"
    module.write_text('"""Names finn.custom_op.fpgadataflow and IntQuant in prose."""\n'
                      'KINDS = ("Quant", "BipolarQuant")\nDOMAIN = "finn.custom_op.fpgadataflow.hls"\n')
    assert sorted(string_literals(module)) == [(2, "BipolarQuant"), (2, "Quant"), (3, domain.HLS_DOMAIN)]
    assert len(hw_domain_literals(module)) == 1 and len(quantizer_literals(module)) == 2


def test_the_hw_domain_is_written_only_in_custom_ops_domain():
    found = [hit for path in PACKAGE_MODULES + TEST_MODULES if path != HOME for hit in hw_domain_literals(path)]
    assert not found, f"finn-plus's HW domain written outside custom_ops/domain.py (import HW_DOMAIN): {found}"


def test_the_quantizer_op_types_are_written_only_in_custom_ops_domain():
    found = [hit for path in PACKAGE_MODULES if path != HOME for hit in quantizer_literals(path)]
    assert not found, f"qonnx quantizer op types written outside custom_ops/domain.py (import them): {found}"
