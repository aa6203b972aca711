#!/usr/bin/env bash
# One set-up step for psa-finn: builds the virtual environment at .venv in the checkout.
# It is idempotent: when .venv already matches the requirement files it returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.psa-finn-setup
want=$(cat requirements.txt requirements-finn.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
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
"$py" -c "import torch, brevitas, qonnx, finn, onnxruntime" >/dev/null
echo "$want" > "$stamp"
echo "[setup] .venv ready" >&2
