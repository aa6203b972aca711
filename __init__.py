"""psa-finn: a FINN/QONNX compilation-flow plugin for networks with learnable 1-D non-linear functions.

The package's folders are the stages of the flow (see ARCHITECTURE.md): `psa_finn.nn` (drop-in Brevitas-style
layers), `psa_finn.models` (the PyTorch study), `psa_finn.export`, `psa_finn.custom_ops` (the qonnx ops, ONNX domain
"psa_finn.custom_ops", and the finn-plus hardware layer), `psa_finn.transforms`, `psa_finn.build_configs`,
`psa_finn.hardware_checks` and `psa_finn.reports`. Importing the package itself loads nothing heavy.
"""

import warnings

__version__ = "0.2.0"

# Brevitas warns on every import that the optional fast_hadamard_transform kernels are missing. They serve only
# Brevitas' Hadamard-rotation equalisation, which psa-finn never runs, so the warning says nothing to its users.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found", category=UserWarning)
