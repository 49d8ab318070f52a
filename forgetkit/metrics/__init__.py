"""Measuring forgetting: accuracies, membership-inference attacks, distances to the oracle,
relearn time and ToW, and :func:`evaluate`, which reports them all beside the retrained
oracle. :data:`METRIC_CARDS` says what each number means and where it comes from."""

from forgetkit.metrics.attacks import (
    ShadowModelAttack,
    forgetting_rate,
    mia_entropy_lr,
    mia_entropy_lr_from_entropy,
    mia_entropy_svc,
    mia_entropy_svc_from_entropy,
    mia_loss_cv,
    mia_loss_cv_from_losses,
    shadow_features,
)
from forgetkit.metrics.divergence import activation_distance, js_divergence, l1_distance, model_js
from forgetkit.metrics.predictions import (
    accuracy,
    accuracy_from_logits,
    entropy,
    error,
    losses_from_logits,
    per_sample_loss,
    predict,
    probabilities,
)
from forgetkit.metrics.relearn import (
    relearn_curve,
    relearn_threshold,
    relearn_time,
    relearn_time_from_curve,
)
from forgetkit.metrics.report import (
    COLUMNS,
    DEFAULT_METRICS,
    METRIC_CARDS,
    evaluate,
    gap_to_oracle,
    summarize,
)
from forgetkit.metrics.tug_of_war import tow

__all__ = [
    "COLUMNS",
    "DEFAULT_METRICS",
    "METRIC_CARDS",
    "ShadowModelAttack",
    "accuracy",
    "accuracy_from_logits",
    "activation_distance",
    "entropy",
    "error",
    "evaluate",
    "forgetting_rate",
    "gap_to_oracle",
    "js_divergence",
    "l1_distance",
    "losses_from_logits",
    "mia_entropy_lr",
    "mia_entropy_lr_from_entropy",
    "mia_entropy_svc",
    "mia_entropy_svc_from_entropy",
    "mia_loss_cv",
    "mia_loss_cv_from_losses",
    "model_js",
    "per_sample_loss",
    "predict",
    "probabilities",
    "relearn_curve",
    "relearn_threshold",
    "relearn_time",
    "relearn_time_from_curve",
    "shadow_features",
    "summarize",
    "tow",
]
