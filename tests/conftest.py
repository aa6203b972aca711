"""Shared pytest set-up: the tests import the package `psa_finn` as a user does (scripts/setup.sh installs this
checkout into .venv, editable)."""

import importlib.util

import pytest

if importlib.util.find_spec("psa_finn") is None:
    raise pytest.UsageError("psa_finn is not installed in this Python: run `make test` (or `bash scripts/setup.sh` "
                            "and use .venv/bin/python)")
