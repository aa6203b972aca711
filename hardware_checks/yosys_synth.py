"""Open-source synthesis figures for generated plain Verilog: yosys `synth_xilinx` + `stat`, cells by category.

Yosys maps to the same primitives as Vivado (LUT6, FDRE, RAMB18E2, CARRY8, ...) but optimises less, so its
counts are relative figures (typically more LUTs than Vivado), good for comparing designs and checking estimates.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

# FPGA part prefix -> yosys synth_xilinx family. Alveo U50/U55C/U200/U250/U280, Zynq UltraScale+ and every
# "...p" Virtex/Kintex part are UltraScale+ (xcup); the older UltraScale parts are xcu; 7-series is xc7.
_FAMILY_BY_PART = (
    (re.compile(r"^xc7"), "xc7"),
    (re.compile(r"^(xczu|xcu\d|xck26|xcau|xcku\d+p|xcvu\d+p)"), "xcup"),
    (re.compile(r"^(xcku|xcvu)"), "xcu"),
)

# Out-of-context synthesis (no I/O buffers, no clock buffer), as for an IP block. Yosys 0.23 maps carry chains
# to CARRY4 on every family, so CARRY counts 4-bit carry cells.
# Cells of each category, with the weight that turns a cell into the unit of the category: LUT6 sites for
# LUTRAM (distributed RAM and shift registers, as Vivado's "LUT as Memory"), 18 Kb blocks for BRAM.
_LUTRAM_SITES = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}
_BRAM18 = {"RAMB18E1": 1, "RAMB18E2": 1, "RAMB36E1": 2, "RAMB36E2": 2}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
_CARRY = {"CARRY4", "CARRY8"}
_DSP = {"DSP48E1", "DSP48E2"}
_URAM = {"URAM288", "URAM288_BASE"}
# Yosys has no mapping for a read-only memory marked "distributed" (it fails with "no valid mapping found"); on
# Xilinx parts a distributed ROM is LUT logic (LUT6 + free MUXF7/MUXF8), which yosys builds for "logic".
_DISTRIBUTED_ROM_AS_LOGIC = 'setattr -set ram_style "logic" a:ram_style=distributed'
CATEGORIES = ("LUT", "LUTRAM", "FF", "BRAM", "URAM", "DSP", "CARRY")


def yosys_available() -> bool:
    """True when the yosys executable is on PATH."""
    return shutil.which("yosys") is not None


def yosys_version() -> str:
    """`yosys -V` output, e.g. 'Yosys 0.23 (git sha1 ...)'."""
    return subprocess.run(["yosys", "-V"], capture_output=True, text=True, check=True).stdout.strip()


def synth_family_for_part(fpga_part: str) -> str:
    """yosys synth_xilinx -family for an AMD/Xilinx part name (e.g. xcu50-fsvh2104-2-e -> xcup)."""
    part = fpga_part.lower()
    for pattern, family in _FAMILY_BY_PART:
        if pattern.match(part):
            return family
    raise ValueError(f"no yosys synth_xilinx family known for part {fpga_part!r} (Versal is not supported by "
                     "yosys): pass a 7-series, UltraScale or UltraScale+ part")


def categorize_cells(cells_by_type: dict) -> dict:
    """Category counts (LUT, LUTRAM in LUT sites, FF, BRAM in 18 Kb blocks, URAM, DSP, CARRY) of a cell histogram."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for cell, n in cells_by_type.items():
        if re.fullmatch(r"LUT[1-6]|INV", cell):  # yosys leaves inverters as INV cells (a LUT1 each)
            counts["LUT"] += n
        elif cell in _LUTRAM_SITES:
            counts["LUTRAM"] += n * _LUTRAM_SITES[cell]
        elif cell in _FF:
            counts["FF"] += n
        elif cell in _BRAM18:
            counts["BRAM"] += n * _BRAM18[cell]
        elif cell in _URAM:
            counts["URAM"] += n
        elif cell in _DSP:
            counts["DSP"] += n
        elif cell in _CARRY:
            counts["CARRY"] += n
    return counts


def synthesize(verilog_files, top: str, family: str, work_dir, timeout_s: float = 600) -> dict:
    """Run yosys synth_xilinx on `verilog_files` in `work_dir` (where $readmemh files are read from).

    Returns {"cells": {cell type: count}, **category counts}; the yosys log is kept in work_dir/yosys.log.
    """
    if not yosys_available():
        raise RuntimeError("yosys is not installed: install Debian's yosys (scripts/setup.sh does so as root)")
    work = Path(work_dir)
    stat_file = work / "yosys_stat.json"
    reads = "; ".join(f"read_verilog -defer {Path(f).resolve()}" for f in verilog_files)
    script = (f"{reads}; hierarchy -top {top}; {_DISTRIBUTED_ROM_AS_LOGIC}; "
              f"synth_xilinx -family {family} -top {top} -flatten -noiopad -noclkbuf; "
              f"tee -q -o {stat_file.name} stat -json")
    proc = subprocess.run(["yosys", "-q", "-l", "yosys.log", "-p", script], cwd=work, capture_output=True,
                          text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"yosys synth_xilinx of {top} failed (log: {work / 'yosys.log'}):\n{proc.stderr[-3000:]}")
    stats = json.loads(stat_file.read_text())
    if "design" in stats:  # totals over the hierarchy (modules kept by keep_hierarchy counted per instance)
        cells = dict(stats["design"].get("num_cells_by_type", {}))
    else:
        cells = {}
        for module in stats["modules"].values():
            for cell, n in module.get("num_cells_by_type", {}).items():
                cells[cell] = cells.get(cell, 0) + n
    return {"cells": dict(sorted(cells.items())), **categorize_cells(cells)}
