"""argparse types that reject a bad value when the command line is parsed (a one-line error, before
anything is imported or computed)."""
from __future__ import annotations

import argparse


def _int(text: str, lo: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (threads, batch size, repetitions)."""
    return _int(text, 1, "a positive integer")


def count(text: str) -> int:
    """An integer >= 0 (bootstrap resamples; 0 = none)."""
    return _int(text, 0, "an integer >= 0")


def seed(text: str) -> int:
    """A seed: an integer from 0 to 2**32 - 1."""
    v = _int(text, 0, "a seed (an integer from 0 to 2**32-1)")
    if v >= 2 ** 32:
        raise argparse.ArgumentTypeError(f"{text} is not a seed (an integer from 0 to 2**32-1)")
    return v


def _float(text: str, ok, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return v


def seconds(text: str) -> float:
    """A duration in seconds >= 0 (0 = no limit)."""
    return _float(text, lambda v: 0 <= v < float("inf"), "a number of seconds >= 0 (0 = no limit)")


def fraction(text: str) -> float:
    """A tolerance: a number from 0 to 1."""
    return _float(text, lambda v: 0 <= v <= 1, "a fraction from 0 to 1")
