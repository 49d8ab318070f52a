"""Adapters to contracts other code already speaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from forgetkit.methods.base import UnlearningMethod
from forgetkit.runtime import DeviceLike


def as_neurips_unlearning(
    method: UnlearningMethod, *, device: DeviceLike = None, seed: int = 0
) -> Callable[[nn.Module, Any, Any, Any], nn.Module]:
    """Wrap a method as ``unlearning(net, retain, forget, validation) -> net``.

    That is the contract of the NeurIPS 2023 Machine Unlearning Challenge (three
    ``DataLoader`` s in, the unlearned network out), so challenge solutions and evaluation
    code can call forgetkit methods and vice versa. The caller's network is not modified.
    """

    def unlearning(net: nn.Module, retain: Any, forget: Any, validation: Any) -> nn.Module:
        return method.unlearn(
            net, forget, retain, validation=validation, device=device, seed=seed
        ).model

    unlearning.__name__ = f"{method.name}_unlearning"
    return unlearning
