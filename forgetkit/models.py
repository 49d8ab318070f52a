"""The networks the chapters train, built by name from a :class:`ModelConfig`.

All models take normalised NCHW images and return logits. Pooling before the classifier is
adaptive, so every model accepts MNIST's 28x28, CIFAR's 32x32 or faces at 32 or 64 pixels.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from forgetkit.runtime import seeded


@dataclass(frozen=True)
class ModelConfig:
    """What to build: an architecture name, the input shape, the classes and options.

    Parameters
    ----------
    name
        Architecture name (one of :func:`build_model`'s models).
    in_shape
        Input shape, (channels, height, width).
    num_classes
        Number of outputs.
    options
        Architecture options (``width``, ``batch_norm``, ...), passed to its constructor.
    """

    name: str
    in_shape: tuple[int, int, int]
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"unknown model {self.name!r}; choose one of {sorted(MODELS)}")
        object.__setattr__(self, "in_shape", tuple(int(s) for s in self.in_shape))
        object.__setattr__(self, "options", dict(sorted(self.options.items())))
        if len(self.in_shape) != 3:
            raise ValueError(f"in_shape must be (channels, height, width), got {self.in_shape}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    @classmethod
    def for_data(cls, name: str, data: Any, **options: Any) -> ModelConfig:
        """A config matching a dataset's (or task's) image shape and class count.

        Parameters
        ----------
        name
            Architecture name.
        data
            An :class:`~forgetkit.data.ImageDataset` or a
            :class:`~forgetkit.scenarios.ForgetTask`: what knows its class count. Samples
            or tensors do not (a set may miss a class), so for one's own data build
            ``ModelConfig(name, in_shape, num_classes)`` directly.
        **options
            Architecture options.
        """
        data = getattr(data, "data", data)  # a ForgetTask carries its dataset
        if not (hasattr(data, "image_shape") and hasattr(data, "num_classes")):
            raise TypeError(
                f"ModelConfig.for_data: data must be an ImageDataset or a ForgetTask (something "
                f"with image_shape and num_classes), got {type(data).__name__}; for your own "
                f"data use ModelConfig({name!r}, in_shape=(channels, height, width), "
                f"num_classes=...)"
            )
        return cls(name, data.image_shape, data.num_classes, options)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, for cache keys and stored results."""
        return {"name": self.name, "in_shape": list(self.in_shape),
                "num_classes": self.num_classes, "options": dict(self.options)}  # fmt: skip


def build_model(config: ModelConfig, *, seed: int | None = None) -> nn.Module:
    """A freshly initialised network; with ``seed``, the same weights on every call.

    Parameters
    ----------
    config
        What to build.
    seed
        Seed of the initial weights; None draws from torch's global generator.
    """
    factory = MODELS[config.name]
    if seed is None:
        return factory(config.in_shape, config.num_classes, **config.options)
    with seeded(seed, "cpu"):
        return factory(config.in_shape, config.num_classes, **config.options)


# --------------------------------------------------------------------------- architectures


def logistic(in_shape, num_classes) -> nn.Module:
    """Multinomial logistic regression on raw pixels."""
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


def mlp(in_shape, num_classes, hidden: tuple[int, ...] | int = (100,), activation: str = "relu"):
    """A fully connected network (e.g. L-CODEC's 784-100-10, Mnemonic's 784-1000-10 sigmoid)."""
    acts: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid,
                                                "tanh": nn.Tanh}  # fmt: skip
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(acts)}")
    sizes = [in_shape[0] * in_shape[1] * in_shape[2], *((hidden,) if isinstance(hidden, int)
                                                          else hidden)]  # fmt: skip
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), acts[activation]()]
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)


def small_cnn(in_shape, num_classes, width: float = 1.0) -> nn.Module:
    """Two conv-pool stages and a small classifier: fast enough for CPU chapters."""
    c1, c2, fc = (max(1, round(k * width)) for k in (16, 32, 128))
    return nn.Sequential(
        nn.Conv2d(in_shape[0], c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(c2 * 16, fc), nn.ReLU(), nn.Linear(fc, num_classes),
    )  # fmt: skip


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, bn: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=not bn)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AllCNN(nn.Module):
    """All-CNN :cite:p:`springenberg2015striving` as in Golatkar et al.'s code: 96/192
    filters scaled by ``width``, batch norm after every convolution, optional dropout,
    global average pool.

    Parameters
    ----------
    in_shape
        Shape of one input image, channels first.
    num_classes
        Number of outputs (logits).
    width
        Multiplier of the 96 and 192 filters of the original network.
    batch_norm
        Batch normalisation after every convolution, as in the official code.
    dropout
        Dropout (p = 0.5) after each strided block, as in the original paper.
    """

    def __init__(self, in_shape, num_classes, width: float = 1.0, batch_norm: bool = True,
                 dropout: bool = False) -> None:  # fmt: skip
        super().__init__()
        f1, f2 = int(96 * width), int(192 * width)
        drop = (lambda: nn.Dropout(0.5)) if dropout else nn.Identity
        self.features = nn.Sequential(
            _conv_bn_relu(in_shape[0], f1, 3, bn=batch_norm),
            _conv_bn_relu(f1, f1, 3, bn=batch_norm),
            _conv_bn_relu(f1, f2, 3, stride=2, bn=batch_norm),
            drop(),
            _conv_bn_relu(f2, f2, 3, bn=batch_norm),
            _conv_bn_relu(f2, f2, 3, bn=batch_norm),
            _conv_bn_relu(f2, f2, 3, stride=2, bn=batch_norm),
            drop(),
            _conv_bn_relu(f2, f2, 3, bn=batch_norm),
            _conv_bn_relu(f2, f2, 1, bn=batch_norm),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(f2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block :cite:p:`he2016identity`."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=True)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class ResNet18(nn.Module):
    """CIFAR-style pre-activation ResNet-18 with a width factor, as in Golatkar et al.'s code:
    the stem keeps 64 channels whatever the width, and the block convolutions carry biases
    (their code's second ``conv3x3`` definition, with ``bias=True``, is the one in effect)."""

    def __init__(self, in_shape, num_classes, width: float = 1.0, stem: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_shape[0], stem, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(stem)
        blocks, cin = [], stem
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            cout = int(planes * width)
            blocks.append(nn.Sequential(PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.pool(out), 1))


def vgg_small(in_shape, num_classes, width: float = 1.0) -> nn.Module:
    """A VGG-style stack (conv-BN-ReLU, four pooling stages) scaled by ``width``."""
    plan = (32, "M", 64, "M", 128, 128, "M", 256, 256, "M")
    layers: list[nn.Module] = []
    cin = in_shape[0]
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            cout = max(1, int(item * width))
            layers.append(_conv_bn_relu(cin, cout, 3))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "logistic": logistic,
    "mlp": mlp,
    "small_cnn": small_cnn,
    "allcnn": AllCNN,
    "resnet18": ResNet18,
    "vgg_small": vgg_small,
}


def reinitialize(model: nn.Module, *, seed: int) -> nn.Module:
    """Reset every parameter and buffer of every submodule, nested ones included.

    The retrain oracle must start from scratch: a bug in a popular repository reset only
    top-level children. Any module that owns parameters but cannot reset them is an error,
    so no trained weight can survive silently.

    Parameters
    ----------
    model
        The network to reset, in place (it is also returned).
    seed
        Seed of the new initial weights.
    """
    with seeded(seed, "cpu"), torch.no_grad():
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
            if not own:
                continue
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            elif list(module.parameters(recurse=False)):
                raise TypeError(
                    f"module {name or type(module).__name__!r} ({type(module).__name__}) has "
                    "parameters but no reset_parameters(); the retrain oracle cannot re-create it"
                )
    return model


def with_fresh_head(pretrained: nn.Module, config: ModelConfig, *, seed: int) -> nn.Module:
    """A new network of ``config`` carrying ``pretrained``'s weights except the layer that
    produces the logits, which keeps its fresh, seeded initialisation: fine-tuning a
    pretrained network on another set of classes starts from a head that knows none of them.

    Parameters
    ----------
    pretrained
        A network of the same architecture (its state dict must fit ``config``'s model).
    config
        The architecture to build; its ``num_classes`` sizes the head.
    seed
        Seed of the new head (and of the rest, before ``pretrained``'s weights replace it).
    """
    from forgetkit.methods.fisher_forgetting import last_layer_parameters

    model = build_model(config, seed=seed)
    example = torch.zeros(1, *config.in_shape)
    head = last_layer_parameters(model, config.num_classes, rule="module", example_input=example)
    state = pretrained.state_dict()
    state.update({name: t for name, t in model.state_dict().items() if name in head})
    model.load_state_dict(state)
    return model


def with_weights(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model``, in evaluation mode, whose parameters are ``weights`` (e.g. one
    draw of a weight distribution); ``model`` is left as it is.

    Parameters
    ----------
    model
        The network to copy.
    weights
        A tensor for every parameter name of ``model``.
    """
    missing = [n for n, _ in model.named_parameters() if n not in weights]
    if missing:
        raise ValueError(f"weights lack {len(missing)} parameter(s) of model, e.g. {missing[:3]}")
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.copy_(weights[name])
    return out.eval()
