"""Adapters to contracts other code already speaks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from forgetkit.methods.base import UnlearningMethod, get_method
from forgetkit.runtime import DeviceLike
from forgetkit.train import TrainedModel

NEURIPS_INPUTS = frozenset({"forget", "retain", "validation"})


def as_neurips_unlearning(
    method: UnlearningMethod | str,
    *,
    device: DeviceLike = None,
    seed: int = 0,
    nonmember: Any = None,
    record: Mapping[str, Any] | None = None,
    trained: TrainedModel | None = None,
) -> Callable[[nn.Module, Any, Any, Any], nn.Module]:
    """Wrap a method as ``unlearning(net, retain, forget, validation) -> net``.

    That is the contract of the NeurIPS 2023 Machine Unlearning Challenge (three
    ``DataLoader`` s in, the unlearned network out), so challenge solutions and evaluation
    code can call forgetkit methods and vice versa. The caller's network is not modified.

    ``method`` is an instance or a registered name. The challenge supplies forget, retain
    and validation only; a method that needs more gets it here, once, as keyword arguments:
    ``nonmember=`` data, a ``record=``, or the original's ``trained=``
    :class:`~forgetkit.train.TrainedModel` (whose record fills in, explicit keys winning).
    Whether the method can run is checked now, at wrap time, with the same check
    ``unlearn`` applies, and the refusal names the missing input.

    Parameters
    ----------
    method
        The method, or its registered name.
    device
        Where to run it (default: wherever the network is).
    seed
        Seed of the method's random draws.
    nonmember
        Data the model never saw, for methods that need non-members.
    record
        Training-time record for methods that need one.
    trained
        The original's TrainedModel, whose record fills in what ``record`` lacks.
    """
    if isinstance(method, str):
        method = get_method(method)
    elif isinstance(method, type):
        raise TypeError(f"as_neurips_unlearning: pass an instance, e.g. {method.__name__}(), or "
                        f"a registered name, not the class {method.__name__}")  # fmt: skip
    if not isinstance(method, UnlearningMethod):
        raise TypeError(f"as_neurips_unlearning: method must be an UnlearningMethod or a "
                        f"registered name, got {type(method).__name__}")  # fmt: skip
    if trained is not None and not isinstance(trained, TrainedModel):
        raise TypeError(f"as_neurips_unlearning: trained must be a TrainedModel, got "
                        f"{type(trained).__name__}")  # fmt: skip
    full = {**(method.record_from(trained) if trained is not None else {}), **(record or {})}
    full_record = full if (trained is not None or record is not None) else None
    given = set(NEURIPS_INPUTS) | ({"nonmember"} if nonmember is not None else set())
    given |= {"record"} if full_record is not None else set()
    try:
        method.check_inputs(given, full_record)
    except ValueError as err:
        raise ValueError(
            f"as_neurips_unlearning cannot feed {method.name}: {err}. The challenge's "
            f"contract supplies forget, retain and validation only; pass the rest to the "
            f"adapter: as_neurips_unlearning(method, nonmember=..., record=..., trained=...)"
        ) from None

    def unlearning(net: nn.Module, retain: Any, forget: Any, validation: Any) -> nn.Module:
        return method.unlearn(
            net, forget, retain, validation=validation, nonmember=nonmember,
            record=full_record, device=device, seed=seed,
        ).model  # fmt: skip

    unlearning.__name__ = f"{method.name}_unlearning"
    return unlearning
