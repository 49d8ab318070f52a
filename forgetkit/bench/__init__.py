"""The benchmark engine: ``forgetkit bench run CONFIG`` and the same as Python functions.

A run is a grid of scenario x method x seed from a small TOML config (:mod:`.config`),
cut into content-keyed cells stored atomically as they finish (:mod:`.engine`), so a killed
run resumes where it stopped; cells run in this process, in a local process pool, or on
Ray. :mod:`.gold` adds the per-example gold standard (forget quality, KLOM) over many
models, and :mod:`.report` the standard figures.
"""

from forgetkit.bench.config import BenchConfig, ConfigError, load_config, parse_config
from forgetkit.bench.engine import (
    COLUMNS,
    EXECUTORS,
    Cell,
    collect,
    load_results,
    plan,
    run,
    task_for,
)
from forgetkit.bench.engine import summary as summarize_results

__all__ = [
    "COLUMNS",
    "EXECUTORS",
    "BenchConfig",
    "Cell",
    "ConfigError",
    "collect",
    "load_config",
    "load_results",
    "parse_config",
    "plan",
    "run",
    "summarize_results",
    "task_for",
]
