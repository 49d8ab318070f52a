"""The benchmark's declarative config: what to run, checked completely before anything runs.

A config is a small TOML file (``configs/ci.toml`` and ``configs/paper.toml`` ship with the
package; ``load_config("ci")`` reads the shipped one). Every key is checked against the
allowed ones, every method and hyperparameter against the registry, every scenario kind
against :mod:`forgetkit.scenarios`, and the training recipe against
:class:`~forgetkit.train.TrainConfig`, so that a typo fails at once, naming the key and the
allowed values, and never after an hour of training.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = ("ci", "paper")
SCENARIO_KINDS: dict[str, tuple[str, ...]] = {  # kind -> its arguments besides data and seed
    "class": ("cls",),
    "subclass": ("cls", "n"),
    "random": ("n",),
    "identity": ("person",),
}
DATASETS = ("mnist", "olivetti", "cifar10", "cifar10-jpeg15k")
GOLD_SCORES = ("forget_quality", "klom", "ulira")
_SECTIONS = {
    "bench": {"name", "device", "threads", "seeds", "oracle_seeds"},
    "data": {"dataset", "train", "test", "seed"},
    "model": {"name", "options"},
    "train": None,  # checked by TrainConfig
    "scenario": None,  # a list, checked per entry
    "methods": None,  # method -> hyperparameters, checked by the registry
    "gold": {"n_models", "scores", "scenarios"},
    "tune": {"trials", "seed", "split_offset", "space"},
}


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key and the allowed values."""


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class MethodSpec:
    label: str  # the name in the results (one method may appear twice with other settings)
    method: str  # the registry name
    hyperparameters: dict[str, Any]


@dataclass(frozen=True)
class BenchConfig:
    name: str
    device: str
    threads: int
    seeds: tuple[int, ...]
    oracle_seeds: tuple[int, ...]
    data: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    scenarios: tuple[Scenario, ...]
    methods: tuple[MethodSpec, ...]
    gold: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)  # scenario -> label -> best values
    source: str = ""

    def hyperparameters(self, label: str, scenario: str | None = None) -> dict[str, Any]:
        """A method's hyperparameters in a scenario: the config's, then the tuned ones."""
        spec = next(m for m in self.methods if m.label == label)
        tuned = self.tuned.get(scenario, {}).get(label, {}) if scenario else {}
        return {**spec.hyperparameters, **tuned}

    def as_dict(self) -> dict[str, Any]:
        """Plain values (what a worker process receives and what enters the cell keys)."""
        return {
            "name": self.name, "device": self.device, "threads": self.threads,
            "seeds": list(self.seeds), "oracle_seeds": list(self.oracle_seeds),
            "data": dict(self.data), "model": dict(self.model), "train": dict(self.train),
            "scenarios": [vars(s) for s in self.scenarios],
            "methods": [vars(m) for m in self.methods], "gold": dict(self.gold),
            "tune": dict(self.tune), "tuned": dict(self.tuned),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchConfig:
        return cls(
            d["name"], d["device"], d["threads"], tuple(d["seeds"]), tuple(d["oracle_seeds"]),
            d["data"], d["model"], d["train"], tuple(Scenario(**s) for s in d["scenarios"]),
            tuple(MethodSpec(**m) for m in d["methods"]), d["gold"], d.get("tune", {}),
            d.get("tuned", {}),
        )  # fmt: skip


def load_config(source: str | Path) -> BenchConfig:
    """A checked config from a TOML file, or a shipped one by name (``"ci"``, ``"paper"``)."""
    if isinstance(source, str) and source in SHIPPED:
        text = resources.files("forgetkit.bench").joinpath(f"configs/{source}.toml").read_text()
        where = f"shipped config {source!r}"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config {str(source)!r} is neither a file nor a shipped config "
                              f"{list(SHIPPED)}")  # fmt: skip
        text, where = path.read_text(), str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from None
    return parse_config(raw, where)


def _keys(section: str, got: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in [{section}]; allowed: "
                          f"{sorted(allowed)}")  # fmt: skip


def _int_list(value: Any, key: str, where: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):  # fmt: skip
        raise ConfigError(f"{where}: {key} must be a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {key} has duplicates: {value!r}")
    return tuple(value)


def parse_config(raw: dict[str, Any], where: str = "config") -> BenchConfig:
    """Check a parsed config (a dict, as from TOML) and return it as a :class:`BenchConfig`."""
    from forgetkit.methods import available_methods, get_method
    from forgetkit.models import MODELS
    from forgetkit.train import TrainConfig

    _keys("top level", raw, set(_SECTIONS), where)
    for section, allowed in _SECTIONS.items():
        if allowed is not None and section in raw:
            if not isinstance(raw[section], dict):
                raise ConfigError(f"{where}: [{section}] must be a table")
            _keys(section, raw[section], allowed, where)
    bench = raw.get("bench", {})
    device = bench.get("device", "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"{where}: bench.device must be 'cpu' or 'cuda[:N]', got {device!r}")
    threads = bench.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"{where}: bench.threads must be an integer >= 1, got {threads!r}")

    data = dict(raw.get("data", {}))
    if data.get("dataset") not in DATASETS:
        raise ConfigError(f"{where}: data.dataset must be one of {list(DATASETS)}, got "
                          f"{data.get('dataset')!r}")  # fmt: skip
    for key in ("train", "test"):
        if key in data and not _is_int(data[key], 1):
            raise ConfigError(f"{where}: data.{key} must be an integer >= 1 (a sample count), "
                              f"got {data[key]!r}")  # fmt: skip
    if "seed" in data and not _is_int(data["seed"], 0):
        raise ConfigError(f"{where}: data.seed must be an integer >= 0, got {data['seed']!r}")
    model = {"name": raw.get("model", {}).get("name"),
             "options": raw.get("model", {}).get("options", {})}  # fmt: skip
    if model["name"] not in MODELS:
        raise ConfigError(f"{where}: model.name must be one of {sorted(MODELS)}, got "
                          f"{model['name']!r}")  # fmt: skip
    if not isinstance(model["options"], dict):
        raise ConfigError(f"{where}: [model.options] must be a table, got {model['options']!r}")
    model["options"] = dict(model["options"])
    _check_model(model["name"], model["options"], data["dataset"], where)
    train = dict(raw.get("train", {}))
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    _keys("train", train, allowed, where)
    try:
        TrainConfig(**train)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: [train]: {err}; allowed keys: {sorted(allowed)}") from None

    scenarios = []
    for i, entry in enumerate(raw.get("scenario", [])):
        entry = dict(entry)
        name, kind = entry.pop("name", None), entry.pop("kind", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: [[scenario]] number {i + 1} needs a name (a "
                              f"non-empty string), got {name!r}")  # fmt: skip
        if kind not in SCENARIO_KINDS:
            raise ConfigError(f"{where}: scenario {name!r}: kind must be one of "
                              f"{sorted(SCENARIO_KINDS)}, got {kind!r}")  # fmt: skip
        _keys(f"scenario {name}", entry, set(SCENARIO_KINDS[kind]), where)
        missing = sorted(set(SCENARIO_KINDS[kind]) - set(entry))
        if missing:
            raise ConfigError(f"{where}: scenario {name!r} ({kind}) lacks {missing}; its keys: "
                              f"{sorted(SCENARIO_KINDS[kind])}")  # fmt: skip
        _check_scenario(name, kind, entry, data, where)
        scenarios.append(Scenario(name, kind, entry))
    if not scenarios:
        raise ConfigError(f"{where}: no [[scenario]] given")
    names = [s.name for s in scenarios]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{where}: scenario names must be unique; given more than once: "
                          f"{twice}")  # fmt: skip

    methods = []
    for label, hp in raw.get("methods", {}).items():
        hp = dict(hp)
        name = hp.pop("method", label)
        if name not in available_methods():
            raise ConfigError(f"{where}: unknown method {name!r} (methods.{label}); "
                              f"available: {available_methods()}")  # fmt: skip
        if name == "retrain":
            raise ConfigError(f"{where}: methods.{label}: retraining is the oracle, run for "
                              "every scenario; do not list it as a method")  # fmt: skip
        try:
            get_method(name, **hp)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: methods.{label}: {err}") from None
        methods.append(MethodSpec(label, name, hp))
    if not methods:
        raise ConfigError(f"{where}: no [methods.NAME] given")

    gold = dict(raw.get("gold", {}))
    n_models = gold.setdefault("n_models", 0)
    # At least 8 models per side; the floor retrains as many again and scores them against these.
    if not isinstance(n_models, int) or isinstance(n_models, bool) or n_models < 0 or (
            0 < n_models < 8):  # fmt: skip
        raise ConfigError(f"{where}: gold.n_models must be 0 (off) or an integer >= 8, got "
                          f"{n_models!r}")  # fmt: skip
    scores = gold.setdefault("scores", ["forget_quality", "klom"])  # U-LiRA when asked
    bad = sorted(set(scores) - set(GOLD_SCORES)) if isinstance(scores, list) else scores
    if bad:
        raise ConfigError(f"{where}: gold.scores must be a list from {list(GOLD_SCORES)}, "
                          f"got {scores!r}")  # fmt: skip
    names = [s.name for s in scenarios]
    chosen = gold.setdefault("scenarios", names)  # the per-example scores' scenarios
    if not isinstance(chosen, list) or not chosen or set(chosen) - set(names):
        raise ConfigError(f"{where}: gold.scenarios must be a non-empty list of scenario "
                          f"names from {names}, got {chosen!r}")  # fmt: skip
    tune = _check_tune(dict(raw.get("tune", {})), {m.label: m.method for m in methods}, where)
    return BenchConfig(
        name=str(bench.get("name", "bench")),
        device=device,
        threads=threads,
        seeds=_int_list(bench.get("seeds", [0]), "bench.seeds", where),
        oracle_seeds=_int_list(bench.get("oracle_seeds", [0, 1, 2]), "bench.oracle_seeds", where),
        data=data,
        model=model,
        train=train,
        scenarios=tuple(scenarios),
        methods=tuple(methods),
        gold=gold,
        tune=tune,
        source=where,
    )


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_scenario(
    name: str, kind: str, args: dict[str, Any], data: dict[str, Any], where: str
) -> None:
    """A scenario's arguments against the dataset, before anything trains: a class or a
    person the dataset has, a forget-set size the training set can hold."""
    from forgetkit.data import SOURCES

    classes = SOURCES[data["dataset"]].classes
    at = f"{where}: scenario {name!r} ({kind})"
    for key in ("cls", "person"):
        if key not in args:
            continue
        value = args[key]
        ok = (_is_int(value, 0) and value < len(classes)) or (
            key == "cls" and isinstance(value, str) and value in classes)  # fmt: skip
        if not ok:
            names = " or a class name" if key == "cls" else ""
            raise ConfigError(f"{at}: {key} must be an integer in 0..{len(classes) - 1}{names} "
                              f"of {data['dataset']}, got {value!r}")  # fmt: skip
    if "n" in args:
        n, train = args["n"], data.get("train")
        ok = _is_int(n, 1) or (isinstance(n, float) and 0 < n < 1)
        if not ok or (train is not None and _is_int(n, 1) and n >= train):
            limit = f" below data.train ({train})" if train is not None else ""
            raise ConfigError(f"{at}: n must be an integer >= 1{limit} (a count) or a float "
                              f"in (0, 1) (a fraction), got {n!r}")  # fmt: skip


def _check_model(name: str, options: dict[str, Any], dataset: str, where: str) -> None:
    """``[model.options]`` against the architecture's keyword arguments, and built once (on
    the dataset's channels) so a bad value fails here, not in the first training cell."""
    import inspect

    from forgetkit.data import SOURCES
    from forgetkit.models import MODELS, ModelConfig, build_model

    factory = MODELS[name]
    allowed = sorted(p for p in inspect.signature(factory).parameters
                     if p not in ("in_shape", "num_classes"))  # fmt: skip
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in [model.options] of model "
                          f"{name!r}; allowed: {allowed}")  # fmt: skip
    channels = len(SOURCES[dataset].mean)
    try:
        build_model(ModelConfig(name, (channels, 32, 32), 2, options), seed=0)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{where}: [model.options] of model {name!r}: {err}; allowed keys: "
                          f"{allowed}") from None  # fmt: skip


def _check_tune(tune: dict[str, Any], methods: dict[str, str], where: str) -> dict[str, Any]:
    """``[tune]``: trials, seed, split_offset and ``space.LABEL.NAME = [low, high(, "log")]``."""
    from forgetkit.methods.base import _REGISTRY

    for key, default in (("trials", 8), ("seed", 0), ("split_offset", 1000)):
        value = tune.setdefault(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < (key == "trials"):
            raise ConfigError(f"{where}: tune.{key} must be a non-negative integer"
                              f"{' >= 1' if key == 'trials' else ''}, got {value!r}")  # fmt: skip
    space = tune.setdefault("space", {})
    for label, params in space.items():
        if label not in methods:
            raise ConfigError(f"{where}: tune.space.{label}: not a method of this config; "
                              f"methods: {sorted(methods)}")  # fmt: skip
        known = {f.name for f in dataclasses.fields(_REGISTRY[methods[label]].Hyperparameters)}
        for name, spec in params.items():
            if name not in known:
                raise ConfigError(f"{where}: tune.space.{label}.{name}: not a hyperparameter "
                                  f"of {methods[label]}; known: {sorted(known)}")  # fmt: skip
            ok = (isinstance(spec, list) and len(spec) in (2, 3)
                  and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec[:2])
                  and spec[0] < spec[1] and (len(spec) == 2 or spec[2] == "log")
                  and not (len(spec) == 3 and spec[0] <= 0))  # fmt: skip
            if not ok:
                raise ConfigError(f"{where}: tune.space.{label}.{name} must be [low, high] or "
                                  f"[low, high, \"log\"] with low < high (low > 0 for log), "
                                  f"got {spec!r}")  # fmt: skip
    return tune
