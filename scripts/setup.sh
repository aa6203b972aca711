#!/usr/bin/env bash
# One set-up step for psa-finn: builds the virtual environment at .venv in the checkout.
# It is idempotent: when .venv already matches the requirement files it returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.psa-finn-setup
want=$(cat requirements.txt requirements-finn.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi

echo "[setup] creating .venv (first run takes a few minutes)" >&2
python3 -m venv .venv
py=.venv/bin/python
pip_install() {
  # This machine's pip config names local index folders that may not exist; drop pip's warnings about them.
  "$py" -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install --upgrade pip
# torch first and alone, so no resolver ever pulls a multi-GB CUDA build for it.
pip_install torch==2.13.0
pip_install -r requirements.txt
# finn-plus pins brevitas==0.13.0 (broken export on torch 2.13); install it without its pins.
pip_install --no-deps -r requirements-finn.txt
# psa-finn itself, editable: the checkout's stage folders import as the package psa_finn (pyproject.toml).
pip_install --no-deps --no-build-isolation -e .
"$py" -c "import torch, brevitas, qonnx, finn, onnxruntime, psa_finn" >/dev/null
# The optional extra psa-finn[kan]: pykan for QuantKANLinear.from_pykan and its test. Without its pins (it pins old
# numpy/torch versions); what it imports at import time (sympy, pandas, scikit-learn, pyyaml, matplotlib) is here.
pip_install --no-deps pykan==0.2.8
"$py" -c "import kan.KANLayer" >/dev/null
# --- Hardware-verification tools (owner: C++/RTL simulation and synth-check) -------------------------------
# The C++ simulation of the LUT layer's HLS code compiles against the ap_types headers shipped in the hls4ml wheel
# (headers only, so no dependencies); RTL simulation and synthesis figures use Debian's verilator, iverilog and
# yosys. Without root or apt the tests that need them skip and say why.
pip_install --no-deps hls4ml==1.3.0
hw_tools_missing=""
for tool in verilator iverilog yosys; do
  command -v "$tool" >/dev/null 2>&1 || hw_tools_missing="$hw_tools_missing $tool"
done
if [ -n "$hw_tools_missing" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing$hw_tools_missing with apt-get" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        verilator iverilog yosys g++ make >/dev/null; }; then
      echo "[setup] apt-get could not install verilator/iverilog/yosys: RTL simulation and synth-check tests will skip" >&2
    fi
  else
    echo "[setup] not root or no apt-get: install verilator, iverilog and yosys yourself;" \
      "until then RTL simulation and synth-check tests skip" >&2
  fi
fi
# --- end of hardware-verification tools ---------------------------------------------------------------------
echo "$want" > "$stamp"
echo "[setup] .venv ready" >&2
