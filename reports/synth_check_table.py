"""Markdown table of a build's `synth_check` (yosys cell counts of the LUT layers) beside finn-plus's estimates.

Each layer yosys synthesised is one row: the yosys figures, and for LUT, DSP and BRAM18 the estimate of the same
layer from `layers` in summary.json. yosys maps more LUTs than Vivado would: the figures are relative, not absolute.
"""

from reports.build_summary import RESOURCE_KEYS


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return str(value)


def synth_check_table(summary) -> str:
    """Markdown for `summary.synth_check`: per-layer yosys figures with estimates beside them, then any notes."""
    check = summary.synth_check or {}
    layers = [entry for entry in check.get("layers", []) if isinstance(entry, dict)]
    notes = {k: v for k, v in check.items() if k != "layers" and not isinstance(v, (dict, list))}
    lines = []
    if layers:
        estimates = {layer.name: layer for layer in summary.layers}
        keys = [k for k in layers[0] if k not in ("name", "op_type") and not isinstance(layers[0][k], (dict, list))]
        header = ["layer"]
        for key in keys:
            header.append(f"yosys {key}")
            if key in RESOURCE_KEYS:
                header.append(f"estimate {key}")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in layers:
            estimate = estimates.get(entry.get("name"))
            cells = [str(entry.get("name", "?"))]
            for key in keys:
                cells.append(_cell(entry.get(key)))
                if key in RESOURCE_KEYS:
                    cells.append(_cell(getattr(estimate, key)) if estimate else "-")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"- {key}: {_cell(value)}" for key, value in notes.items()]
    if not lines:
        lines.append("(synth_check is empty)")
    return "\n".join(lines) + "\n"
