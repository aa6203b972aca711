"""Argument types for the subcommands' numeric flags: a bad value is rejected while parsing, so the error names the
flag (`argument --epochs: must be at least 1, got 0`) before any work or output."""

import argparse
import math


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's `(default: X)` after each help text, except where the text gives the default itself, there is
    none, or the flag is a switch (a default that depends on other flags is spelled out in the help)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _at_least(kind, minimum, inclusive: bool, wording: str):
    """An argparse type: a `kind` number >= `minimum` (> when not `inclusive`), else "must be <wording>"."""
    def parse(text: str):
        value = _number(text, kind)
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {wording}, got {value:g}")
        return value

    return parse


positive_int = _at_least(int, 1, True, "at least 1")
grid_size_int = _at_least(int, 2, True, "at least 2 (grid points)")
non_negative_int = _at_least(int, 0, True, "0 or more")
positive_float = _at_least(float, 0.0, False, "greater than 0")
non_negative_float = _at_least(float, 0.0, True, "0 or more")


def unit_fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value:g}")
    return value
