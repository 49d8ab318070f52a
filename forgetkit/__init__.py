"""forgetkit: selective forgetting in deep networks, implemented faithfully and measured honestly.

The public API in one place::

    from forgetkit import load_dataset, forget_class, ModelConfig, TrainConfig
    from forgetkit import train_original, retrain, get_method, evaluate
"""

from forgetkit.data import ImageDataset, Samples, load_dataset
from forgetkit.methods import (
    UnlearningMethod,
    UnlearnResult,
    UtilityWarning,
    as_neurips_unlearning,
    available_methods,
    get_method,
)
from forgetkit.metrics import evaluate, gap_to_oracle, summarize
from forgetkit.models import ModelConfig, build_model, reinitialize
from forgetkit.runtime import resolve_device, set_progress
from forgetkit.scenarios import (
    ForgetTask,
    forget_class,
    forget_identity,
    forget_indices,
    forget_injected,
    forget_random,
    forget_subclass,
)
from forgetkit.train import (
    TrainConfig,
    TrainedModel,
    TrainingRecorder,
    retrain,
    train_model,
    train_original,
)

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (keep it a plain literal)

__all__ = [
    "ForgetTask",
    "ImageDataset",
    "ModelConfig",
    "Samples",
    "TrainConfig",
    "TrainedModel",
    "TrainingRecorder",
    "UnlearnResult",
    "UnlearningMethod",
    "UtilityWarning",
    "__version__",
    "as_neurips_unlearning",
    "available_methods",
    "build_model",
    "evaluate",
    "forget_class",
    "forget_identity",
    "forget_indices",
    "forget_injected",
    "forget_random",
    "forget_subclass",
    "gap_to_oracle",
    "get_method",
    "load_dataset",
    "reinitialize",
    "resolve_device",
    "retrain",
    "set_progress",
    "summarize",
    "train_model",
    "train_original",
]
