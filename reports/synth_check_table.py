"""Markdown table of a build's `synth_check` (yosys cell counts of the LUT layers) beside finn-plus's estimates.

`synth_check` is written by `build.py synth-check` (build_configs/synth_check.py): per layer the yosys figures
(lut, lutram, ff, bram18, uram, dsp, carry), the layer's estimate {lut, bram18, uram, dsp} and its attributes, plus
totals. yosys maps more LUTs than Vivado would: its figures are relative, not absolute.
"""

PAIRED = (("lut", "LUT"), ("bram18", "BRAM18"), ("uram", "URAM"), ("dsp", "DSP"))
YOSYS_ONLY = (("lutram", "LUTRAM"), ("ff", "FF"), ("carry", "CARRY4"))


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return str(value)


def _row(name, attributes, yosys, estimate) -> str:
    cells = [name, _cell(attributes.get("mode")), _cell(attributes.get("PE"))]
    cells += [f"{_cell(yosys.get(key))} / {_cell(estimate.get(key))}" for key, _ in PAIRED]
    cells += [_cell(yosys.get(key)) for key, _ in YOSYS_ONLY]
    return "| " + " | ".join(cells) + " |"


def synth_check_table(summary) -> str:
    """Markdown for `summary.synth_check`: one row per synthesised layer (yosys / estimate), a totals row, notes.

    A layer's estimate comes from the synth_check record, else from the build's own `layers` of the same name.
    """
    check = summary.synth_check or {}
    build_layers = {layer.name: layer for layer in summary.layers}
    header = ["layer", "mode", "PE", *(f"{name} yosys / est." for _, name in PAIRED), *(n for _, n in YOSYS_ONLY)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in check.get("layers", []):
        estimate = entry.get("estimate")
        if estimate is None and entry.get("name") in build_layers:
            estimate = {key: getattr(build_layers[entry["name"]], key) for key, _ in PAIRED}
        lines.append(_row(str(entry.get("name", "?")), entry.get("attributes", {}), entry, estimate or {}))
    totals = check.get("totals", {})
    if totals:
        lines.append(_row("**total**", {}, totals.get("yosys", {}), totals.get("estimate", {})))
    if len(lines) == 2:
        lines = ["(synth_check holds no layers)"]
    notes = [f"- {key}: {_cell(check[key])}" for key in ("tool", "fpga_part", "family", "note") if key in check]
    return "\n".join(lines + [""] + notes) + "\n"
