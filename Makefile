# The commands of the README. Each does its own set-up (scripts/setup.sh builds .venv once, then takes ~1 s).
PY := .venv/bin/python

.PHONY: demo test test-fast setup notebooks docs

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) build.py demo --out out/demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile tests

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

# The documentation site (Sphinx + MyST, docs/conf.py): warnings are errors; HTML in docs/_build/html.
docs: setup
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# JupyterLab on notebooks/ (they read out/demo/, or the folder in PSA_FINN_DEMO_DIR). It prints the URL to open;
# on a machine without a browser pass JUPYTER_ARGS="--no-browser --port=8888". Jupyter refuses root unless told.
notebooks: setup
	$(PY) -m jupyterlab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)
