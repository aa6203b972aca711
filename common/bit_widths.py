"""The bit widths psa-finn quantizes to, reads and lowers: the one bit-width policy.

- MIN_BITS .. MAX_BITS (2 .. 8): the widths psa-finn trains, exports and builds end to end. The export refuses
  other widths (nn.quantizers.check_bits), and `lower` and `build` refuse model files whose activation quantizers
  hold others (transforms.model_file): below 2 bits finn-plus turns a Quant into a bipolar type that the ResMLP's
  scales do not fit; above 8 bits the tables (2^bits entries per channel) and finn-plus's threshold conversion
  (2^bits - 1 thresholds per channel) outgrow what the flow has been built and verified for.
- The lowering (transforms.lower_quantized_functions), a qonnx Transformation that takes any in-memory model, also
  tabulates wider inputs, within two hard limits of its own: a PerChannelLUT table holds at most
  MAX_LUT_INPUT_BITS (12) input bits (4096 entries per channel), and no chain is tabulated (executed on every input
  code, also for a MultiThreshold) above MAX_TABULATED_INPUT_BITS (16). Every file-reading command applies the
  narrower MIN_BITS .. MAX_BITS, so no command lowers what it would then refuse to build.
"""

MIN_BITS = 2
MAX_BITS = 8
MAX_LUT_INPUT_BITS = 12
MAX_TABULATED_INPUT_BITS = 16
