"""Adapters to contracts other code already speaks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from forgetkit.data import Samples
from forgetkit.methods.base import UnlearningMethod, get_method
from forgetkit.runtime import DeviceLike
from forgetkit.train import TrainedModel

NEURIPS_INPUTS = frozenset({"forget", "retain", "validation"})
# The challenge's loaders yield dicts; the image is under "image", the label under
# "age_group" (google-deepmind/unlearning_evaluation @ ffae0ff, surf.py, lines 84-91, and
# main.py, lines 86-88, where the shipped unlearning function reads them).
NEURIPS_INPUT_KEY = "image"
NEURIPS_LABEL_KEY = "age_group"


def _read_loader(data: Any, what: str, input_key: str, label_key: str | None) -> Any:
    """The loader's samples, taking dict batches' inputs and labels from ``input_key`` and
    ``label_key`` (``None``: the challenge's keys where the batch has ``age_group``); what
    else comes goes to ``Samples.coerce`` as it is (pairs, and dicts with its usual keys)."""
    dataset = torch.utils.data.Dataset
    if (isinstance(data, dataset) and not isinstance(data, torch.utils.data.TensorDataset)
            and hasattr(data, "__len__")):  # fmt: skip
        data = torch.utils.data.DataLoader(data, batch_size=1024)  # a map-style dataset
    if not isinstance(data, torch.utils.data.DataLoader):
        return data
    xs, ys = [], []
    for batch in data:
        if not isinstance(batch, dict):
            return data  # (inputs, labels) batches: Samples.coerce reads them
        key = label_key
        if key is None:
            if NEURIPS_LABEL_KEY not in batch:
                return data  # Samples.coerce detects label, labels, target, ...
            key = NEURIPS_LABEL_KEY
        missing = [k for k in (input_key, key) if k not in batch]
        if missing:
            raise ValueError(
                f"as_neurips_unlearning: the {what} loader yields dicts with keys "
                f"{sorted(map(str, batch))}, without {missing}; pass input_key= and "
                f"label_key= (the challenge's are {NEURIPS_INPUT_KEY!r} and "
                f"{NEURIPS_LABEL_KEY!r})"
            )
        xs.append(torch.as_tensor(batch[input_key]))
        ys.append(torch.as_tensor(batch[key]))
    if not xs:
        raise ValueError(f"as_neurips_unlearning: the {what} loader yielded no batches")
    return Samples.coerce((torch.cat(xs), torch.cat(ys)), what)


def as_neurips_unlearning(
    method: UnlearningMethod | str,
    *,
    device: DeviceLike = None,
    seed: int = 0,
    nonmember: Any = None,
    record: Mapping[str, Any] | None = None,
    trained: TrainedModel | None = None,
    label_key: str | None = None,
    input_key: str = NEURIPS_INPUT_KEY,
    vary_seed: bool = True,
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

    The challenge's loaders yield dicts whose label is under ``age_group`` and image under
    ``image``: dict batches that hold ``age_group`` are read so by default; other dicts
    need one of the usual label keys (``label``, ``labels``, ``target``, ...) or an explicit
    ``label_key`` (and ``input_key``). Loaders of ``(inputs, labels)`` pairs work as they
    are.

    The challenge scores N calls of one function on one original, and only the method's
    randomness tells the N unlearned models apart. So call k (from 0) of the returned
    function runs with ``seed + k``: with unshuffled loaders a fixed seed would give N
    identical models, which the challenge's spread guard scores at the cap (F = 0).
    ``vary_seed=False`` fixes the seed for every call. A method that draws nothing at random
    (SSD) gives identical models either way. The seeds used so far are in the function's
    ``seeds`` attribute.

    Parameters
    ----------
    method
        The method, or its registered name.
    device
        Where to run it (default: wherever the network is).
    seed
        Seed of the first call's random draws; call k uses ``seed + k`` (``vary_seed``).
    nonmember
        Data the model never saw, for methods that need non-members.
    record
        Training-time record for methods that need one.
    trained
        The original's TrainedModel, whose record fills in what ``record`` lacks.
    label_key
        The label's key in dict batches. ``None`` (default): the challenge's
        ``"age_group"`` where a batch has it, else one of the usual keys.
    input_key
        The input's key in dict batches read by label key (the challenge's ``"image"``).
    vary_seed
        Whether call k uses ``seed + k`` (default) or every call ``seed``.
    """
    if isinstance(method, str):
        method = get_method(method)
    elif isinstance(method, type):
        raise TypeError(f"as_neurips_unlearning: pass an instance, e.g. {method.__name__}(), or "
                        f"a registered name, not the class {method.__name__}")  # fmt: skip
    if not isinstance(method, UnlearningMethod):
        raise TypeError(f"as_neurips_unlearning: method must be an UnlearningMethod or a "
                        f"registered name, got {type(method).__name__}")  # fmt: skip
    for name, key in (("label_key", label_key), ("input_key", input_key)):
        if key is not None and not isinstance(key, str):
            raise TypeError(f"as_neurips_unlearning: {name} must be a string, got "
                            f"{type(key).__name__}")  # fmt: skip
    if not isinstance(vary_seed, bool):
        raise TypeError(f"as_neurips_unlearning: vary_seed must be True or False, got "
                        f"{vary_seed!r}")  # fmt: skip
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

    seeds: list[int] = []

    def unlearning(net: nn.Module, retain: Any, forget: Any, validation: Any) -> nn.Module:
        call_seed = seed + len(seeds) if vary_seed else seed
        inputs = {name: _read_loader(data, name, input_key, label_key) for name, data in
                  (("retain", retain), ("forget", forget), ("validation", validation))}  # fmt: skip
        model = method.unlearn(
            net, inputs["forget"], inputs["retain"], validation=inputs["validation"],
            nonmember=nonmember, record=full_record, device=device, seed=call_seed,
        ).model  # fmt: skip
        seeds.append(call_seed)
        return model

    unlearning.__name__ = f"{method.name}_unlearning"
    unlearning.seeds = seeds  # type: ignore[attr-defined]
    return unlearning
