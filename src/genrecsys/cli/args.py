"""The one validation point for numbers on the command line: argparse types that refuse
what no command can use (``--seeds 0``, ``-k -3``, ``--lr 0``) with one line naming the flag.

>>> at_least(1)("3"), at_least(0)("0"), between(0, 1)("0.5")
(3, 0, 0.5)
>>> at_least(1)("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be at least 1, got 0
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def at_least(low: int) -> Callable[[str], int]:
    """A whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"  # argparse names the type in its own messages
    return parse


def between(low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (``low_open``: (low, high])."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE = between(0, low_open=True)  # learning rates, seconds, CPU shares
NON_NEGATIVE = between(0)
