"""Tug-of-war (ToW): one number for how close a model's accuracies are to the oracle's."""

from __future__ import annotations

import math
from collections.abc import Mapping

SPLITS = ("forget", "retain", "test")


def _accuracies(values: Mapping[str, float], name: str) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a mapping of split -> accuracy, got "
                        f"{type(values).__name__}")  # fmt: skip
    missing = [k for k in SPLITS if k not in values]
    if missing:
        raise ValueError(f"{name} lacks accuracies for {missing}; ToW needs {list(SPLITS)}")
    out = {}
    for k in SPLITS:
        v = float(values[k])
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}[{k!r}] = {values[k]!r} is not an accuracy in [0, 1]")
        out[k] = v
    return out


def tow(unlearned: Mapping[str, float], oracle: Mapping[str, float]) -> float:
    """ToW = ``(1 - |ΔFA|)(1 - |ΔRA|)(1 - |ΔTA|)`` (Zhao et al., NeurIPS 2024, "What makes
    unlearning hard and what to do about it", the RUM paper).

    Δ is the difference in accuracy between the unlearned model and the retrained oracle on
    the forget set (FA), the retain set (RA) and the test set (TA); accuracies are fractions
    in [0, 1], given as mappings with keys ``"forget"``, ``"retain"`` and ``"test"`` (other
    keys are ignored). ToW lies in [0, 1]; 1 means the accuracies match the oracle's
    exactly, and higher is better.
    """
    u = _accuracies(unlearned, "unlearned")
    o = _accuracies(oracle, "oracle")
    value = 1.0
    for k in SPLITS:
        value *= 1.0 - abs(u[k] - o[k])
    return value
