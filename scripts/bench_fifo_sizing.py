"""Benchmark of FIFO sizing by cycle simulation (prints figures; not a test) on the folded model of a build.

    .venv/bin/python build.py export --random-init --variant lerp_psa --hidden-factor 1 --dataset cifar10 \
        --out cifar.onnx
    .venv/bin/python build.py build --model cifar.onnx --config build_configs/unrolled.yaml --out cifar_build \
        --stop-step step_generate_estimate_reports
    .venv/bin/python scripts/bench_fifo_sizing.py cifar_build [--frames 4] [--rows 12]

Runs what step_size_fifos_by_simulation runs before code generation (dataflow_sim.fifo_insertion) on
DIR/intermediate_models/step_generate_estimate_reports.onnx and prints its time per phase, the simulated
throughput, the largest FIFOs (finn-plus estimates) and the build's resource totals without and with them.
"""

import argparse
import json
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()

    from psa_finn.build_configs import finn_shims

    finn_shims.boot_finn(args.build_dir / "bench_tmp")
    from qonnx.core.modelwrapper import ModelWrapper

    import psa_finn.custom_ops.fpgadataflow  # noqa: F401  (the PerChannelLUT / KANLinear HW layers)
    from psa_finn.dataflow_sim.fifo_insertion import insert_sized_fifos
    from psa_finn.dataflow_sim.fifo_table import fifo_table

    summary = json.loads((args.build_dir / "summary.json").read_text())
    model = ModelWrapper(str(args.build_dir / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    started = time.process_time()
    sized, record = insert_sized_fifos(model, summary["fpga_part"], summary["clk_ns"], args.frames)
    cpu = time.process_time() - started
    fifos = fifo_table(sized, summary["fpga_part"])
    print(f"model: {summary['model']} ({summary['config_name']}), {len(model.graph.node)} HW layers, "
          f"analytic {summary['fps']:,.0f} FPS (max cycles {summary['max_cycles']})")
    print(f"sizing: {record['seconds']} s wall, {cpu:.1f} s CPU; phases (s): {record['phase_seconds']}")
    print(f"simulated {record['frames']} frames: {record['simulated_fps']:,.0f} FPS "
          f"({record['period_cycles']} cycles/frame; unbounded FIFOs: {record['unbounded_period_cycles']}), "
          f"deadlock-free: {record['deadlock_free']}, depths from {record['depth_rule']} peaks")
    totals = {key: sum(f[key] for f in fifos) for key in ("lut", "bram18", "uram")}
    bits = sum(f["depth"] * f["width_bits"] for f in fifos)
    print(f"{len(fifos)} FIFOs, {sum(f['depth'] for f in fifos):,} words, {bits / 1e3:,.1f} kbit; finn-plus "
          f"estimates: LUT {totals['lut']:,}, BRAM18 {totals['bram18']}, URAM {totals['uram']}")
    print("totals (finn-plus estimates)      LUT       DSP    BRAM18   URAM")
    print(f"  layers only              {summary['lut']:>9,} {summary['dsp']:>9,} {summary['bram18']:>9,} "
          f"{summary['uram']:>6,}")
    print(f"  layers + FIFOs           {summary['lut'] + totals['lut']:>9,} {summary['dsp']:>9,} "
          f"{summary['bram18'] + totals['bram18']:>9,} {summary['uram'] + totals['uram']:>6,}")
    print("| FIFO | from | to | depth | width (bits) | kbit | style | LUT | BRAM18 | URAM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in sorted(fifos, key=lambda f: -f["depth"] * f["width_bits"])[:args.rows]:
        print(f"| {f['name']} | {f['producer']} | {f['consumer']} | {f['depth']:,} | {f['width_bits']} | "
              f"{f['depth'] * f['width_bits'] / 1e3:,.1f} | {f['ram_style']} | {f['lut']} | {f['bram18']} | "
              f"{f['uram']} |")


if __name__ == "__main__":
    main()
