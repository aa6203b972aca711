"""Design-space sweeps: accuracy against hardware cost over activation variant, width, bits, grid size, lowering and
build config, each trial (train, QAT, export, lower, estimate build) a Ray task; Pareto fronts and reports."""
