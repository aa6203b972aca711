"""The bit widths psa-finn quantizes to and builds: weights and activations from MIN_BITS to MAX_BITS.

Below 2 bits finn-plus turns a Quant into a bipolar type that the ResMLP's scales do not fit; above 8 bits a
LerpPSA table (2^bits entries per channel) and finn-plus's threshold conversion (2^bits - 1 thresholds) outgrow
what the flow maps to hardware. The export refuses other widths, and `lower` and `build` refuse models that hold them.
"""

MIN_BITS = 2
MAX_BITS = 8
