# The two commands of the README. Each does its own set-up (scripts/setup.sh builds .venv once, then takes ~1 s).
PY := .venv/bin/python

.PHONY: demo test test-fast setup

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) build.py demo --out out/demo

test: setup
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests
