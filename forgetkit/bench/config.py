"""The benchmark's declarative config: what to run, checked completely before anything runs.

A config is a small TOML file (``configs/ci.toml`` and ``configs/paper.toml`` ship with the
package; ``load_config("ci")`` reads the shipped one). Every key is checked against the
allowed ones, every method and hyperparameter against the registry, every scenario kind
against :mod:`forgetkit.scenarios`, and the training recipe against
:class:`~forgetkit.train.TrainConfig`, so that a typo fails at once, naming the key and the
allowed values, and never after an hour of training.

Sections and keys:

* ``[bench]``: ``name``, ``device`` (``"cpu"``, ``"cuda[:N]"``), ``threads``, ``seeds``
  (one original and one unlearning run per seed), ``oracle_seeds`` (the retrained models).
* ``[data]``: ``dataset``, ``train`` and ``test`` (sample counts, stratified subsample),
  ``seed`` (of the subsample and the scenarios' draws).
* ``[model]``: ``name`` and ``[model.options]`` (keyword arguments of the architecture).
* ``[train]``: the fields of :class:`~forgetkit.train.TrainConfig`.
* ``[[scenario]]``: ``name``, ``kind`` (``class``, ``subclass``, ``random``, ``identity``)
  and its arguments (``cls``, ``n``, ``person``).
* ``[methods.LABEL]``: hyperparameters (``method = "..."`` when the label is not the
  registry name). The labels ``retrain`` (the oracle) and ``original`` (the model before
  unlearning, a row of every result) are reserved.
* ``[gold]`` and ``[tune]``: see :mod:`forgetkit.bench.gold` and :mod:`forgetkit.bench.tuning`.

Your own data and model
-----------------------
``data.dataset`` is a shipped dataset (``DATASETS``) or ``"module:function"``, and
``model.name`` a shipped architecture (``forgetkit.models.MODELS``), ``"module:Class"`` or
``"torchvision:NAME"``. The module is imported by its dotted name with the config file's
folder searched first, then ``sys.path`` (a config given as a dict to :func:`parse_config`
searches ``root`` if given, else ``sys.path`` only); worker processes import it the same way.

* ``"module:function"`` is called without arguments and returns either an
  :class:`~forgetkit.data.ImageDataset`, or a dict with ``"train"`` and ``"test"`` (each
  anything :meth:`~forgetkit.data.Samples.coerce` accepts: ``Samples``, an ``(x, y)`` pair
  of tensors, a ``Dataset`` or a ``DataLoader``; inputs of shape ``(N, C, H, W)``,
  integer labels) and ``"classes"`` (names in label order) or ``"num_classes"``, optionally
  ``"name"``. The data are used as given (no normalisation); ``data.train``, ``data.test``
  and the scenarios then apply as to a shipped dataset.
* ``"module:Class"`` (a class or any factory returning an ``nn.Module``) is called with
  ``[model.options]`` as keyword arguments, plus ``num_classes=`` and ``in_shape=(C, H, W)``
  when its signature names them (so ``[model.options]`` may not set those two). It must
  return one logit per class.
* ``"torchvision:NAME"`` is ``torchvision.models.get_model(NAME, weights=None,
  num_classes=..., **options)``: randomly initialised, never downloaded.

Before anything trains, the dataset is loaded and the model built and run on two training
samples; an unimportable module, a missing attribute, a function that returns something
else, a model that cannot be built with the options or whose output is not one logit per
class: each is a :class:`ConfigError` naming the file, the section, the key and the value.
Cell keys include a hash of the data and of the module's source file, so editing either
reruns the cells (a change in another module that it imports is not seen: rerun into a new
``--out``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
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
RESERVED_LABELS = ("retrain", "original")  # the oracle, and the model before unlearning
_SECTIONS = {
    "bench": {"name", "device", "threads", "seeds", "oracle_seeds"},
    "data": {"dataset", "train", "test", "seed"},
    "model": {"name", "options"},
    "train": None,  # checked by TrainConfig
    "scenario": None,  # a list, checked per entry
    "methods": None,  # method -> hyperparameters, checked by the registry
    "gold": {"n_models", "n_shadows", "scores", "scenarios"},
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
    root: str = ""  # the folder searched first for a user's "module:name" (the config's)

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
            "tune": dict(self.tune), "tuned": dict(self.tuned), "root": self.root,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchConfig:
        return cls(
            d["name"], d["device"], d["threads"], tuple(d["seeds"]), tuple(d["oracle_seeds"]),
            d["data"], d["model"], d["train"], tuple(Scenario(**s) for s in d["scenarios"]),
            tuple(MethodSpec(**m) for m in d["methods"]), d["gold"], d.get("tune", {}),
            d.get("tuned", {}), root=d.get("root", ""),
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
    root = None if isinstance(source, str) and source in SHIPPED else Path(source).parent
    return parse_config(raw, where, root=root)


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


def parse_config(
    raw: dict[str, Any], where: str = "config", *, root: str | Path | None = None
) -> BenchConfig:
    """Check a parsed config (a dict, as from TOML) and return it as a :class:`BenchConfig`.

    ``root`` is the folder searched first for a ``"module:name"`` dataset or model (for a
    config file, its folder); without it only ``sys.path`` is searched."""
    root_dir = str(Path(root).resolve()) if root is not None else ""
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
    if is_reference(data.get("dataset")):
        dataset = _checked_dataset(data["dataset"], root_dir, where)
    elif data.get("dataset") in DATASETS:
        dataset = None
    else:
        raise ConfigError(f"{where}: data.dataset must be one of {list(DATASETS)} or "
                          f"'module:function' (your own), got {data.get('dataset')!r}")  # fmt: skip
    for key in ("train", "test"):
        if key in data and not _is_int(data[key], 1):
            raise ConfigError(f"{where}: data.{key} must be an integer >= 1 (a sample count), "
                              f"got {data[key]!r}")  # fmt: skip
    if "seed" in data and not _is_int(data["seed"], 0):
        raise ConfigError(f"{where}: data.seed must be an integer >= 0, got {data['seed']!r}")
    model = {"name": raw.get("model", {}).get("name"),
             "options": raw.get("model", {}).get("options", {})}  # fmt: skip
    if not isinstance(model["options"], dict):
        raise ConfigError(f"{where}: [model.options] must be a table, got {model['options']!r}")
    model["options"] = dict(model["options"])
    if is_reference(model["name"]):
        if dataset is None:
            dataset = _shipped_dataset(data["dataset"])
        _check_own_model(model["name"], model["options"], dataset, root_dir, where)
    elif model["name"] in MODELS and "@" not in model["name"]:
        _check_model(model["name"], model["options"], data["dataset"], dataset, where)
    else:
        builtin = sorted(n for n in MODELS if "@" not in n)
        raise ConfigError(f"{where}: model.name must be one of {builtin}, 'module:Class' "
                          f"(your own) or 'torchvision:NAME', got {model['name']!r}")  # fmt: skip
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
        _check_scenario(name, kind, entry, data, dataset, where)
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
        if label in RESERVED_LABELS:
            raise ConfigError(f"{where}: [methods.{label}]: the label {label!r} is reserved "
                              f"(retrain: the oracle; original: the model before unlearning, "
                              f"a row of every result); name it otherwise and set "
                              f"method = {name!r}")  # fmt: skip
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
    shadows = gold.get("n_shadows")
    if shadows is not None and (not isinstance(shadows, int) or isinstance(shadows, bool)
                                or shadows < 4):  # fmt: skip
        raise ConfigError(f"{where}: gold.n_shadows (U-LiRA's shadow runs) must be an integer "
                          f">= 4, got {shadows!r}")  # fmt: skip
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
        root=root_dir,
    )


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_scenario(
    name: str, kind: str, args: dict[str, Any], data: dict[str, Any], dataset: Any, where: str
) -> None:
    """A scenario's arguments against the dataset, before anything trains: a class or a
    person the dataset has, a forget-set size the training set can hold."""
    from forgetkit.data import SOURCES

    classes = SOURCES[data["dataset"]].classes if dataset is None else dataset.classes
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


def _check_model(name: str, options: dict[str, Any], dataset: str, loaded: Any, where: str) -> None:
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
    shape = (len(SOURCES[dataset].mean), 32, 32) if loaded is None else loaded.image_shape
    try:
        build_model(ModelConfig(name, shape, 2, options), seed=0)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{where}: [model.options] of model {name!r}: {err}; allowed keys: "
                          f"{allowed}") from None  # fmt: skip


# --------------------------------------------------------------------------- your own


def is_reference(name: Any) -> bool:
    """Whether a dataset or model name points into code (``"module:name"``)."""
    return isinstance(name, str) and ":" in name


def import_reference(ref: str, root: str = "") -> Any:
    """The object that ``"module:name"`` names (``name`` may be dotted), importing the
    module with ``root`` searched first, then ``sys.path``. Raises ``ImportError`` or
    ``AttributeError`` saying what is missing."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ImportError(f"expected 'module:name', got {ref!r}")
    added = bool(root) and root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(root)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"module {module_name!r} ({getattr(module, '__file__', '?')}) "
                                 f"has no attribute {attr!r}")  # fmt: skip
        obj = getattr(obj, part)
    return obj


@functools.lru_cache(maxsize=4)
def load_own_dataset(ref: str, root: str = "") -> Any:
    """The :class:`~forgetkit.data.ImageDataset` of a ``"module:function"`` dataset (see the
    module docstring for what the function returns); cached per process."""
    from forgetkit.data import ImageDataset, Samples

    fn = import_reference(ref, root)
    if not callable(fn):
        raise TypeError(f"{ref!r} is a {type(fn).__name__}, not a function")
    out = fn()
    if isinstance(out, ImageDataset):
        return out
    expected = ("an ImageDataset or a dict with 'train', 'test' and 'classes' (or "
                "'num_classes')")  # fmt: skip
    if not isinstance(out, dict) or not {"train", "test"} <= set(out):
        raise TypeError(f"{ref}() returned {type(out).__name__}; expected {expected}")
    unknown = sorted(set(out) - {"train", "test", "classes", "num_classes", "name"})
    if unknown:
        raise TypeError(f"{ref}() returned unknown key(s) {unknown}; expected {expected}")
    train = Samples.coerce(out["train"], f"{ref}()['train']").to("cpu")
    test = Samples.coerce(out["test"], f"{ref}()['test']").to("cpu")
    if "classes" in out:
        classes = tuple(str(c) for c in out["classes"])
    elif isinstance(out.get("num_classes"), int) and not isinstance(out["num_classes"], bool):
        classes = tuple(str(i) for i in range(out["num_classes"]))
    else:
        raise TypeError(f"{ref}() must give 'classes' (names) or 'num_classes' (an int); "
                        f"got keys {sorted(out)}")  # fmt: skip
    if len(classes) < 2:
        raise ValueError(f"{ref}(): needs at least 2 classes, got {len(classes)}")
    for part, samples in (("train", train), ("test", test)):
        if samples.x.dim() != 4:
            raise ValueError(f"{ref}()['{part}']: inputs must have shape (N, C, H, W), got "
                             f"{tuple(samples.x.shape)}")  # fmt: skip
        if len(samples) and (int(samples.y.min()) < 0 or int(samples.y.max()) >= len(classes)):
            raise ValueError(f"{ref}()['{part}']: labels must lie in 0..{len(classes) - 1}, "
                             f"got {int(samples.y.min())}..{int(samples.y.max())}")  # fmt: skip
    if tuple(train.x.shape[1:]) != tuple(test.x.shape[1:]):
        raise ValueError(f"{ref}(): train inputs {tuple(train.x.shape[1:])} and test inputs "
                         f"{tuple(test.x.shape[1:])} differ in shape")  # fmt: skip
    channels = int(train.x.shape[1])
    return ImageDataset(name=str(out.get("name", ref)), train=train, test=test, classes=classes,
                        mean=(0.0,) * channels, std=(1.0,) * channels, exact=True,
                        note=f"the user's own data, from {ref}()")  # fmt: skip


def _source_digest(obj: Any) -> str:
    """A hash of the file that defines ``obj`` (its module's source)."""
    try:
        path = inspect.getsourcefile(inspect.getmodule(obj) or obj)
        text = Path(path).read_bytes() if path else b""
    except (TypeError, OSError):
        text = b""
    return hashlib.sha256(text).hexdigest()[:12]


def own_model_factory(ref: str, root: str = ""):
    """``(factory, digest)``: a builder ``factory(in_shape, num_classes, **options)`` for a
    ``"module:Class"`` or ``"torchvision:NAME"`` model, and a hash of its code."""
    if ref.startswith("torchvision:"):
        import torchvision

        arch = ref.partition(":")[2]
        if arch not in torchvision.models.list_models():
            raise ImportError(f"torchvision {torchvision.__version__} has no model {arch!r}; "
                              f"see torchvision.models.list_models()")  # fmt: skip

        def build_torchvision(in_shape, num_classes, **options):
            return torchvision.models.get_model(arch, weights=None, num_classes=num_classes,
                                                **options)  # fmt: skip

        return build_torchvision, f"torchvision-{torchvision.__version__}"
    obj = import_reference(ref, root)
    if not callable(obj):
        raise TypeError(f"{ref!r} is a {type(obj).__name__}, not a class or function")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}

    def build_own(in_shape, num_classes, **options):
        extra = {k: v for k, v in (("num_classes", num_classes), ("in_shape", tuple(in_shape)))
                 if k in params}  # fmt: skip
        return obj(**options, **extra)

    return build_own, _source_digest(obj)


def register_model(ref: str, root: str = "") -> str:
    """Put a user's model into ``forgetkit.models.MODELS`` and return the name to build
    it by: ``ref@<hash of its code>``, so checkpoints of edited code are not reused."""
    from forgetkit.models import MODELS

    factory, digest = own_model_factory(ref, root)
    name = f"{ref}@{digest}"
    MODELS.setdefault(name, factory)
    return name


def _fail(where: str, section: str, key: str, value: Any, err: BaseException) -> ConfigError:
    return ConfigError(f"{where}: [{section}] {key} = {value!r}: {type(err).__name__}: {err}")


def _checked_dataset(ref: str, root: str, where: str) -> Any:
    try:
        return load_own_dataset(ref, root)
    except Exception as err:  # the user's code may raise anything: name it and the key
        raise _fail(where, "data", "dataset", ref, err) from None


def _shipped_dataset(name: str) -> Any:
    from forgetkit.data import load_dataset

    return load_dataset(name)


def _check_own_model(
    ref: str, options: dict[str, Any], dataset: Any, root: str, where: str
) -> None:
    """Build a user's model with its options and run it on two training samples: it must
    give one logit per class of the dataset."""
    import torch

    if "weights" in options and ref.startswith("torchvision:"):
        raise ConfigError(f"{where}: [model.options] weights = {options['weights']!r}: "
                          "torchvision models are built untrained (weights=None); forgetkit "
                          "never downloads")  # fmt: skip
    reserved = sorted({"num_classes", "in_shape"} & set(options))
    if reserved:
        raise ConfigError(f"{where}: [model.options] {reserved} come from the data; remove "
                          f"them (model.name = {ref!r})")  # fmt: skip
    try:
        factory, _ = own_model_factory(ref, root)
    except Exception as err:
        raise _fail(where, "model", "name", ref, err) from None
    if not ref.startswith("torchvision:"):
        try:
            params = inspect.signature(import_reference(ref, root)).parameters
        except (TypeError, ValueError):
            params = {}
        if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            allowed = sorted(set(params) - {"num_classes", "in_shape", "self"})
            unknown = sorted(set(options) - set(allowed))
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {unknown} in [model.options] of "
                                  f"model {ref!r}; allowed: {allowed}")  # fmt: skip
    try:
        model = factory(dataset.image_shape, dataset.num_classes, **options)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"returned a {type(model).__name__}, not a torch.nn.Module")
        x = dataset.train.x[:2].float()
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as err:
        raise ConfigError(f"{where}: [model] name = {ref!r} with [model.options] {options}: "
                          f"{type(err).__name__}: {err}") from None  # fmt: skip
    want = (len(x), dataset.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{where}: [model] name = {ref!r}: on inputs of shape "
                          f"{tuple(x.shape)} it returns {got}; expected {want} (one logit per "
                          f"class of data.dataset = {dataset.name!r}, "
                          f"{dataset.num_classes} classes)")  # fmt: skip


def own_fingerprint(config: BenchConfig) -> dict[str, str] | None:
    """What a run on one's own dataset or model depends on beyond the config's strings: the
    data's content hash and the model code's hash (None for shipped data and models)."""
    data, model = config.data["dataset"], config.model["name"]
    out = {}
    if is_reference(data):
        out["data"] = load_own_dataset(data, config.root).fingerprint
    if is_reference(model):
        out["model"] = register_model(model, config.root)
    return out or None


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
