"""psa-finn as an installable package: one top-level name, a console command, the op domain, old files still load."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.basic import qonnx_make_model

from psa_finn.custom_ops.domain import LEGACY_OPS_DOMAIN, OPS_DOMAIN, upgrade_legacy_domain
from psa_finn.custom_ops.lerp_psa import lerp_psa_numpy

ROOT = Path(__file__).resolve().parents[1]


def test_install_puts_only_psa_finn_at_the_top_level(tmp_path):
    target = tmp_path / "site"
    # pip builds in the source tree (build/, *.egg-info): install from a copy so the checkout stays as it is
    source = shutil.copytree(ROOT, tmp_path / "checkout", ignore=shutil.ignore_patterns(
        ".git", ".venv", "out", "build", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
                             "--target", str(target), str(source)], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PIP_NO_INDEX="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    top_level = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert top_level == ["psa_finn"]
    package = target / "psa_finn"
    for stage in ("export", "transforms", "custom_ops", "build_configs", "models", "nn", "common", "reports",
                  "sweeps"):
        assert (package / stage / "__init__.py").is_file(), stage
    assert (package / "build_configs" / "unrolled.yaml").is_file()
    assert (package / "sweeps" / "spaces" / "digits_resmlp.yaml").is_file()
    assert (package / "custom_ops" / "fpgadataflow" / "hls" / "per_channel_lut.hpp").is_file()
    assert not (package / "tests").exists() and not (package / "notebooks").exists()
    # the installed copy (not this checkout) answers the console entry point
    script = "import psa_finn.build as b, sys; print(b.__file__); sys.exit(b.main(['--help']))"
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=str(target), PYTHONNOUSERSITE="1"))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.splitlines()[0] == str(package / "build.py")
    assert "lower" in shown.stdout and "exit status" in shown.stdout


def test_console_command_is_build_py(tmp_path):
    command = Path(sys.executable).with_name("psa-finn")
    assert command.is_file(), "scripts/setup.sh installs the checkout with its console command"
    via_command = subprocess.run([str(command), "lower", "--help"], capture_output=True, text=True, timeout=300)
    via_script = subprocess.run([sys.executable, str(ROOT / "build.py"), "lower", "--help"], capture_output=True,
                                text=True, timeout=300)
    assert via_command.returncode == via_script.returncode == 0
    assert via_command.stdout.replace("psa-finn", "build.py") == via_script.stdout


def _lerp_psa_model(domain):
    table = np.linspace(-1.0, 2.0, 3 * 8, dtype=np.float32).reshape(3, 8) ** 2
    node = helper.make_node("LerpPSA", ["x", "table"], ["y"], domain=domain, grid_range=2.0, name="psa")
    graph = helper.make_graph([node], "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = ModelWrapper(qonnx_make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                                  helper.make_opsetid(domain, 1)]))
    model.set_initializer("table", table)
    return model, table


def test_files_of_the_old_domain_execute_and_are_rewritten_with_one_notice(capsys):
    model, table = _lerp_psa_model(LEGACY_OPS_DOMAIN)
    x = np.array([[-3.0, 0.1, 1.7], [0.0, -1.2, 2.5]], dtype=np.float32)
    expected = lerp_psa_numpy(x, table, 2.0)
    np.testing.assert_array_equal(execute_onnx(model, {"x": x})["y"], expected)   # the alias resolves it
    assert upgrade_legacy_domain(model, "old.onnx") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "old.onnx" in err and OPS_DOMAIN in err
    assert model.graph.node[0].domain == OPS_DOMAIN
    assert OPS_DOMAIN in [opset.domain for opset in model.model.opset_import]
    assert LEGACY_OPS_DOMAIN not in [opset.domain for opset in model.model.opset_import]
    np.testing.assert_array_equal(execute_onnx(model, {"x": x})["y"], expected)
    assert upgrade_legacy_domain(model, "old.onnx") == 0 and capsys.readouterr().err == ""
