"""Hardware checks that need no Vivado: C++ simulation of generated HLS (g++ and hls4ml's ap_types), one-layer LUT
models for simulations, and yosys synthesis figures beside the FINN estimates (`build.py synth-check`)."""
