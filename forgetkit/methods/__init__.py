"""Unlearning methods behind one interface: ``get_method(name).unlearn(model, forget, ...)``."""

from forgetkit.methods.adapters import as_neurips_unlearning
from forgetkit.methods.base import (
    ForgetData,
    UnlearningMethod,
    UnlearnResult,
    UtilityWarning,
    available_methods,
    get_method,
    register,
)
from forgetkit.methods.baselines import Finetune, NegGrad, Retrain
from forgetkit.methods.fisher_forgetting import FisherForgetting
from forgetkit.methods.forsaken import Forsaken
from forgetkit.methods.jit import JiT
from forgetkit.methods.lcodec import LCodec
from forgetkit.methods.mnemonic import MnemonicCodes, MnemonicUnlearning
from forgetkit.methods.scrub import SCRUB
from forgetkit.methods.ssd import SSD

__all__ = [
    "SCRUB",
    "SSD",
    "Finetune",
    "FisherForgetting",
    "ForgetData",
    "Forsaken",
    "JiT",
    "LCodec",
    "MnemonicCodes",
    "MnemonicUnlearning",
    "NegGrad",
    "Retrain",
    "UnlearnResult",
    "UnlearningMethod",
    "UtilityWarning",
    "as_neurips_unlearning",
    "available_methods",
    "get_method",
    "register",
]
