"""Vivado-free simulation of generated hardware: g++ C++ simulation of HLS kernels, Verilator/Icarus RTL runs."""
