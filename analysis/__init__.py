"""Analyses of built models (functions that read a model and return a dict, as finn-plus's analysis passes):
psa-finn's hardware figures of every layer (`resources`) and the exact counts of a network (`exact_counts`)."""
