"""C++ simulation of PerChannelLUT_hls's generated code (g++ + the hls4ml ap_types headers, no Vitis):
bit-exact against the layer's Python execution for random tables, both modes, PE in {1, 2, 4, C},
signed and unsigned inputs and outputs."""

import importlib.util

import numpy as np
import pytest
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (registers the layer and its backends)
import hls_cppsim
from hls_cppsim import cppsim_available, random_lut_input, run_hls_cppsim
from psa_finn.hardware_checks.lut_layer_models import make_lut_layer_model

pytestmark = pytest.mark.skipif(not cppsim_available(),
                                reason="C++ simulation needs g++ and the hls4ml==1.3.0 wheel's ap_types headers "
                                       "(scripts/setup.sh installs both)")
CHANNELS = 8


@pytest.fixture
def finn_build_dir(tmp_path, monkeypatch):
    """finn-plus settings and FINN_BUILD_DIR under tmp_path (HLS code generation reads the settings)."""
    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "finn_tmp"))


def cppsim_vs_python(tmp_path, mode, pe, input_dt, output_dt, table=None):
    """(C++ simulation output, Python execution output) of one PerChannelLUT_hls layer on random codes."""
    reference = make_lut_layer_model(CHANNELS, pe, input_dt, output_dt, mode)
    model = make_lut_layer_model(CHANNELS, pe, input_dt, output_dt, mode, impl_style="hls")
    assert model.graph.node[0].op_type == "PerChannelLUT_hls"
    if table is not None:
        for m in (model, reference):
            m.set_initializer("table", table)
    x = random_lut_input(model, seed=pe)
    produced = run_hls_cppsim(getCustomOp(model.graph.node[0]), model, x, tmp_path / "cppsim")
    return produced, execute_onnx(reference, {"x": x})["y"]


CASES = [(mode, pe, input_dt, output_dt)
         for mode in ("full", "lerp64")
         for pe in (1, 2, 4, CHANNELS)
         for input_dt, output_dt in (("INT8", "INT8"), ("UINT8", "UINT7"))]
QUICK = {("full", 2, "INT8", "INT8"), ("lerp64", 4, "UINT8", "UINT7"), ("full", CHANNELS, "UINT8", "UINT7"),
         ("lerp64", 1, "INT8", "INT8")}


@pytest.mark.parametrize("mode,pe,input_dt,output_dt", [
    pytest.param(*case, marks=() if case in QUICK else pytest.mark.slow) for case in CASES])
def test_cppsim_matches_python_execution(tmp_path, finn_build_dir, mode, pe, input_dt, output_dt):
    produced, expected = cppsim_vs_python(tmp_path, mode, pe, input_dt, output_dt)
    np.testing.assert_array_equal(produced, expected)


@pytest.mark.parametrize("input_dt,output_dt", [("INT4", "UINT8"), ("UINT5", "INT3")])
def test_cppsim_narrow_types_lerp64(tmp_path, finn_build_dir, input_dt, output_dt):
    produced, expected = cppsim_vs_python(tmp_path, "lerp64", 2, input_dt, output_dt)
    np.testing.assert_array_equal(produced, expected)


def test_cppsim_extreme_neighbouring_entries(tmp_path, finn_build_dir):
    """Entries alternating between INT8's bounds: the largest y1 - y0 the interpolation sees."""
    entries = 2 ** 6 + 1
    table = np.where(np.arange(CHANNELS * entries).reshape(CHANNELS, entries) % 2 == 0, -128, 127)
    produced, expected = cppsim_vs_python(tmp_path, "lerp64", 4, "INT8", "INT8", table.astype(np.float32))
    np.testing.assert_array_equal(produced, expected)
    assert expected.min() < -100 and expected.max() > 100


def test_cppsim_compiles_the_generated_top_file(tmp_path, finn_build_dir):
    model = make_lut_layer_model(CHANNELS, 2, mode="full", impl_style="hls")
    layer = getCustomOp(model.graph.node[0])
    run_hls_cppsim(layer, model, random_lut_input(model), tmp_path / "cppsim")
    name = model.graph.node[0].name
    testbench = (tmp_path / "cppsim" / "cppsim_main.cpp").read_text()
    assert f'#include "top_{name}.cpp"' in testbench
    assert "psa_finn::per_channel_lut_full" in (tmp_path / "cppsim" / f"top_{name}.cpp").read_text()


def test_missing_ap_types_headers_name_the_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"hls4ml==1\.3\.0"):
        hls_cppsim.ap_types_include_dir()
